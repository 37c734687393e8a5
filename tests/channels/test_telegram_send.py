"""Replies sent with one aiohttp request: the Bot API's answers read as Telegram documents them."""

from __future__ import annotations

import json

from bot.channels.telegram_send import api_call, read_answer


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_a_reply_is_the_bot_api_call_python_telegram_bot_would_make():
    call = {"m": "sendMessage", "text": "Bước 1/9", "thread": 7, "markup": {"inline_keyboard": [[{"text": "Tiếp", "callback_data": "g:n"}]]}, "reply_to": 42}
    assert api_call(-100, call) == (
        "sendMessage",
        {
            "chat_id": -100,
            "message_thread_id": 7,
            "text": "Bước 1/9",
            "link_preview_options": {"is_disabled": True},
            "reply_markup": {"inline_keyboard": [[{"text": "Tiếp", "callback_data": "g:n"}]]},
            "reply_parameters": {"message_id": 42, "allow_sending_without_reply": True},
        },
    )
    assert api_call(5, {"m": "sendMessage", "text": "?", "thread": None, "force_reply": True})[1]["reply_markup"] == {
        "force_reply": True,
        "selective": True,
    }
    assert api_call(5, {"m": "sendPhoto", "photo": "https://x/p.png", "thread": None}) == ("sendPhoto", {"chat_id": 5, "photo": "https://x/p.png"})


def test_answers_are_read_as_the_bot_api_documents_them():
    assert read_answer(200, body(ok=True, result={"message_id": 1})).ok
    flood = read_answer(429, body(ok=False, error_code=429, description="Too Many Requests: retry after 7", parameters={"retry_after": 7}))
    assert not flood.ok and flood.retry_after == 7.0
    moved = read_answer(400, body(ok=False, error_code=400, description="Bad Request: group chat was upgraded to a supergroup chat", parameters={"migrate_to_chat_id": -1001}))
    assert moved.migrate_to_chat_id == -1001
    gone = read_answer(400, body(ok=False, error_code=400, description="Bad Request: chat not found"))
    assert (gone.status, gone.description) == (400, "Chat not found")  # worded as python-telegram-bot words it
    blocked = read_answer(403, body(ok=False, error_code=403, description="Forbidden: bot was blocked by the user"))
    assert (blocked.status, blocked.description) == (403, "Forbidden: bot was blocked by the user")
    broken = read_answer(502, b"<html>Bad Gateway</html>")  # not JSON: an error all the same
    assert not broken.ok and broken.status == 502 and broken.retry_after is None
