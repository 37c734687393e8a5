"""Hostile webhook bodies on every channel: a clean 400 (or 403 before the secret), never a traceback,
never a failure in the background, and the bot still answers afterwards."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.catalog import load_valid_catalog
from bot.channels import webhook_input
from bot.channels.telegram import SECRET_HEADER as TG_SECRET_HEADER, TELEGRAM
from bot.channels.zalo_bot import SECRET_HEADER as ZB_SECRET_HEADER, ZALO_BOT
from bot.channels.zalo_oa import SIGNATURE_HEADER, ZALO_OA
from bot.config import Settings
from bot.server import create_app
from storage.models import Chat, InboxEntry
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloBot, FakeZaloOA, bot_update, oa_event

TOKEN = "123456:TEST-token_abc"
SECRET = "hostile-secret_0123456"
LAN = {"id": 1001, "is_bot": False, "first_name": "Lan"}
PRIVATE = {"id": 1001, "type": "private", "first_name": "Lan"}
DEEP = b"[" * 100_000 + b"]" * 100_000


def no_tracebacks(caplog) -> list[str]:
    return [r.getMessage()[:200] for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# ---------------------------------------------------------------------------- the helpers themselves


@pytest.mark.parametrize(
    "raw, reason",
    [
        (DEEP, "nested"),
        (b'{"a":' * 30 + b"1" + b"}" * 30, "nested"),
        (b'{"x": NaN}', "number"),
        (b'{"x": -Infinity}', "number"),
        (b'{"x": "a\\u0000b"}', "NUL"),
        (b'{"x": "\\ud800"}', "surrogate"),
        (b'{"\\udfff": 1}', "surrogate"),
        (b"\xff\xfe{", "not JSON"),
        (b"", "not JSON"),
    ],
)
def test_parse_json_refuses_what_cannot_be_stored_or_walked(raw, reason):
    with pytest.raises(webhook_input.BadInput, match=reason):
        webhook_input.parse_json(raw)


def test_check_names_the_wrong_field():
    schema = {"update_id": (webhook_input.INT, True), "message": {"chat": ({"id": (webhook_input.INT, True)}, True)}}
    webhook_input.check({"update_id": 1, "message": {"chat": {"id": 5}}}, schema)
    for body, where in [
        ({"update_id": True}, "update_id"),
        ({"update_id": 1, "message": {"text": "no chat"}}, "message.chat"),
        ({"update_id": 1, "message": {"chat": {"id": "5"}}}, "message.chat.id"),
        ({"update_id": 1, "message": []}, "message"),
    ]:
        with pytest.raises(webhook_input.BadInput, match=where.replace(".", r"\.")):
            webhook_input.check(body, schema)


# ---------------------------------------------------------------------------- Telegram


@pytest.fixture
async def telegram(tmp_path):
    fake = await FakeTelegramAPI(TOKEN, username="cccd_test_bot").start()
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3",
        telegram_token=TOKEN,
        telegram_base_url=fake.base_url,
        telegram_webhook_url="https://bot.example.org/telegram/webhook",
        telegram_webhook_secret=SECRET,
    )
    app = create_app(settings, load_valid_catalog())
    async with TestClient(TestServer(app)) as client:
        await app[TELEGRAM].wait_ready(10)
        yield client, app, fake
    await fake.close()


async def test_telegram_refuses_hostile_bodies_cleanly(telegram, caplog):
    client, app, fake = telegram
    channel = app[TELEGRAM]
    headers = {TG_SECRET_HEADER: SECRET, "Content-Type": "application/json"}

    async def post(data: bytes, secret: bool = True) -> int:
        resp = await client.post("/telegram/webhook", data=data, headers=headers if secret else {"Content-Type": "application/json"})
        return resp.status

    ids = iter(range(90_000, 99_000))

    def update(**fields) -> bytes:
        return json.dumps({"update_id": next(ids), **fields}).encode()

    msg = {"message_id": 1, "date": int(time.time()), "chat": PRIVATE, "from": LAN, "text": "hi"}
    assert await post(DEEP, secret=False) == 403, "the secret is checked before the body is read"
    assert await post(DEEP) == 400
    assert await post(b'{"update_id": 1, "message": ' + b"[" * 50 + b"]" * 50 + b"}") == 400
    assert await post(b"{" + b'"a": "' + b"x" * 300_000 + b'"}') == 400  # over the size bound
    assert await post(b'{"update_id": NaN}') == 400
    assert await post(update(message={**msg, "text": "a\u0000b"})) == 400
    assert await post(b'{"update_id": 5, "message": {"message_id": 1, "date": 1, "chat": {"id": 1001, "type": "private"}, "text": "\\ud800"}}') == 400
    assert await post(update(message={**msg, "text": {"nested": "object"}})) == 400
    assert await post(update(message={**msg, "chat": None})) == 400
    assert await post(update(message={k: v for k, v in msg.items() if k != "chat"})) == 400
    dummy = {"message_id": 2, "date": int(time.time()), "chat": PRIVATE, "text": "…"}
    assert await post(update(callback_query={"id": "q", "from": LAN, "message": dummy, "data": ["g:n"]})) == 400
    assert await post(update(callback_query={"id": "q", "from": LAN, "message": dummy, "data": 12})) == 400
    assert await post(update(callback_query={"id": "q", "from": {"id": "1001"}, "message": dummy, "data": "m"})) == 400
    await channel.idle()
    assert fake.texts() == []
    # A group title longer than the 255 characters a title column holds: stored cut, answered politely.
    group = {"id": -4001, "type": "group", "title": "Tổ dân phố " + "rất dài " * 60}
    assert await post(update(message={**msg, "chat": group, "text": "/menu@cccd_test_bot"})) == 200
    # A forged button press nobody offered: a polite answer.
    assert await post(update(callback_query={"id": "q", "from": LAN, "chat_instance": "c", "message": dummy, "data": "zz:\u2603" * 5})) == 200
    await channel.idle()
    assert len(fake.texts(-4001)) == 1 and len(fake.texts(LAN["id"])) == 1
    async with app[TELEGRAM].service.db.transaction() as session:
        title = (await session.execute(select(Chat.title).where(Chat.external_id == "-4001"))).scalar_one_or_none()
    assert title is None or len(title) <= 255
    assert no_tracebacks(caplog) == []


# ---------------------------------------------------------------------------- Zalo Bot


async def test_zalo_bot_refuses_hostile_bodies_cleanly(tmp_path, caplog):
    fake = FakeZaloBot()
    await fake.start()
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/zb.sqlite3",
        zalo_bot_token=fake.token,
        zalo_bot_base_url=fake.base_url,
        zalo_bot_webhook_url="https://bot.example.org/zb",
        zalo_bot_webhook_secret="s3cret-token-123",
    )
    app = create_app(settings, load_valid_catalog())
    try:
        async with TestClient(TestServer(app)) as client:
            channel = app[ZALO_BOT]
            await asyncio.wait_for(channel.ready.wait(), 10)
            headers = {ZB_SECRET_HEADER: "s3cret-token-123", "Content-Type": "application/json"}

            async def post(data: bytes, secret: bool = True) -> int:
                resp = await client.post("/zb", data=data, headers=headers if secret else {})
                return resp.status

            good = bot_update("/menu")
            assert await post(DEEP, secret=False) == 403
            assert await post(DEEP) == 400
            assert await post(b'{"ok": true, "result": {"message": {"text": NaN}}}') == 400
            bad_text = json.loads(json.dumps(good))
            bad_text["message"]["text"] = ["list"]
            assert await post(json.dumps({"ok": True, "result": bad_text}).encode()) == 400
            long_id = json.loads(json.dumps(good))
            long_id["message"]["chat"]["id"] = "x" * 500
            assert await post(json.dumps({"ok": True, "result": long_id}).encode()) == 400
            nul = json.loads(json.dumps(good))
            nul["message"]["text"] = "a\u0000b"
            assert await post(json.dumps({"ok": True, "result": nul}).encode()) == 400
            await channel.idle()
            assert await post(json.dumps({"ok": True, "result": good}).encode()) == 200
            await channel.idle()
    finally:
        await fake.close()
    assert no_tracebacks(caplog) == []


# ---------------------------------------------------------------------------- Zalo OA


def sign(raw: bytes, app_id: str, secret_key: str, timestamp: str) -> str:
    return "mac=" + hashlib.sha256(app_id.encode() + raw + timestamp.encode() + secret_key.encode()).hexdigest()


async def test_zalo_oa_checks_the_signature_before_parsing_and_refuses_stale_events(tmp_path, caplog):
    fake = FakeZaloOA()
    await fake.start()
    access, refresh = fake.issue_pair()
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/oa.sqlite3",
        zalo_oa_app_id=fake.app_id,
        zalo_oa_app_secret=fake.app_secret,
        zalo_oa_secret_key="oa-secret",
        zalo_oa_access_token=access,
        zalo_oa_refresh_token=refresh,
        zalo_oa_api_base=fake.url,
        zalo_oa_oauth_base=fake.url,
        zalo_oa_max_event_age=600,
    )
    app = create_app(settings, load_valid_catalog())
    try:
        async with TestClient(TestServer(app)) as client:
            channel = app[ZALO_OA]
            await asyncio.wait_for(channel.ready.wait(), 10)

            async def post(raw: bytes, signature: str | None) -> int:
                headers = {"Content-Type": "application/json"}
                if signature:
                    headers[SIGNATURE_HEADER] = signature
                return (await client.post("/zalo/oa/webhook", data=raw, headers=headers)).status

            now_ms = str(int(time.time() * 1000))
            # Deep nesting: unsigned it is refused before any parsing; signed, it is a clean 400.
            deep = b'{"timestamp": "' + now_ms.encode() + b'", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
            assert await post(deep, "mac=" + "0" * 64) == 403
            assert await post(deep, sign(deep, fake.app_id, "oa-secret", now_ms)) == 400
            # NaN and wrong types, signed.
            nan = b'{"timestamp": "' + now_ms.encode() + b'", "event_name": "user_send_text", "x": NaN}'
            assert await post(nan, sign(nan, fake.app_id, "oa-secret", now_ms)) == 400
            event = oa_event("user_send_text", sender="user-1", recipient="oa-1", text="/menu")
            event["sender"] = ["user-1"]
            raw = json.dumps(event).encode()
            assert await post(raw, sign(raw, fake.app_id, "oa-secret", str(event["timestamp"]))) == 400
            # A signed event 90 days old (a captured request replayed): refused, not answered.
            old = oa_event("user_send_text", sender="user-1", recipient="oa-1", text="/menu", timestamp=str(int((time.time() - 90 * 86400) * 1000)))
            raw = json.dumps(old).encode()
            assert await post(raw, sign(raw, fake.app_id, "oa-secret", old["timestamp"])) == 403
            await channel.idle()
            assert fake.delivered("user-1") == []
            # A fresh one is answered.
            fresh = oa_event("user_send_text", sender="user-1", recipient="oa-1", text="/menu")
            raw = json.dumps(fresh).encode()
            assert await post(raw, sign(raw, fake.app_id, "oa-secret", fresh["timestamp"])) == 200
            await fake.wait_delivered(1, "user-1")
            async with channel.service.db.transaction() as session:
                assert len((await session.execute(select(InboxEntry))).all()) == 1
    finally:
        await fake.close()
    assert no_tracebacks(caplog) == []
