"""The Zalo Bot channel against a fake Bot API over real HTTP: what people in Zalo would see."""

from __future__ import annotations

import asyncio
import itertools
import json
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.catalog import load_valid_catalog
from bot.channels.zalo_bot import SECRET_HEADER, ZALO_BOT, ZaloBotChannel
from bot.config import Settings
from bot.server import CHANNELS, SENDER, SETTINGS, create_app
from storage.db import Database
from tests.fakes.database import ClosingDatabase
from tests.fakes.deliveries import inbox_keys, leave_pending, outbox
from tests.fakes.raw_http import raw_post
from tests.fakes.zalo_api import FakeZaloBot, bot_update

TOKEN = "1234567890:test-secret"
INSTANCES = itertools.count()
HINT = "Trả lời bằng số, ví dụ 1."


@pytest.fixture
async def fake():
    server = FakeZaloBot(TOKEN)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def db_path(tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path}/zalo-bot.sqlite3"


def make_settings(fake: FakeZaloBot, db_url: str, **extra) -> Settings:
    values = dict(
        database_url=db_url,
        zalo_bot_token=TOKEN,
        zalo_bot_base_url=fake.base_url,
        officers="zalo_bot:officer-1",
        # What the installer sets: the display name people type after "@" (getMe gives only bot.XXXX).
        zalo_bot_mention_names="CCCD Bot",
    )
    values.update(extra)
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def running(settings: Settings, catalog):
    """The bot's aiohttp application, started on 127.0.0.1 with tiny delays."""
    app = create_app(settings, catalog, Database(settings.database_url), instance=f"test-{next(INSTANCES)}")
    channel = app[ZALO_BOT]
    channel.error_delays = (0.01, 0.02)
    channel.api.retry_delays = (0.01, 0.01, 0.01)
    app[SENDER].backoff = (0.01, 0.02)
    channel.poll_timeout = 1
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        await asyncio.wait_for(channel.started.wait(), 5)
        yield app, server, channel
    finally:
        await server.close()


async def say(fake: FakeZaloBot, text: str, expect: int, *, chat_id: str = "user-1", **kw) -> list[str]:
    """Send a message through getUpdates; return the `expect` new texts the chat received."""
    before = len(fake.sent(chat_id))
    fake.push(bot_update(text, chat_id=chat_id, **kw))
    texts = await fake.wait_sent(before + expect, chat_id)
    return texts[before:]


async def test_private_walk_through_the_nine_steps_by_typing_numbers(fake, db_path, catalog):
    async with running(make_settings(fake, db_path), catalog) as (app, _server, channel):
        assert "long polling" in app[CHANNELS]["zalo_bot"].detail
        welcome, menu = await say(fake, "/start", 2)
        methods = [c.method for c in fake.calls]
        assert methods.index("deleteWebhook") < methods.index("getUpdates")
        assert welcome.startswith("Chào Bà Lan!")
        assert "1. Hướng dẫn 9 bước" in menu and menu.endswith(HINT)

        (step,) = await say(fake, "1", 1)
        assert step.startswith("Bước 1/9")
        for k in range(2, 10):
            (step,) = await say(fake, "1", 1)  # "1. Tiếp theo"
            assert step.startswith(f"Bước {k}/9"), step
            assert "1. Tiếp theo\n2. Quay lại" in step and step.endswith(HINT)
        (after,) = await say(fake, "1", 1)
        assert after == catalog.msg("outcome_prompt") + "\n\n1. " + catalog.msg("outcome_yes") + "\n2. " + catalog.msg(
            "outcome_not_yet"
        ) + "\n3. " + catalog.msg("outcome_problem") + "\n" + HINT
        assert all(c.body.get("chat_id") == "user-1" for c in fake.calls_to("sendMessage"))


async def test_group_question_with_a_mention_is_answered_without_the_mention(fake, db_path, catalog):
    async with running(make_settings(fake, db_path), catalog):
        question = "mất căn cước làm lại thế nào"
        with_mention = await say(fake, f"@CCCD Bot {question}", 1, chat_id="group-1", user_id="u5", group=True)
        # The platform also delivers replies to the bot, which carry no mention.
        without = await say(fake, question, 1, chat_id="group-2", user_id="u6", group=True)
        assert with_mention == without
        assert "@CCCD Bot" not in with_mention[0]


async def test_non_text_gets_a_polite_word_in_private_and_nothing_in_groups(fake, db_path, catalog):
    async with running(make_settings(fake, db_path), catalog) as (_app, _server, channel):
        fake.push(bot_update(None, chat_id="group-1", user_id="u5", group=True, event="message.sticker.received"))
        texts = await say(fake, None, 1, event="message.image.received")
        assert texts == [catalog.msg("not_text")]
        fake.push(bot_update(None, event="message.unsupported.received", chat_id="user-2"))
        await fake.wait_sent(1, "user-2")
        await channel.idle()
        assert fake.sent("group-1") == []


async def test_duplicate_deliveries_are_processed_once(fake, db_path, catalog):
    async with running(make_settings(fake, db_path), catalog) as (_app, _server, channel):
        update = bot_update("/start", message_id="dup-1")
        fake.push(update)
        fake.push(update)
        fake.push(bot_update("/menu", message_id="after"))
        await fake.wait_sent(3, "user-1")
        await fake.wait_until(lambda: fake.updates.empty())
        await channel.idle()
        texts = fake.sent("user-1")
        assert len(texts) == 3  # welcome + menu once, then the menu again
        assert texts[0].startswith("Chào")


async def test_rate_limits_are_retried_without_losing_the_reply(fake, db_path, catalog):
    async with running(make_settings(fake, db_path), catalog):
        fake.fail("sendMessage", 429, "Too Many Requests")  # ok:false, error_code 429
        fake.fail("sendMessage", 429, "Too Many Requests", status=429)  # and as an HTTP status
        texts = await say(fake, "/start", 2)
        assert texts[0].startswith("Chào")
        assert len(fake.calls_to("sendMessage")) == 4


async def test_ok_false_is_a_failure_and_the_bot_carries_on(fake, db_path, catalog):
    async with running(make_settings(fake, db_path), catalog):
        fake.fail("getUpdates", 500, "Internal error")  # polling survives a failed poll
        fake.fail("sendMessage", 400, "Bad request")  # the welcome is refused...
        texts = await say(fake, "/start", 1)
        assert texts[0].startswith("Anh/chị cần gì?")  # ...the menu still goes out
        assert [c.answer["ok"] for c in fake.calls_to("sendMessage")] == [False, True]
        (step,) = await say(fake, "1", 1)
        assert step.startswith("Bước 1/9")


async def test_a_bad_token_is_reported_at_start(fake, db_path, catalog):
    settings = make_settings(fake, db_path, zalo_bot_token="999:wrong")
    async with running(settings, catalog) as (app, _server, channel):
        assert channel.me == {}
        assert fake.calls_to("getMe")[0].answer == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        assert "lỗi getMe (getMe: error 401 Unauthorized): kiểm tra CCCD_ZALO_BOT_TOKEN" in app[CHANNELS]["zalo_bot"].detail


async def test_can_join_groups_is_reported(db_path, catalog):
    server = FakeZaloBot(TOKEN, can_join_groups=False)
    await server.start()
    try:
        async with running(make_settings(server, db_path), catalog) as (app, _server, _channel):
            assert "can_join_groups=false" in app[CHANNELS]["zalo_bot"].detail
    finally:
        await server.close()


async def test_messages_over_2000_characters_are_split(fake, db_path):
    catalog = load_valid_catalog()
    sentence = "Mang theo giấy tờ tùy thân và kiểm tra kỹ thông tin trước khi nộp hồ sơ. "
    catalog.messages["welcome"] = sentence * 60  # about 4,400 characters
    async with running(make_settings(fake, db_path), catalog):
        texts = await say(fake, "/start", 4)
        parts = texts[:3]
        assert [len(t) <= 2000 for t in texts] == [True] * 4
        assert " ".join(parts) == (sentence * 60).strip()
        assert texts[3].startswith("Anh/chị cần gì?")


async def test_webhook_mode_registers_the_webhook_and_checks_the_secret(fake, db_path, catalog):
    settings = make_settings(
        fake, db_path, zalo_bot_webhook_url="https://bot.example.org/zalo/bot/hook", zalo_bot_webhook_secret="s3cret-token-123"
    )
    async with running(settings, catalog) as (app, server, channel):
        assert fake.webhook == {"url": "https://bot.example.org/zalo/bot/hook", "secret_token": "s3cret-token-123"}
        assert fake.calls_to("getUpdates") == []
        assert "webhook" in app[CHANNELS]["zalo_bot"].detail
        url = server.make_url("/zalo/bot/hook")
        body = bot_update("/start", message_id="w1")  # the bare form live deliveries have
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: "s3cret-token-12"}):
                async with http.post(url, json=body, headers=headers) as resp:
                    assert resp.status == 403
            await channel.idle()
            assert fake.sent() == []
            for _ in range(2):  # Zalo retries: the same delivery twice
                async with http.post(url, json=body, headers={SECRET_HEADER: "s3cret-token-123"}) as resp:
                    assert resp.status == 200
        texts = await fake.wait_sent(2, "user-1")
        await channel.idle()
        assert len(fake.sent()) == 2 and texts[0].startswith("Chào")


async def test_webhook_secret_is_derived_when_not_configured(fake, db_path, catalog):
    settings = make_settings(fake, db_path, zalo_bot_webhook_url="https://bot.example.org/zb")
    async with running(settings, catalog) as (_app, server, channel):
        secret = fake.webhook["secret_token"]
        assert 8 <= len(secret) <= 256 and TOKEN.split(":")[1] not in secret
        assert secret == ZaloBotChannel(channel.service, settings).secret  # stable across processes
        async with aiohttp.ClientSession() as http:
            # The {"ok", "result"} wrapper of the docs' sample is read too.
            async with http.post(server.make_url("/zb"), json={"ok": True, "result": bot_update("/menu")}, headers={SECRET_HEADER: secret}) as resp:
                assert resp.status == 200
        (menu,) = await fake.wait_sent(1)
        assert menu.startswith("Anh/chị cần gì?")


async def test_channel_is_off_without_a_token(db_path, catalog):
    settings = Settings(_env_file=None, database_url=db_path)
    db = Database(db_path)
    app = create_app(settings, catalog, db)
    assert app[CHANNELS]["zalo_bot"].on is False
    assert "CCCD_ZALO_BOT_TOKEN" in app[CHANNELS]["zalo_bot"].detail
    assert ZALO_BOT not in app
    await db.close()


async def test_server_errors_are_retried_without_losing_the_reply(fake, db_path, catalog):
    async with running(make_settings(fake, db_path), catalog):
        fake.fail("sendMessage", 502, "Bad Gateway", status=502)
        texts = await say(fake, "/start", 2)
        assert texts[0].startswith("Chào")
        assert [c.status for c in fake.calls_to("sendMessage")] == [502, 200, 200]


async def test_a_group_command_after_a_mention_is_read_as_a_command(fake, db_path, catalog):
    async with running(make_settings(fake, db_path), catalog):
        (menu,) = await say(fake, "@CCCD Bot /menu", 1, chat_id="group-1", user_id="u5", group=True)
        assert "1. Hướng dẫn 9 bước" in menu


async def test_a_refused_webhook_turns_the_channel_off(fake, db_path, catalog):
    # The platform wants 8-256 characters: "short" is refused.
    settings = make_settings(fake, db_path, zalo_bot_webhook_url="https://bot.example.org/zb", zalo_bot_webhook_secret="short")
    async with running(settings, catalog) as (app, _server, _channel):
        status = app[CHANNELS]["zalo_bot"]
        assert not status.on
        assert status.detail.startswith("lỗi: Zalo không nhận webhook https://bot.example.org/zb (setWebhook")


async def test_undecodable_secret_header_is_refused_not_an_error(fake, db_path, catalog):
    settings = make_settings(fake, db_path, zalo_bot_webhook_url="https://bot.example.org/zb", zalo_bot_webhook_secret="s3cret-token-123")
    async with running(settings, catalog) as (_app, server, channel):
        body = json.dumps({"ok": True, "result": bot_update("/menu")}).encode()
        headers = [(b"Content-Type", b"application/json"), (SECRET_HEADER.encode(), b"\xffs3cret-token-123")]
        assert await raw_post(server.host, server.port, "/zb", headers, body) == 403
        await channel.idle()
        assert fake.sent() == []


async def test_shutdown_finishes_queued_updates_before_closing_the_database(fake, db_path, catalog):
    settings = make_settings(fake, db_path, zalo_bot_webhook_url="https://bot.example.org/zb", zalo_bot_webhook_secret="s3cret-token-123")
    db = ClosingDatabase(db_path)
    app = create_app(settings, catalog, db)
    channel = app[ZALO_BOT]
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
    fake.fail("sendMessage", 429, "Too Many Requests")
    async with aiohttp.ClientSession() as http:
        body = {"ok": True, "result": bot_update("/menu")}
        async with http.post(server.make_url("/zb"), json=body, headers={SECRET_HEADER: "s3cret-token-123"}) as resp:
            assert resp.status == 200
    await asyncio.wait_for(held.wait(), 5)
    await server.close()
    assert db.busy_at_close == 0  # the reply was sent before the database went away
    assert fake.sent("user-1")[0].startswith("Anh/chị cần gì?")



# -- durable deliveries ----------------------------------------------------------------------------


async def test_a_reply_cut_short_by_shutdown_is_delivered_once_after_a_restart(fake, db_path, catalog):
    settings = make_settings(fake, db_path, zalo_bot_webhook_url="https://bot.example.org/zb", zalo_bot_webhook_secret="s3cret-token-123")
    app = create_app(settings, catalog, Database(db_path))
    app[SETTINGS].sender_drain_seconds = 0  # shutdown does not wait: the reply is cut short, as by a crash
    held = asyncio.Event()

    async def held_sleep(seconds: float) -> None:  # the rate-limit wait outlives the process
        held.set()
        await asyncio.Event().wait()

    app[SENDER].sleep = held_sleep
    channel = app[ZALO_BOT]
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await asyncio.wait_for(channel.ready.wait(), 5)
    fake.fail("sendMessage", 429, "Too Many Requests")
    update = bot_update("/menu", message_id="cut-1")
    async with aiohttp.ClientSession() as http:
        async with http.post(server.make_url("/zb"), json={"ok": True, "result": update}, headers={SECRET_HEADER: "s3cret-token-123"}) as resp:
            assert resp.status == 200  # acknowledged: Zalo will not deliver it again
    await asyncio.wait_for(held.wait(), 5)
    await server.close()
    assert fake.sent("user-1") == []

    async with running(make_settings(fake, db_path), catalog) as (app, _server, channel):
        texts = await fake.wait_sent(1, "user-1")  # the outbox row, sent by the new process
        await channel.idle()
        fake.push(update)  # and a late duplicate is still dropped
        fake.push(bot_update("/menu", message_id="after"))
        await fake.wait_sent(2, "user-1")
        await fake.wait_until(lambda: fake.updates.empty())
        await channel.idle()
        assert len(fake.sent("user-1")) == 2
        assert texts[0].startswith("Anh/chị cần gì?")
        rows = await outbox(channel.service.db)
        assert [(r.status, r.attempts) for r in rows] == [("sent", 1), ("sent", 0)]
        assert sorted(await inbox_keys(channel.service.db, "zalo_bot")) == ["after", "cut-1"]


async def test_replies_left_pending_by_a_crash_are_sent_at_start_in_order(fake, db_path, catalog):
    db = Database(db_path)
    await db.migrate()
    calls = [{"m": "sendMessage", "text": f"tin {i}"} for i in range(5)]
    await leave_pending(db, "zalo_bot", "user-1", calls, key="lost-1")
    await db.close()
    async with running(make_settings(fake, db_path), catalog) as (_app, _server, channel):
        texts = await fake.wait_sent(5, "user-1")
        assert texts == [f"tin {i}" for i in range(5)]
        await channel.idle()
        assert [r.status for r in await outbox(channel.service.db)] == ["sent"] * 5


# -- the platform as it really behaves (issue 15) -----------------------------------------------------


async def test_403_is_retried_like_a_server_error_when_sending_and_the_rest_of_the_reply_follows(fake, db_path, catalog):
    async with running(make_settings(fake, db_path), catalog):
        fake.fail("sendMessage", 403, "Internal server error", times=2)
        texts = await say(fake, "/start", 2)
        assert texts[0].startswith("Chào") and texts[1].startswith("Anh/chị cần gì?")
        assert [c.answer.get("error_code") for c in fake.calls_to("sendMessage")] == [403, 403, None, None]


async def test_403_is_retried_when_setting_the_webhook(fake, db_path, catalog):
    fake.fail("setWebhook", 403, "Internal server error")
    settings = make_settings(fake, db_path, zalo_bot_webhook_url="https://bot.example.org/zb", zalo_bot_webhook_secret="s3cret-token-123")
    async with running(settings, catalog) as (app, _server, _channel):
        assert [c.answer["ok"] for c in fake.calls_to("setWebhook")] == [False, True]
        assert app[CHANNELS]["zalo_bot"].on and fake.webhook is not None


@pytest.mark.parametrize("names", ["CCCD Bot", ""])
async def test_a_group_command_after_the_display_name_links_the_group(fake, db_path, catalog, names):
    """`@<display name> /thon …` works with the name configured, and without it (a mention before a command)."""
    from storage import people, registry
    from tests.conftest import EXAMPLE_CSV

    async with running(make_settings(fake, db_path, zalo_bot_mention_names=names), catalog) as (app, _server, channel):
        async with channel.service.db.transaction() as session:
            await registry.import_rows(session, registry.parse_csv(EXAMPLE_CSV.read_bytes()))
        (done,) = await say(fake, "@CCCD Bot /thon Tổ dân phố 3", 1, chat_id="group-1", user_id="officer-1", group=True)
        assert done == "Nhóm này đã được gắn với Tổ dân phố 3, Phường Ngọc Trạo."
        async with channel.service.db.transaction() as session:
            assert (await people.get_chat(session, "zalo_bot", "group-1")).hamlet_code == "ngoctrao_tdp03"


async def test_the_account_handle_and_configured_names_are_stripped_from_group_questions(fake, db_path, catalog):
    settings = make_settings(fake, db_path, zalo_bot_mention_names="CCCD Bot, Trợ lý căn cước")
    async with running(settings, catalog) as (app, _server, _channel):
        assert "@Trợ lý căn cước" in app[CHANNELS]["zalo_bot"].detail
        question = "mất căn cước làm lại thế nào"
        plain = await say(fake, question, 1, chat_id="group-0", user_id="u4", group=True)
        for n, mention in enumerate(("@bot.x7Kc2QmA", "@Trợ lý căn cước", "@cccd bot")):
            texts = await say(fake, f"{mention} {question}", 1, chat_id=f"group-{n + 1}", user_id="u5", group=True)
            assert texts == plain, mention


@pytest.mark.parametrize("event", ["message.image.received", "message.sticker.received", "message.voice.received"])
async def test_a_caption_on_a_photo_sticker_or_voice_is_answered_as_text(fake, db_path, catalog, event):
    async with running(make_settings(fake, db_path), catalog):
        plain = await say(fake, "mất căn cước làm lại thế nào", 1, chat_id="user-2")
        (answer,) = await say(fake, None, 1, chat_id="user-3", event=event, caption="mất căn cước làm lại thế nào")
        assert answer == plain[0] and answer != catalog.msg("not_text")
        # In a group, with the bot's name in the caption.
        group_plain = await say(fake, "@CCCD Bot mất căn cước làm lại thế nào", 1, chat_id="group-1", user_id="u5", group=True)
        (in_group,) = await say(fake, None, 1, chat_id="group-2", user_id="u5", group=True, event=event, caption="@CCCD Bot mất căn cước làm lại thế nào")
        assert in_group == group_plain[0]
        # Without a caption: the polite word, as before.
        assert await say(fake, None, 1, chat_id="user-4", event=event) == [catalog.msg("not_text")]


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "wrapped"])
async def test_webhook_deliveries_in_both_forms_are_answered(fake, db_path, catalog, wrapped):
    settings = make_settings(fake, db_path, zalo_bot_webhook_url="https://bot.example.org/zb", zalo_bot_webhook_secret="s3cret-token-123")
    async with running(settings, catalog) as (_app, server, channel):
        fake.webhook_target = str(server.make_url("/zb"))
        assert await fake.deliver_webhook(bot_update("/menu", chat_id="user-9"), wrapped=wrapped) == 200
        assert await fake.deliver_webhook(bot_update("/menu", chat_id="user-9"), wrapped=wrapped, secret="wrong-secret") == 403
        (menu,) = await fake.wait_sent(1, "user-9")
        await channel.idle()
        assert menu.startswith("Anh/chị cần gì?") and len(fake.sent("user-9")) == 1


async def test_set_webhook_probe_is_answered_and_its_verification_logged(db_path, catalog, caplog):
    """setWebhook probes the URL before it answers: the probe gets 200, and the bot says so and stays on."""
    server = FakeZaloBot(TOKEN, probe_webhook=True)
    await server.start()
    port = 6611  # this checkout's port range: the webhook URL must be known before the server starts
    settings = make_settings(
        server, db_path, zalo_bot_webhook_url=f"http://127.0.0.1:{port}/zb", zalo_bot_webhook_secret="s3cret-token-123"
    )
    caplog.set_level("INFO", logger="bot.channels.zalo_bot")
    try:
        app = create_app(settings, catalog, Database(settings.database_url), instance=f"test-{next(INSTANCES)}")
        test_server = TestServer(app, host="127.0.0.1", port=port)
        await test_server.start_server()
        try:
            await asyncio.wait_for(app[ZALO_BOT].started.wait(), 5)
            await server.wait_until(lambda: server.probes)
            await asyncio.sleep(0.05)
            assert server.probes == [200]
            status = app[CHANNELS]["zalo_bot"]
            assert status.on and "Zalo đã thử gọi địa chỉ webhook: được" in status.detail
            assert any("probe of the URL succeeded" in r.getMessage() for r in caplog.records)
        finally:
            await test_server.close()
    finally:
        await server.close()


async def test_a_failed_webhook_probe_is_reported_without_turning_the_webhook_off(db_path, catalog, caplog):
    server = FakeZaloBot(TOKEN, probe_webhook=True)
    await server.start()
    # Nothing listens on this port: the probe fails, setWebhook still registered the URL.
    settings = make_settings(server, db_path, zalo_bot_webhook_url="http://127.0.0.1:6612/zb", zalo_bot_webhook_secret="s3cret-token-123")
    try:
        async with running(settings, catalog) as (app, _server, _channel):
            await server.wait_until(lambda: server.probes)
            await asyncio.sleep(0.05)
            status = app[CHANNELS]["zalo_bot"]
            assert status.on and "Zalo thử gọi địa chỉ webhook không được" in status.detail
            assert any("probe of the URL failed" in r.getMessage() for r in caplog.records)
    finally:
        await server.close()


async def test_typing_is_shown_when_the_reply_is_slow_and_not_when_it_is_quick(fake, db_path, catalog):
    async with running(make_settings(fake, db_path, typing_after_seconds=0.05), catalog) as (app, _server, channel):
        app[SENDER].backoff = (0.4,)
        fake.fail("sendMessage", 502, "Bad Gateway", status=502)  # the first reply waits 0.4 s
        await say(fake, "/start", 2)
        # One "typing…" while the first reply waited, before it went out.
        calls = [c for c in fake.calls if c.method in ("sendMessage", "sendChatAction")]
        first_sent = next(i for i, c in enumerate(calls) if c.method == "sendMessage" and c.answer.get("ok"))
        assert [c.method for c in calls[:first_sent]].count("sendChatAction") == 1
        assert fake.calls_to("sendChatAction")[0].body == {"chat_id": "user-1", "action": "typing"}
        assert len(fake.calls_to("sendChatAction")) == 1
    async with running(make_settings(fake, db_path, typing_after_seconds=3), catalog):
        before = len(fake.calls_to("sendChatAction"))
        await say(fake, "/menu", 1)
        assert len(fake.calls_to("sendChatAction")) == before
