"""Replies to Telegram: one Bot API request per outbox call, made with aiohttp, its answer read as the Bot
API documents it (https://core.telegram.org/bots/api#making-requests).

Replies are the one call the bot makes for every message, so they skip python-telegram-bot's object
round trip (parameters turned into objects and back, the answer decoded into a Message nobody reads) and
its httpx client; everything else (webhook set-up, getMe, long polling) stays with python-telegram-bot.
An answer is `{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description", "parameters"}`
where `parameters` may hold `retry_after` (flood control) or `migrate_to_chat_id` (group became a
supergroup); this module reads it the way python-telegram-bot does (`BaseRequest._request_wrapper`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

# python-telegram-bot's timeouts for the reply client: connect 10 s, read and write 20 s.
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=20)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the Bot API said to one call; `status` 0 when no answer came (network, timeout)."""

    status: int
    ok: bool
    description: str = ""
    retry_after: float | None = None
    migrate_to_chat_id: int | None = None


def api_call(chat_id: int, call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Bot API method and JSON parameters of an outbox call (as `TelegramChannel.render_calls` stores it)."""
    params: dict[str, Any] = {"chat_id": chat_id}
    if call.get("thread") is not None:
        params["message_thread_id"] = call["thread"]
    if call.get("m") == "sendPhoto":
        params["photo"] = call["photo"]
        return "sendPhoto", params
    params["text"] = call["text"]
    params["link_preview_options"] = {"is_disabled": True}
    if call.get("markup"):
        params["reply_markup"] = call["markup"]
    elif call.get("force_reply"):
        params["reply_markup"] = {"force_reply": True, "selective": True}
    if call.get("reply_to"):
        params["reply_parameters"] = {"message_id": call["reply_to"], "allow_sending_without_reply": True}
    return "sendMessage", params


def read_answer(status: int, body: bytes) -> Answer:
    """Read a Bot API answer: any 2xx is success (as python-telegram-bot reads it), the rest an error."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    if 200 <= status <= 299:
        return Answer(status, True)
    parameters = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    retry_after = parameters.get("retry_after")
    migrate = parameters.get("migrate_to_chat_id")
    return Answer(
        status,
        False,
        _plain(str(data.get("description") or f"HTTP {status}")),
        max(float(retry_after), 0.0) if isinstance(retry_after, (int, float)) else None,
        int(migrate) if isinstance(migrate, int) else None,
    )


def _plain(description: str) -> str:
    """The description as python-telegram-bot words its errors: prefixes stripped, then capitalised."""
    plain = description
    for prefix in ("Error: ", "[Error]: ", "Bad Request: "):
        plain = plain.removeprefix(prefix)
    return plain.capitalize() if plain != description else plain


class BotApiClient:
    """One aiohttp session for the replies; `post` makes one call and reads its answer."""

    def __init__(self, base_url: str, token: str, *, limit: int = 64):
        # As python-telegram-bot builds it: the base URL with the token in place of {token}, or after it.
        self.base = base_url.format(token=token) if "{token}" in base_url else f"{base_url}{token}"
        self.limit = limit
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.limit), timeout=TIMEOUT, json_serialize=json.dumps
            )
        return self._http

    async def post(self, method: str, params: dict[str, Any]) -> Answer:
        """Make one call; network errors and timeouts come back as status 0 (never raised)."""
        try:
            async with self._session().post(f"{self.base}/{method}", json=params) as resp:
                return read_answer(resp.status, await resp.read())
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # The error's text may hold the URL, and the URL the token: only its kind is kept.
            return Answer(0, False, f"network: {type(exc).__name__}")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
