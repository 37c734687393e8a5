"""Faults with real processes and the real PostgreSQL (issue 11): `cccd-bot serve` killed with SIGKILL
mid-stream; its PostgreSQL restarted or unreachable for 10 s; the Bot API answering 429, 5xx or nothing
for a while, or refusing a chat for good; two processes started together on an empty database.

The test plays Telegram: it posts webhook updates per chat in order and retries each until it is answered
2xx, as Telegram does (tests/fakes/bot_process.py); a fake Bot API (tests/fakes/telegram_api.py, over
real HTTP) records what each chat received. Each chat walks the nine-step guide (/huongdan, then "next"
eight times), so a reply lost, repeated or out of order shows in the "Bước k/9" it begins with.
"""

from __future__ import annotations

import asyncio
import collections
import time

import aiohttp
import asyncpg
import pytest

from bot.catalog import load_valid_catalog
from storage.db import Database
from tests.conftest import PG_ADMIN_URL, PG_TEST_DB, _pg_required
from tests.fakes.bot_process import TOKEN, BotProcess, WebhookPlatform, bot_env, free_port
from tests.fakes.deliveries import outbox
from tests.fakes.pg_cluster import Cluster
from tests.fakes.telegram_api import FakeTelegramAPI

CHATS, STEPS = 30, 9
GUIDE = [f"Bước {k}/{STEPS}" for k in range(1, STEPS + 1)]
BOT_USER = {"id": 123, "is_bot": True, "first_name": "Trợ lý", "username": "cccd_test_bot"}


def guide_updates(chat: int) -> list[dict]:
    """A person's walk through the guide: /huongdan, then the "next" button eight times."""
    user = {"id": chat, "is_bot": False, "first_name": "Lan"}
    private = {"id": chat, "type": "private", "first_name": "Lan"}
    updates = []
    for k in range(STEPS):
        update_id = chat * 100 + k
        if k == 0:
            msg = {"message_id": update_id, "date": int(time.time()), "chat": private, "from": user, "text": "/huongdan",
                   "entities": [{"type": "bot_command", "offset": 0, "length": 9}]}
            updates.append({"update_id": update_id, "message": msg})
            continue
        shown = {"message_id": 1, "date": int(time.time()), "chat": private, "from": BOT_USER, "text": "…"}
        query = {"id": str(update_id), "from": user, "chat_instance": "c", "message": shown, "data": "g:n"}
        updates.append({"update_id": update_id, "callback_query": query})
    return updates


def steps(api: FakeTelegramAPI, chat: int) -> list[str]:
    """The guide steps the chat received, in the order they arrived (each text's first 8 characters)."""
    return [text[:8] for text in api.texts(chat)]


def folded(received: list[str]) -> list[str]:
    """The steps with repeats of the one before folded: what a person reads past a reply sent twice."""
    return [s for j, s in enumerate(received) if j == 0 or s != received[j - 1]]


async def wait_until(predicate, timeout: float, what: str, log: BotProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what}\n{log.log_tail() if log else ''}")
        await asyncio.sleep(0.2)


def all_walked(api: FakeTelegramAPI, chats) -> bool:
    return all(len(set(steps(api, chat))) >= STEPS for chat in chats)


@pytest.fixture
async def api():
    fake = await FakeTelegramAPI(TOKEN).start()
    yield fake
    await fake.close()


# -- kill -9 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_kill_9_mid_stream_loses_nothing_skips_no_step_and_resumes_within_seconds(db_url, api, tmp_path):
    port = free_port()
    env = bot_env(db_url, api.base_url, port, "fault-bot")
    bot = await BotProcess(env, port, tmp_path / "bot.log").start()
    chats = [10_000 + i for i in range(CHATS)]
    try:
        async with aiohttp.ClientSession() as http:
            await bot.wait_ready(http)
            platform = WebhookPlatform(http)
            streams = asyncio.gather(*(platform.chat(guide_updates(chat), [bot.hook_url]) for chat in chats))
            await wait_until(lambda: platform.acknowledged >= CHATS * STEPS // 3, 120, "a third of the updates", bot)
            await bot.kill()  # SIGKILL: no shutdown, no drain
            killed_at = platform.acknowledged
            bot = await BotProcess(env, port, tmp_path / "bot.log").start()
            await bot.wait_ready(http)
            restarted = time.monotonic()  # from ready: starting Python and loading content is not recovery
            await asyncio.wait_for(streams, 180)
            await wait_until(lambda: all_walked(api, chats), 60, "every chat's nine steps", bot)
    finally:
        await bot.stop()

    assert 0 < killed_at < CHATS * STEPS
    duplicates = 0
    for chat in chats:
        received = steps(api, chat)
        # Nothing lost, no step skipped, in order: exactly Bước 1/9 … 9/9 once replies in flight are folded.
        assert folded(received) == GUIDE, (chat, received)
        duplicates += len(received) - len(folded(received))
    # Only replies in flight at the kill can come twice: at most one a chat.
    assert duplicates <= CHATS
    after = [c.at for c in api.calls_of("sendMessage") if c.at > restarted and not getattr(c, "refused", False)]
    print(f"kill -9 after {killed_at} acknowledged updates: duplicates (in flight) = {duplicates}; "
          f"first reply {min(after) - restarted:.2f} s after the restarted process was ready")
    assert after and min(after) - restarted < 5  # resumed within seconds


# -- PostgreSQL restarted or unreachable ------------------------------------------------------------


@pytest.fixture
async def own_cluster():
    """A PostgreSQL cluster of this test's own (the shared server on 5432 is never stopped)."""
    try:
        cluster = Cluster(free_port())
    except FileNotFoundError as exc:
        if _pg_required():
            pytest.fail(f"PostgreSQL is required here but its server binaries are missing: {exc}")
        pytest.skip(f"{exc}; set CCCD_TEST_REQUIRE_POSTGRES=1 to fail instead")
    try:
        await cluster.init()
        await cluster.start()
        yield cluster
    finally:
        await cluster.destroy()


OUTAGE = 10.0


@pytest.mark.parametrize("outage", ["restart", "unreachable"])
async def test_postgresql_away_for_10_s_mid_stream_loses_nothing_and_nobody_is_told_of_a_fault(outage, own_cluster, api, tmp_path):
    """restart: the server stops (connections ended, new ones refused) and comes back 10 s later.
    unreachable: every process of the server is frozen for 10 s (nothing answers; connections hang)."""
    port = free_port()
    bot = await BotProcess(bot_env(own_cluster.url(), api.base_url, port, "outage-bot"), port, tmp_path / "bot.log").start()
    chats = [20_000 + i for i in range(CHATS)]
    answers: list[tuple[float, float, int | str]] = []  # (posted at, answered at, answer)
    readiness: list[int | None] = []
    try:
        async with aiohttp.ClientSession() as http:
            await bot.wait_ready(http)
            # Telegram waits a while for an answer; 5 s here, shorter than the outage, so posts made while
            # the database is frozen time out before it is back.
            platform = WebhookPlatform(http, timeout=5, on_answer=lambda _url, status, at: answers.append((at, time.monotonic(), status)))
            streams = asyncio.gather(*(platform.chat(guide_updates(chat), [bot.hook_url]) for chat in chats))
            await wait_until(lambda: platform.acknowledged >= CHATS * STEPS // 3, 120, "a third of the updates", bot)
            acknowledged_before = platform.acknowledged
            if outage == "restart":
                await own_cluster.stop("fast")
            else:
                own_cluster.freeze()
            started = time.monotonic()
            while time.monotonic() - started < OUTAGE:
                readiness.append(await bot.readyz(http))
                await asyncio.sleep(0.5)
            ended = time.monotonic()
            if outage == "restart":
                await own_cluster.start()
            else:
                own_cluster.thaw()
            await asyncio.wait_for(streams, 240)
            await wait_until(lambda: all_walked(api, chats), 120, "every chat's nine steps", bot)
            await bot.wait_ready(http, timeout=30)
    finally:
        own_cluster.thaw()
        await bot.stop()

    # While the database was away the process said it was not ready, and answered the platform so that
    # it delivers again (503, or no answer in time), never 200 for what it could not store.
    assert 503 in readiness and 200 not in readiness, readiness
    during = collections.Counter(status for posted, _, status in answers if started <= posted < ended)
    within = collections.Counter(status for posted, answered, status in answers if started <= posted and answered < ended)
    assert within[503] + within["timeout"] > 0 and not within[200], within
    assert platform.acknowledged == CHATS * STEPS and acknowledged_before < CHATS * STEPS
    error = load_valid_catalog().msg("error")
    duplicates = 0
    for chat in chats:
        assert error not in api.texts(chat), (chat, "was told of a fault a retry fixed")
        received = steps(api, chat)
        assert folded(received) == GUIDE, (chat, received)  # nothing acknowledged lost, in order
        duplicates += len(received) - len(folded(received))
    print(f"PostgreSQL {outage} for {OUTAGE:.0f} s after {acknowledged_before} acknowledged updates: answers to "
          f"the posts made while away {dict(during)} (answered while away {dict(within)}), all answers {dict(platform.answers)}, /readyz while away {collections.Counter(readiness)}, "
          f"duplicated replies {duplicates}")
    # The process never died: a reply sent while its record could not be written is recorded once the
    # database is back, before the outbox is scanned again, so none is sent twice.
    assert duplicates == 0


# -- the Bot API failing for a while, or refusing for good ------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_bot_api_429_5xx_and_timeouts_delay_replies_but_lose_none_and_only_refusals_end_them(db_url, api, tmp_path):
    # Five chats each: flood control asking 1 s eight times in a row (more waits than the old limit of
    # five), or 5 s; server errors; a Bot API that answers nothing (the bot's client gives up after 20 s) —
    # each for 8 s from the chat's first reply; and two chats refused for good (blocked, chat not found).
    faults = {
        "429 retry_after 1": dict(status=429, retry_after=1, times=8),
        "429 retry_after 5": dict(status=429, retry_after=5, seconds=8.0),
        "500": dict(status=500, seconds=8.0),
        "502": dict(status=502, seconds=8.0),
        "timeout": dict(status=504, hang=25.0, seconds=8.0),
    }
    groups = {name: [30_000 + 10 * g + i for i in range(5)] for g, name in enumerate(faults)}
    healthy = [30_100 + i for i in range(5)]
    blocked, gone = 30_200, 30_201
    port = free_port()
    bot = await BotProcess(bot_env(db_url, api.base_url, port, "api-fault-bot"), port, tmp_path / "bot.log").start()
    try:
        async with aiohttp.ClientSession() as http:
            await bot.wait_ready(http)
            for name, fault in faults.items():
                for chat in groups[name]:
                    api.fail("sendMessage", chat_id=chat, **fault)
            api.block(blocked)
            api.fail(("sendMessage", "sendPhoto"), 400, times=None, chat_id=gone, description="Bad Request: chat not found")
            platform = WebhookPlatform(http)
            delivered = [chat for chats in groups.values() for chat in chats] + healthy
            await asyncio.wait_for(asyncio.gather(*(platform.chat(guide_updates(chat), [bot.hook_url]) for chat in delivered + [blocked, gone])), 180)
            await wait_until(lambda: all_walked(api, delivered), 120, "every chat's nine steps", bot)
            db = Database(db_url)
            try:
                await wait_until_async(lambda: no_pending(db), 60, "no outbox row left pending")
                rows = await outbox(db, "telegram")
            finally:
                await db.close()
    finally:
        await bot.stop()

    for chat in delivered:
        # Every committed reply arrived once the Bot API recovered, each once, in order.
        assert steps(api, chat) == GUIDE, (chat, steps(api, chat))
    for name, chats in groups.items():
        faulted = [c for c in api.calls_of("sendMessage") if c.params.get("chat_id") in chats and getattr(c, "refused", False)]
        assert faulted, f"{name}: no call met the fault"
    flood_waits = [c for c in api.calls_of("sendMessage") if c.params.get("chat_id") in groups["429 retry_after 1"] and getattr(c, "refused", False)]
    assert len(flood_waits) == 8 * len(groups["429 retry_after 1"])  # eight waits each, none given up
    # Only a permanent refusal ends a reply, and it is recorded with its reason.
    for chat, reason in ((blocked, "blocked"), (gone, "chat not found")):
        assert api.texts(chat) == []
        ended = [r for r in rows if r.chat_id == str(chat)]
        assert ended and all(r.status == "refused" and reason in (r.last_error or "").lower() for r in ended), [(r.status, r.last_error) for r in ended]
        tries = [c for c in api.calls_of("sendMessage") if c.params.get("chat_id") == chat]
        assert len(tries) <= len(ended)  # a refused reply is not tried again
    sent = [r for r in rows if r.status == "sent"]
    assert len(sent) == len(api.texts()) == STEPS * len(delivered)
    retried = collections.Counter(getattr(c, "fault", None) for c in api.calls_of("sendMessage") if getattr(c, "refused", False))
    print(f"Bot API faults: refused calls by fault {dict(retried)}; sent {len(sent)} replies, "
          f"{sum(r.status == 'refused' for r in rows)} refused for good, 0 pending")


async def no_pending(db: Database) -> bool:
    return not [r for r in await outbox(db) if r.status == "pending"]


async def wait_until_async(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out ({timeout:.0f} s) waiting for {what}"
        await asyncio.sleep(0.5)


# -- two processes started together on an empty database -------------------------------------------


@pytest.fixture
async def empty_pg_url():
    """A database created for this test: nothing in it, not even the schema."""
    name = f"{PG_TEST_DB}_empty"
    admin = PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = await asyncio.wait_for(asyncpg.connect(admin, timeout=5), 15)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        if _pg_required():
            pytest.fail(f"PostgreSQL is required here but unreachable at {PG_ADMIN_URL}: {exc!r}")
        pytest.skip(f"PostgreSQL unreachable ({exc!r}); set CCCD_TEST_REQUIRE_POSTGRES=1 to fail instead")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_two_processes_started_together_on_an_empty_database_migrate_once_and_keep_each_chats_order(empty_pg_url, api, tmp_path):
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    ports = [free_port(), free_port()]
    bots = [
        BotProcess(bot_env(empty_pg_url, api.base_url, port, f"twin-{i}"), port, tmp_path / f"bot{i}.log")
        for i, port in enumerate(ports)
    ]
    chats = [40_000 + i for i in range(CHATS)]
    try:
        await asyncio.gather(*(bot.start() for bot in bots))  # at the same moment, on an empty database
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(bot.wait_ready(http) for bot in bots))
            platform = WebhookPlatform(http)
            # Each chat's updates alternate between the two processes: update k goes to process k % 2.
            await asyncio.wait_for(asyncio.gather(*(platform.chat(guide_updates(chat), [b.hook_url for b in bots]) for chat in chats)), 180)
            await wait_until(lambda: all_walked(api, chats), 120, "every chat's nine steps", bots[0])
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots))

    conn = await asyncpg.connect(empty_pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        versions = [row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await conn.close()
    assert versions == [ScriptDirectory.from_config(alembic_config(empty_pg_url)).get_current_head()]
    for bot in bots:
        assert "Traceback" not in bot.log_path.read_text(errors="replace"), bot.log_tail()
    for chat in chats:
        # Handled in turn by both processes, sent by the one holding the sender lease: in order, once each.
        assert steps(api, chat) == GUIDE, (chat, steps(api, chat))
