"""The Zalo Official Account channel against a fake OA API and OAuth server over real HTTP."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from bot.catalog import load_valid_catalog
from bot.channels.zalo_oa import (
    BUTTON_PREFIX,
    SIGNATURE_HEADER,
    TOKEN_KEY,
    ZALO_OA,
    TokenPair,
    TokenStore,
    authorize,
    cmd_authorize,
    register_cli,
)
from bot.config import Settings
from bot.server import CHANNELS, SENDER, SETTINGS, create_app
from storage import kv
from storage.db import Database
from storage.models import User
from tests.fakes.database import ClosingDatabase
from tests.fakes.deliveries import inbox_keys, leave_pending, outbox
from tests.fakes.raw_http import raw_post
from tests.fakes.zalo_api import FakeZaloOA, oa_event, sign_oa

SECRET_KEY = "oa-secret-key"
INSTANCES = itertools.count()
HINT = "Trả lời bằng số, ví dụ 1."


@pytest.fixture
async def fake():
    server = FakeZaloOA()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path}/zalo-oa.sqlite3"


@pytest.fixture
async def db(sqlite_url):
    database = Database(sqlite_url)
    await database.migrate()
    yield database
    await database.close()


def make_settings(fake: FakeZaloOA, sqlite_url: str, *, tokens: bool = True, **extra) -> Settings:
    access, refresh = fake.issue_pair() if tokens else (None, None)
    values = dict(
        database_url=sqlite_url,
        zalo_oa_app_id=fake.app_id,
        zalo_oa_app_secret=fake.app_secret,
        zalo_oa_secret_key=SECRET_KEY,
        zalo_oa_access_token=access,
        zalo_oa_refresh_token=refresh,
        zalo_oa_api_base=fake.url,
        zalo_oa_oauth_base=fake.url,
        zalo_oa_redirect_uri="https://bot.example.org/zalo/oa/callback",
        officers="zalo_oa:officer-1",
    )
    values.update(extra)
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def running(settings: Settings, catalog, **channel_settings):
    app = create_app(settings, catalog, Database(settings.database_url), instance=f"test-{next(INSTANCES)}")
    channel = app[ZALO_OA]
    channel.retry_delays = (0.01, 0.01, 0.01)
    for name, value in channel_settings.items():
        setattr(channel, name, value)
    app[SENDER].backoff = (0.01, 0.02)
    channel.tokens.wait_delays = (0.05, 0.1, 0.2, 0.4)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        await asyncio.wait_for(channel.ready.wait(), 5)
        async with aiohttp.ClientSession() as http:
            yield Bot(server, channel, http, app)
    finally:
        await server.close()


class Bot:
    """The running bot, seen from Zalo: post signed events to its webhook."""

    def __init__(self, server: TestServer, channel, http: aiohttp.ClientSession, app):
        self.server = server
        self.channel = channel
        self.http = http
        self.app = app

    async def post(self, event: dict | bytes, *, signature: str | None = None, raw: bytes | None = None) -> int:
        body, good = sign_oa(event, secret_key=SECRET_KEY)
        headers = {"Content-Type": "application/json"}
        sig = good if signature is None else signature
        if sig:
            headers[SIGNATURE_HEADER] = sig
        async with self.http.post(self.server.make_url("/zalo/oa/webhook"), data=raw if raw is not None else body, headers=headers) as resp:
            return resp.status


async def say(bot: Bot, fake: FakeZaloOA, text: str, expect: int, *, user: str = "user-1", group: str | None = None) -> list[dict]:
    """A person writes; return the `expect` messages the bot sent back to that chat."""
    to = group or user
    before = len(fake.delivered(to))
    event = oa_event("user_send_group_text" if group else "user_send_text", sender=user, recipient=group or "oa-1", text=text)
    assert await bot.post(event) == 200
    got = await fake.wait_delivered(before + expect, to)
    return got[before:]


def payloads(message: dict) -> list[str]:
    return [b["payload"] for b in message["buttons"]]


def press(message: dict, title: str) -> str:
    """The text Zalo sends back when the button with this title is pressed."""
    (button,) = [b for b in message["buttons"] if b["title"] == title]
    assert button["type"] in ("oa.query.hide", "oa.query.show")
    return button["payload"]


async def stored_pair(db: Database) -> tuple[TokenPair, int]:
    async with db.transaction() as session:
        value, version = await kv.get(session, TOKEN_KEY)
    return TokenPair.from_dict(value), version


# -- conversations ----------------------------------------------------------------------------------


async def test_private_walk_through_the_nine_steps_with_buttons(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        welcome, menu = await say(bot, fake, "/start", 2)
        assert welcome["text"].startswith("Chào anh/chị!") and welcome["buttons"] == []
        assert [b["title"] for b in menu["buttons"]] == ["Hướng dẫn 9 bước", "Hỏi đáp", "Địa chỉ cổng chính thức", "Cần người giúp"]
        assert all(p.startswith(BUTTON_PREFIX) for p in payloads(menu))
        assert HINT not in menu["text"]  # buttons, not numbered lines

        (step,) = await say(bot, fake, press(menu, "Hướng dẫn 9 bước"), 1)
        assert step["text"].startswith("Bước 1/9")
        for k in range(2, 10):
            # Press "Tiếp theo"; every other step, type its number instead, as people also do.
            text = press(step, "Tiếp theo") if k % 2 else "1"
            (step,) = await say(bot, fake, text, 1)
            assert step["text"].startswith(f"Bước {k}/9"), step
            assert [b["title"] for b in step["buttons"]][:2] == ["Tiếp theo", "Quay lại"]
        (outcome,) = await say(bot, fake, press(step, "Tiếp theo"), 1)
        assert outcome["text"] == catalog.msg("outcome_prompt")
        assert len(outcome["buttons"]) == 3
        assert all(c.headers["access_token"] == bot.channel.settings.zalo_oa_access_token for c in fake.calls_to("/v3.0/oa/message/cs"))


async def test_a_long_answer_comes_in_two_parts_behind_xem_them(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        (answer,) = await say(bot, fake, "lệ phí làm căn cước bao nhiêu tiền", 1, user="u8")
        assert answer["text"] == catalog.first_part(catalog.topics["le_phi"]) and len(answer["text"]) <= 500
        assert [b["title"] for b in answer["buttons"]] == ["Xem thêm", "Về menu"]
        (more,) = await say(bot, fake, press(answer, "Xem thêm"), 1, user="u8")
        assert more["text"] == catalog.topics["le_phi"].more
        assert [b["title"] for b in more["buttons"]] == ["Về menu"]


async def test_group_question_needs_a_mention_or_a_command(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        assert bot.channel.oa_name == "Công an xã"
        question = "mất căn cước làm lại thế nào"
        assert await bot.post(oa_event("user_send_group_text", sender="u5", recipient="group-1", text=question)) == 200
        await bot.channel.idle()
        assert fake.delivered("group-1") == []

        (answer,) = await say(bot, fake, f"@Công an xã {question}", 1, user="u5", group="group-1")
        assert answer["group"] is True and answer["buttons"] == []
        (private,) = await say(bot, fake, question, 1, user="u7")  # the same question in private
        assert answer["text"].split("\n")[0] == private["text"].split("\n")[0]

        (menu,) = await say(bot, fake, "/menu", 1, user="u5", group="group-1")
        assert "1. Hướng dẫn 9 bước" in menu["text"] and menu["text"].endswith(HINT)
        assert all(c.body["recipient"] == {"group_id": "group-1"} for c in fake.calls_to("/v3.0/oa/group/message"))


async def test_only_officers_link_a_group_to_a_hamlet(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        (refused,) = await say(bot, fake, "/thon", 1, user="u5", group="group-1")
        assert refused["text"] == catalog.msg("group_hamlet_refused")
        (usage,) = await say(bot, fake, "/thon", 1, user="officer-1", group="group-1")
        assert usage["text"] == catalog.msg("group_hamlet_usage")


async def test_non_text_gets_a_polite_word_in_private_and_nothing_in_groups(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        assert await bot.post(oa_event("user_send_group_image", sender="u5", recipient="group-1")) == 200
        assert await bot.post(oa_event("user_send_sticker", sender="u6")) == 200
        (reply,) = await fake.wait_delivered(1, "u6")
        assert reply["text"] == catalog.msg("not_text")
        await bot.channel.idle()
        assert fake.delivered("group-1") == []


async def test_follow_and_unfollow_are_recorded(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        assert await bot.post(oa_event("follow", sender="u8")) == 200
        await bot.channel.idle()
        assert await bot.post(oa_event("unfollow", sender="u8")) == 200
        await bot.channel.idle()
        async with bot.channel.service.db.transaction() as session:
            user = (await session.execute(select(User).where(User.channel == "zalo_oa", User.external_id == "u8"))).scalar_one()
        assert user.active is False
        assert fake.delivered() == []


async def test_messages_over_2000_characters_are_split(fake, sqlite_url):
    catalog = load_valid_catalog()
    sentence = "Mang theo giấy tờ tùy thân và kiểm tra kỹ thông tin trước khi nộp hồ sơ. "
    catalog.messages["welcome"] = sentence * 60
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        sent = await say(bot, fake, "/start", 4)
        assert all(len(m["text"]) <= 2000 for m in sent)
        assert " ".join(m["text"] for m in sent[:3]) == (sentence * 60).strip()
        assert sent[3]["buttons"]  # the menu, with its buttons on its own message


# -- the webhook: signature, duplicates ------------------------------------------------------------


async def test_signature_is_checked_on_the_raw_body(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        event = oa_event("user_send_text", sender="u1", text="/start", msg_id="sig-1")
        raw, good = sign_oa(event, secret_key=SECRET_KEY)
        _raw, other_key = sign_oa(event, secret_key="another-key")
        altered = raw.replace(b"/start", b"/xoa")
        assert await bot.post(event, signature="") == 403  # missing
        assert await bot.post(event, signature=other_key) == 403  # signed with another key
        assert await bot.post(event, signature="mac=" + "0" * 64) == 403  # bad
        assert await bot.post(event, signature=good[4:]) == 403  # without "mac="
        assert await bot.post(event, signature=good, raw=altered) == 403  # body altered after signing
        reformatted = raw.replace(b", ", b",")  # same JSON, other bytes: the hash is over the bytes
        assert await bot.post(event, signature=good, raw=reformatted) == 403
        await bot.channel.idle()
        assert fake.delivered() == []
        assert await bot.post(event, signature=good, raw=raw) == 200
        sent = await fake.wait_delivered(2, "u1")
        assert sent[0]["text"].startswith("Chào")


async def test_duplicate_deliveries_are_processed_once(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        first = oa_event("user_send_text", sender="u1", text="/start", msg_id="dup-1")
        retry = dict(first, timestamp=str(int(first["timestamp"]) + 2000))  # Zalo's retry: same msg_id
        statuses = await asyncio.gather(bot.post(first), bot.post(first), bot.post(retry))
        assert statuses == [200, 200, 200]
        await fake.wait_delivered(2, "u1")
        await bot.channel.idle()
        assert len(fake.delivered("u1")) == 2  # one welcome, one menu


# -- errors from the OA API ------------------------------------------------------------------------


async def test_rate_limit_and_server_errors_are_retried_without_losing_the_reply(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        fake.fail("/v3.0/oa/message/cs", -32, "Rate limit exceeded")
        fake.fail("/v3.0/oa/message/cs", 429, "Too many requests", status=429)
        fake.fail("/v3.0/oa/message/cs", 500, "oops", status=500)
        sent = await say(bot, fake, "/start", 2)
        assert sent[0]["text"].startswith("Chào")
        assert len(fake.calls_to("/v3.0/oa/message/cs")) == 5


async def test_error_not_zero_is_a_failure_counted_and_the_bot_carries_on(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        fake.fail("/v3.0/oa/message/cs", -201, "Parameters invalid")  # the welcome is refused
        (menu,) = await say(bot, fake, "/start", 1)
        assert menu["text"].startswith("Anh/chị cần gì?")
        assert bot.channel.undeliverable["failed"] == 1
        assert [c.answer["error"] for c in fake.calls_to("/v3.0/oa/message/cs")] == [-201, 0]


async def test_a_refused_button_template_falls_back_to_numbered_lines(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        fake.fail("/v3.0/oa/message/cs", -201, "Parameters invalid")
        (step,) = await say(bot, fake, "/huongdan", 1)
        assert step["buttons"] == []
        assert step["text"].startswith("Bước 1/9") and "1. Tiếp theo" in step["text"] and step["text"].endswith(HINT)


async def test_the_seven_day_window_is_recorded_and_never_retried(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        fake.close_window("u9", -230)
        assert await bot.post(oa_event("user_send_text", sender="u9", text="/start")) == 200
        await fake.wait_until(lambda: fake.calls_to("/v3.0/oa/message/cs"))
        await bot.channel.idle()
        calls = fake.calls_to("/v3.0/oa/message/cs")
        assert [c.answer["error"] for c in calls] == [-230]  # once: no retry, the menu not attempted
        assert bot.channel.undeliverable["window_closed"] == 1
        fake.close_window("u10", -213)
        assert await bot.post(oa_event("user_send_text", sender="u10", text="/menu")) == 200
        await fake.wait_until(lambda: len(fake.calls_to("/v3.0/oa/message/cs")) == 2)
        await bot.channel.idle()
        assert bot.channel.undeliverable["not_follower"] == 1
        async with bot.channel.service.db.transaction() as session:
            users = {u.external_id: u.active for u in (await session.execute(select(User))).scalars()}
        assert users == {"u9": False, "u10": False}


# -- tokens ----------------------------------------------------------------------------------------


async def test_expired_token_is_refreshed_once_and_the_message_retried(fake, sqlite_url, catalog):
    settings = make_settings(fake, sqlite_url)
    async with running(settings, catalog) as bot:
        fake.expire(settings.zalo_oa_access_token)
        sent = await say(bot, fake, "/start", 2)
        assert sent[0]["text"].startswith("Chào")
        assert len(fake.refresh_calls()) == 1
        assert fake.refresh_calls()[0].body["refresh_token"] == settings.zalo_oa_refresh_token
        pair, _version = await stored_pair(bot.channel.service.db)
        assert pair.access_token != settings.zalo_oa_access_token and fake.access_tokens[pair.access_token] == "valid"
        assert pair.refresh_token in fake.refresh_tokens  # the new, unspent refresh token is stored
        cs = fake.calls_to("/v3.0/oa/message/cs")
        assert [c.answer["error"] for c in cs] == [-220, 0, 0]
        assert {c.headers["access_token"] for c in cs[1:]} == {pair.access_token}


async def test_invalid_token_after_refresh_is_not_refreshed_again_and_the_reply_waits(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        fake.fail("/v3.0/oa/message/cs", -216, "Access token is invalid", times=2)
        welcome, menu = await say(bot, fake, "/start", 2)  # refreshed once, then retried later: nothing lost
        assert welcome["text"].startswith("Chào") and menu["text"].startswith("Anh/chị cần gì?")
        assert len(fake.refresh_calls()) == 1
        assert [c.answer["error"] for c in fake.calls_to("/v3.0/oa/message/cs")] == [-216, -216, 0, 0]


async def test_token_is_refreshed_ahead_of_expiry(fake, sqlite_url, catalog):
    settings = make_settings(fake, sqlite_url)
    db = Database(sqlite_url)
    await db.migrate()
    access, refresh = fake.issue_pair()
    now = datetime.now(timezone.utc)
    async with db.transaction() as session:
        soon = TokenPair(access, refresh, now + timedelta(minutes=10), obtained_at=now - timedelta(hours=24))
        # Stored beside the environment's tokens, so those do not replace it.
        from bot.channels.zalo_oa import env_seed

        await kv.put_if_version(session, TOKEN_KEY, {**soon.to_dict(), "env_seed": env_seed(settings)}, None, now)
    await db.close()
    async with running(settings, catalog) as bot:
        assert len(fake.refresh_calls()) == 1  # at start, by the token keeper
        sent = await say(bot, fake, "/start", 2)
        assert len(sent) == 2
        assert [c.answer["error"] for c in fake.calls_to("/v3.0/oa/message/cs")] == [0, 0]
        assert fake.refresh_calls()[0].body["refresh_token"] == refresh


async def test_concurrent_refreshers_spend_the_refresh_token_once(fake, db):
    fake.refresh_delay = 0.2
    settings = make_settings(fake, db.url)
    now = datetime.now(timezone.utc)
    async with aiohttp.ClientSession() as http:
        first = TokenStore(db, settings, http=http)
        second = TokenStore(db, settings, http=http)  # another worker of the same database
        old = await first.access_token()  # stores the environment's pair
        pair, version = await stored_pair(db)
        async with db.transaction() as session:
            await kv.put_if_version(session, TOKEN_KEY, {**pair.to_dict(), "expires_at": (now + timedelta(minutes=5)).isoformat()}, version, now)
        tokens = await asyncio.gather(first.access_token(), second.access_token())
    assert len(fake.refresh_calls()) == 1
    assert tokens[0] == tokens[1] != old
    stored, _ = await stored_pair(db)
    assert stored.access_token == tokens[0] and stored.refresh_token in fake.refresh_tokens


async def test_refreshers_without_a_shared_lock_still_end_with_the_new_pair(fake, db):
    """Two processes on SQLite share no lock: the loser's refresh is refused, and it takes the winner's pair."""
    fake.refresh_delay = 0.2
    settings = make_settings(fake, db.url)
    other_process = Database(db.url)
    async with aiohttp.ClientSession() as http:
        first = TokenStore(db, settings, http=http, wait_delays=(0.05, 0.1, 0.2, 0.4))
        second = TokenStore(other_process, settings, http=http, wait_delays=(0.05, 0.1, 0.2, 0.4))
        old = await first.access_token()
        tokens = await asyncio.gather(first.refresh(stale=old), second.refresh(stale=old))
    await other_process.close()
    assert tokens[0] == tokens[1] != old
    refused = [c for c in fake.refresh_calls() if "error" in c.answer]
    assert len(fake.refresh_calls()) == 2 and len(refused) == 1
    stored, _ = await stored_pair(db)
    assert stored.access_token == tokens[0] and stored.refresh_token in fake.refresh_tokens


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_processes_on_postgresql_spend_the_refresh_token_once(fake, db_url):
    """Separate Database objects share no in-process lock: on PostgreSQL the advisory lock keeps them apart."""
    fake.refresh_delay = 0.2
    settings = make_settings(fake, db_url)
    processes = [Database(db_url), Database(db_url)]
    try:
        await processes[0].migrate()
        async with aiohttp.ClientSession() as http:
            stores = [TokenStore(d, settings, http=http) for d in processes]
            old = await stores[0].access_token()
            tokens = await asyncio.gather(*(s.refresh(stale=old) for s in stores))
        assert tokens[0] == tokens[1] != old
        assert len(fake.refresh_calls()) == 1
    finally:
        for d in processes:
            await d.close()


async def test_new_tokens_in_the_environment_replace_the_stored_pair(fake, db):
    async with aiohttp.ClientSession() as http:
        first = make_settings(fake, db.url)
        assert await TokenStore(db, first, http=http).access_token() == first.zalo_oa_access_token
        assert await TokenStore(db, first, http=http).access_token() == first.zalo_oa_access_token
        second = make_settings(fake, db.url)  # the operator pasted a new pair
        assert await TokenStore(db, second, http=http).access_token() == second.zalo_oa_access_token
        only_refresh = make_settings(fake, db.url, zalo_oa_access_token=None)
        token = await TokenStore(db, only_refresh, http=http).access_token()
        assert token not in (first.zalo_oa_access_token, second.zalo_oa_access_token)
        assert fake.refresh_calls()[-1].body["refresh_token"] == only_refresh.zalo_oa_refresh_token


async def test_without_any_token_the_channel_says_so_and_replies_wait_for_one(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url, tokens=False), catalog) as bot:
        assert "authorize" in bot.app[CHANNELS]["zalo_oa"].detail
        assert await bot.post(oa_event("user_send_text", sender="u1", text="/start")) == 200
        db = bot.channel.service.db
        for _ in range(200):
            rows = await outbox(db)
            if rows and rows[0].attempts >= 2:
                break
            await asyncio.sleep(0.02)
        assert [r.status for r in rows] == ["pending", "pending"] and rows[0].attempts >= 2
        assert fake.delivered() == []
        access, refresh = fake.issue_pair()  # the operator runs `cccd-bot zalo-oa authorize`
        await bot.channel.tokens.replace(TokenPair(access, refresh, datetime.now(timezone.utc) + timedelta(hours=20)))
        sent = await fake.wait_delivered(2, "u1")
        assert sent[0]["text"].startswith("Chào")
        assert bot.channel.undeliverable["failed"] == 0


async def test_channel_is_off_without_app_id_and_secret_key(sqlite_url, catalog):
    settings = Settings(_env_file=None, database_url=sqlite_url, zalo_oa_app_id="app-1")
    db = Database(sqlite_url)
    app = create_app(settings, catalog, db)
    assert app[CHANNELS]["zalo_oa"].on is False
    assert "CCCD_ZALO_OA_SECRET_KEY" in app[CHANNELS]["zalo_oa"].detail
    await db.close()


# -- `cccd-bot zalo-oa authorize` ------------------------------------------------------------------


async def test_authorize_prints_the_consent_url_then_stores_the_tokens(fake, db):
    settings = make_settings(fake, db.url, tokens=False)
    lines: list[str] = []
    assert await authorize(settings, db, out=lines.append) == 0
    (url,) = [line.strip() for line in lines if line.strip().startswith("http")]
    assert url.startswith(f"{fake.url}/v4/oa/permission?")
    query = parse_qs(urlparse(url).query)
    assert query["app_id"] == ["app-1"] and query["redirect_uri"] == [settings.zalo_oa_redirect_uri]
    fake.grant_code("code-1", query["code_challenge"][0])  # the admin allowed the app

    lines.clear()
    assert await authorize(settings, db, "wrong-code", out=lines.append) == 1
    assert lines[0].startswith("Lỗi: Zalo từ chối mã")
    assert await authorize(settings, db, "code-1", out=lines.append) == 0
    pair, _ = await stored_pair(db)
    assert fake.access_tokens[pair.access_token] == "valid" and pair.refresh_token in fake.refresh_tokens
    assert pair.source == "authorize" and pair.expires_at is not None
    async with aiohttp.ClientSession() as http:
        assert await TokenStore(db, settings, http=http).access_token() == pair.access_token
        # A server whose .env still holds an older pair keeps using the authorized one.
        stale_env = make_settings(fake, db.url)
        assert await TokenStore(db, stale_env, http=http).access_token() == pair.access_token


async def test_authorize_is_a_cli_subcommand(fake, db, monkeypatch):
    parser = argparse.ArgumentParser(prog="cccd-bot")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["zalo-oa", "authorize"])
    assert args.func is cmd_authorize and args.code is None
    for name, value in {
        "CCCD_DATABASE_URL": db.url,
        "CCCD_ZALO_OA_APP_ID": fake.app_id,
        "CCCD_ZALO_OA_APP_SECRET": fake.app_secret,
        "CCCD_ZALO_OA_OAUTH_BASE": fake.url,
        "CCCD_ZALO_OA_REDIRECT_URI": "https://bot.example.org/cb",
    }.items():
        monkeypatch.setenv(name, value)
    assert await asyncio.to_thread(args.func, args) == 0
    async with db.transaction() as session:
        pkce = (await kv.get(session, "zalo_oa:pkce"))[0]
    import base64
    import hashlib

    fake.grant_code("code-2", base64.urlsafe_b64encode(hashlib.sha256(pkce["verifier"].encode()).digest()).decode().rstrip("="))
    args = parser.parse_args(["zalo-oa", "authorize", "--code", "code-2"])
    assert await asyncio.to_thread(args.func, args) == 0
    pair, _ = await stored_pair(db)
    assert fake.access_tokens[pair.access_token] == "valid"
    assert re.fullmatch(r"access-\d+", pair.access_token)


def test_authorize_says_in_vietnamese_which_setting_is_wrong(monkeypatch, capsys):
    from bot.cli import main

    monkeypatch.setenv("CCCD_DATABASE_URL", "mysql://bot@localhost/cccd")
    for argv in (["zalo-oa", "authorize"], ["-v", "zalo-oa", "authorize"]):  # -v: settings are read by the command
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("Lỗi: Giá trị của CCCD_DATABASE_URL không dùng được ('mysql://bot@localhost/cccd')")
        assert "sqlite+aiosqlite:///" in error and "Traceback" not in error


async def test_undecodable_signature_header_is_refused_not_an_error(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        raw, good = sign_oa(oa_event("user_send_text", sender="u1", text="/menu"), secret_key=SECRET_KEY)
        headers = [(b"Content-Type", b"application/json"), (SIGNATURE_HEADER.encode(), b"mac=\xff" + good[5:].encode())]
        assert await raw_post(bot.server.host, bot.server.port, "/zalo/oa/webhook", headers, raw) == 403
        await bot.channel.idle()
        assert fake.delivered() == []


async def test_shutdown_finishes_queued_events_before_closing_the_database(fake, sqlite_url, catalog):
    db = ClosingDatabase(sqlite_url)
    app = create_app(make_settings(fake, sqlite_url), catalog, db)
    channel = app[ZALO_OA]
    held, release = asyncio.Event(), asyncio.Event()

    async def held_sleep(seconds: float) -> None:  # the rate-limit wait lasts until shutdown begins
        held.set()
        await release.wait()

    async def begin_shutdown(_app) -> None:
        release.set()

    app[SENDER].sleep = held_sleep
    app.on_shutdown.insert(0, begin_shutdown)
    db.watch = lambda: app[SENDER].busy
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await asyncio.wait_for(channel.ready.wait(), 5)
    fake.fail("/v3.0/oa/message/cs", -32, "Rate limit exceeded")
    async with aiohttp.ClientSession() as http:
        bot = Bot(server, channel, http, app)
        assert await bot.post(oa_event("user_send_text", sender="u1", text="/menu")) == 200
    await asyncio.wait_for(held.wait(), 5)
    await server.close()
    assert db.busy_at_close == 0  # the reply was sent before the database went away
    assert fake.texts("u1")[0].startswith("Anh/chị cần gì?")



# -- durable deliveries ----------------------------------------------------------------------------


async def test_a_reply_cut_short_by_shutdown_is_delivered_once_after_a_restart(fake, sqlite_url, catalog):
    app = create_app(make_settings(fake, sqlite_url), catalog, Database(sqlite_url), instance="first")
    app[SETTINGS].sender_drain_seconds = 0  # shutdown does not wait: the reply is cut short, as by a crash
    channel = app[ZALO_OA]
    held = asyncio.Event()

    async def held_sleep(seconds: float) -> None:  # the rate-limit wait outlives the process
        held.set()
        await asyncio.Event().wait()

    app[SENDER].sleep = held_sleep
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await asyncio.wait_for(channel.ready.wait(), 5)
    fake.fail("/v3.0/oa/message/cs", -32, "Rate limit exceeded")
    event = oa_event("user_send_text", sender="u1", text="/menu", msg_id="cut-1")
    async with aiohttp.ClientSession() as http:
        assert await Bot(server, channel, http, app).post(event) == 200  # acknowledged: no redelivery
    await asyncio.wait_for(held.wait(), 5)
    await server.close()
    assert fake.texts("u1") == []

    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        await fake.wait_delivered(1, "u1")
        await bot.channel.idle()
        assert await bot.post(event) == 200  # a late duplicate is still dropped
        await bot.channel.idle()
        assert len(fake.texts("u1")) == 1 and fake.texts("u1")[0].startswith("Anh/chị cần gì?")
        assert [(r.status, r.attempts) for r in await outbox(bot.channel.service.db)] == [("sent", 1)]
        assert await inbox_keys(bot.channel.service.db, "zalo_oa") == ["m:cut-1"]


async def test_replies_left_pending_by_a_crash_are_sent_at_start(fake, db, sqlite_url, catalog):
    calls = [{"m": "text", "type": "private", "text": "một"}, {"m": "text", "type": "private", "text": "hai"}]
    await leave_pending(db, "zalo_oa", "u1", calls, key="m:lost-1")
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        sent = await fake.wait_delivered(2, "u1")
        assert [m["text"] for m in sent] == ["một", "hai"]
        await bot.channel.idle()
        assert [r.status for r in await outbox(db)] == ["sent", "sent"]


# -- the platform as it really behaves (issue 15) -----------------------------------------------------


@pytest.mark.parametrize("code", [-213, -217, -227, -230, -232, -234, -244])
async def test_an_unreachable_person_is_marked_counted_and_never_retried_or_resent_without_buttons(fake, sqlite_url, catalog, code):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        fake.close_window("u9", code)
        assert await bot.post(oa_event("user_send_text", sender="u9", text="/menu")) == 200  # the menu has buttons
        await fake.wait_until(lambda: fake.calls_to("/v3.0/oa/message/cs"))
        await bot.channel.idle()
        await asyncio.sleep(0.1)  # a retry (back-off 0.01 s) or a second send would have happened by now
        calls = fake.calls_to("/v3.0/oa/message/cs")
        assert [c.answer["error"] for c in calls] == [code]
        assert calls[0].body["message"].get("attachment")  # the one attempt was the message with buttons
        assert sum(bot.channel.undeliverable.values()) == 1 and bot.channel.undeliverable["failed"] == 0
        async with bot.channel.service.db.transaction() as session:
            user = (await session.execute(select(User).where(User.external_id == "u9"))).scalar_one()
        assert user.active is False
        # The outbox keeps why (what reports and /metrics count as refused), not a failure to retry.
        (row,) = await outbox(bot.channel.service.db, "zalo_oa")
        assert row.status == "refused" and f"error {code}" in row.last_error


@pytest.mark.parametrize(
    "code, reason, shown", [(-237, "package expired", "gói nhóm đã hết hạn"), (-403, "not a member", "OA không còn trong nhóm")]
)
async def test_an_inactive_group_is_logged_shown_at_healthz_and_not_retried(fake, sqlite_url, catalog, caplog, code, reason, shown):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        fake.disable_group("group-7", code)
        assert await bot.post(oa_event("user_send_group_text", sender="u5", recipient="group-7", text="/menu")) == 200
        await fake.wait_until(lambda: fake.calls_to("/v3.0/oa/group/message"))
        await bot.channel.idle()
        await asyncio.sleep(0.1)
        assert [c.answer["error"] for c in fake.calls_to("/v3.0/oa/group/message")] == [code]
        assert any("group-7" in r.getMessage() and "inactive" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
        async with bot.http.get(bot.server.make_url("/healthz")) as resp:
            health = await resp.json()
        assert f"nhóm ngừng nhận tin: group-7 (lỗi {code}: " in health["channels"]["zalo_oa"] and shown in health["channels"]["zalo_oa"]
        async with bot.channel.service.db.transaction() as session:
            from storage import people

            assert (await people.get_chat(session, "zalo_oa", "group-7")).active is False


async def test_a_bad_signature_is_logged_with_the_check_that_failed_and_no_secret(fake, sqlite_url, catalog, caplog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        event = oa_event("user_send_text", sender="u1", text="/start")
        raw, good = sign_oa(event, secret_key=SECRET_KEY)
        _raw, with_app_secret = sign_oa(event, secret_key=fake.app_secret)
        _raw, other = sign_oa(event, secret_key="another-key")
        no_timestamp = {k: v for k, v in event.items() if k != "timestamp"}
        cases = [
            (dict(signature=""), "no X-ZEvent-Signature header"),
            (dict(signature=good[4:]), 'is not "mac=<hex>"'),
            (dict(signature=with_app_secret), "signed with the app secret"),
            (dict(signature=other), "the mac does not match"),
            (dict(signature=good, raw=b"[1, 2]"), "not a JSON object"),
            (dict(signature=good, raw=json_bytes(no_timestamp)), "no timestamp"),
            (dict(signature=good, raw=json_bytes(dict(event, app_id="app-2"))), "app_id is not CCCD_ZALO_OA_APP_ID"),
        ]
        for kwargs, expected in cases:
            caplog.clear()
            assert await bot.post(event, **kwargs) == 403
            (line,) = [r.getMessage() for r in caplog.records if "refused (403)" in r.getMessage()]
            assert expected in line, (expected, line)
            assert SECRET_KEY not in line and fake.app_secret not in line
        await bot.channel.idle()
        assert fake.delivered() == []


def json_bytes(value) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False).encode()


@pytest.mark.parametrize("place", ["recipient.id", "recipient.group_id", "message.conversation_id", "conversation.id"])
async def test_the_group_id_is_found_where_zalo_puts_it(fake, sqlite_url, catalog, place):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        event = oa_event("user_send_group_text", sender="u5", recipient="group-3", text="/menu", group_in=place)
        assert await bot.post(event) == 200
        (menu,) = await fake.wait_delivered(1, "group-3")
        assert menu["group"] is True and "1. Hướng dẫn 9 bước" in menu["text"]
        assert fake.delivered("u5") == []


async def test_a_group_message_without_a_group_id_is_refused_with_a_log_line(fake, sqlite_url, catalog, caplog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        event = oa_event("user_send_group_text", sender="u5", recipient="group-3", text="/menu", group_in="", msg_id="nogroup-1")
        assert await bot.post(event) == 200
        await bot.channel.idle()
        await asyncio.sleep(0.05)
        assert fake.delivered() == []  # above all, not answered in private to u5
        assert any("without a group id" in r.getMessage() and "nogroup-1" in r.getMessage() for r in caplog.records)


async def test_text_echoed_into_a_group_cannot_mention_everyone(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog) as bot:
        (_not_found, _usage) = await say(bot, fake, "/thon [@All] [x @Ông Ba] họp", 2, user="officer-1", group="group-1")
        text = _not_found["text"]
        assert "[@" not in text and "@Ông" not in text
        assert "[＠All]" in text and "[x ＠Ông Ba]" in text
        from bot.channels.zalo_oa import escape_group_text

        assert escape_group_text("[@All] a@b.vn [@x@y]") == "[＠All] a@b.vn [＠x＠y]"


async def test_group_question_words_configured_by_the_commune_make_a_message_addressed(fake, sqlite_url, catalog):
    settings = make_settings(fake, sqlite_url, group_question_words="căn cước, cccd")
    async with running(settings, catalog) as bot:
        assert await bot.post(oa_event("user_send_group_text", sender="u5", recipient="group-1", text="chiều nay họp thôn nhé")) == 200
        (answer,) = await say(bot, fake, "mat can cuoc lam lai the nao", 1, user="u5", group="group-1")
        assert answer["group"] is True
        await bot.channel.idle()
        assert len(fake.delivered("group-1")) == 1  # the chat about the meeting was left alone


async def test_pkce_follows_zalo_v4_rules(fake, db):
    settings = make_settings(fake, db.url, tokens=False)
    lines: list[str] = []
    assert await authorize(settings, db, out=lines.append) == 0
    (url,) = [line.strip() for line in lines if line.strip().startswith("http")]
    challenge = parse_qs(urlparse(url).query)["code_challenge"][0]
    async with db.transaction() as session:
        verifier = (await kv.get(session, "zalo_oa:pkce"))[0]["verifier"]
    assert len(verifier) == 43 and re.fullmatch(r"[A-Za-z0-9_-]{43}", verifier)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge)  # base64url of 32 bytes, no "=" padding
    import base64
    import hashlib

    assert challenge == base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    fake.grant_code("code-9", challenge)
    assert await authorize(settings, db, "code-9", out=lines.append) == 0


async def test_a_refresh_token_from_the_api_explorer_is_exchanged_and_stored(fake, db):
    settings = make_settings(fake, db.url, tokens=False)
    _access, explorer_refresh = fake.issue_pair()  # what the API Explorer shows
    lines: list[str] = []
    assert await authorize(settings, db, refresh_token=explorer_refresh, out=lines.append) == 0
    pair, _ = await stored_pair(db)
    assert pair.source == "explorer" and fake.access_tokens[pair.access_token] == "valid"
    assert pair.refresh_token in fake.refresh_tokens and explorer_refresh in fake.spent_refresh_tokens
    lines.clear()
    assert await authorize(settings, db, refresh_token=explorer_refresh, out=lines.append) == 1  # single use
    assert lines[0].startswith("Lỗi: Zalo từ chối refresh token")
    parser = argparse.ArgumentParser(prog="cccd-bot")
    register_cli(parser.add_subparsers(dest="command", required=True))
    assert parser.parse_args(["zalo-oa", "authorize", "--refresh-token", "r-1"]).refresh_token == "r-1"


async def test_healthz_says_when_zalo_cannot_be_reached_and_is_normal_again_once_it_answers(fake, sqlite_url, catalog):
    async with running(make_settings(fake, sqlite_url), catalog, keeper_interval=0.05, recheck_interval=0.05) as bot:

        async def health_until(expected: int) -> dict:
            for _ in range(200):
                async with bot.http.get(bot.server.make_url("/healthz")) as resp:
                    if resp.status == expected:
                        return await resp.json()
                await asyncio.sleep(0.05)
            raise AssertionError(f"/healthz never answered {expected}")

        assert (await health_until(200))["ok"] is True
        port = fake.port
        await fake.close()  # Zalo stops answering
        body = await health_until(503)
        assert body["ok"] is False and list(body["failing"]) == ["zalo_oa"]
        assert f"127.0.0.1:{port}" in body["failing"]["zalo_oa"] and "không kết nối được" in body["failing"]["zalo_oa"]
        # A person writes meanwhile: the webhook takes the message, the reply waits for Zalo.
        assert await bot.post(oa_event("user_send_text", sender="u1", text="/menu")) == 200
        await fake.start(port)  # Zalo answers again
        body = await health_until(200)
        assert body["ok"] is True and "failing" not in body
        (menu,) = await fake.wait_delivered(1, "u1")
        assert menu["text"].startswith("Anh/chị cần gì?")
