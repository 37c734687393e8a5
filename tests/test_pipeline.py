"""The message pipeline: a delivery taken once and handled in one transaction; the outbox delivered per
chat in order, retried until the platform takes it, ended only by a refusal; one sender at a time."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from bot.messages import ChatType, Incoming, Reply
from bot.pipeline import Pipeline, Refused, Retry, Sender, Sent, Unavailable, Work
from storage import deliveries
from storage.db import Database
from storage.migrate import upgrade
from tests.fakes.deliveries import inbox_keys, outbox


class FakePlatform:
    """A transport that records what it delivered; scripted answers per chat, then Sent."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str]] = []
        self.script: dict[str, list] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.calls = 0

    async def deliver(self, chat_id: str, call: dict):
        self.calls += 1
        gate = self.gates.get(chat_id)
        if gate is not None:
            await gate.wait()
        answers = self.script.get(chat_id)
        if answers:
            return answers.pop(0)
        self.delivered.append((chat_id, call["text"]))
        return Sent()


async def no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


def make_sender(db, platform, holder="a", **kw) -> Sender:
    sender = Sender(db, holder=holder, sleep=no_wait, jitter=0, listen=False, **kw)
    sender.register("fake", platform)
    return sender


async def queue(db, chat: str, *texts: str, user: str | None = None) -> None:
    async with db.transaction() as session:
        await deliveries.enqueue(
            session, "fake", chat, [{"text": t} for t in texts], datetime.now(timezone.utc), user_id=user
        )


def incoming(chat: str, text: str, user: str = "u1") -> Incoming:
    return Incoming("fake", chat, ChatType.PRIVATE, user, "Lan", text, datetime.now(timezone.utc))


def work(key: str, chat: str, text: str) -> Work:
    return Work("fake", key, chat, render=lambda replies: [{"text": r.text} for r in replies], incoming=incoming(chat, text), user_id="u1")


# -- the sender -------------------------------------------------------------------------------------


async def test_each_chats_calls_go_out_in_order_and_a_held_chat_does_not_hold_the_others(database):
    platform = FakePlatform()
    platform.gates["slow"] = asyncio.Event()
    sender = make_sender(database, platform)
    await queue(database, "slow", "s1", "s2")
    await queue(database, "fast", "f1", "f2", "f3")
    await queue(database, "slow", "s3")
    drained = asyncio.create_task(sender.drain())
    for _ in range(100):
        if len(platform.delivered) == 3:
            break
        await asyncio.sleep(0.01)
    assert platform.delivered == [("fast", "f1"), ("fast", "f2"), ("fast", "f3")]
    platform.gates["slow"].set()
    await drained
    assert [t for c, t in platform.delivered if c == "slow"] == ["s1", "s2", "s3"]
    assert {r.status for r in await outbox(database)} == {"sent"}
    assert all(r.call is None for r in await outbox(database))  # nothing of the text is kept once sent


async def test_rate_limits_and_outages_are_retried_for_as_long_as_it_takes(database):
    platform = FakePlatform()
    platform.script["c"] = [Retry("429", after=30)] + [Retry("502")] * 20
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    sender = make_sender(database, platform, backoff=(1.0, 2.0, 60.0))
    sender.sleep = record
    await queue(database, "c", "một", "hai")
    await sender.drain()
    assert platform.delivered == [("c", "một"), ("c", "hai")]
    assert sleeps == [30.0, 1.0, 2.0] + [60.0] * 18  # as asked, then backing off, never giving up
    rows = await outbox(database)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 21), ("sent", 0)]


async def test_a_refusal_ends_a_call_and_a_gone_chat_ends_its_pending_calls(database):
    platform = FakePlatform()
    platform.script["bad"] = [Refused("bad request")]
    platform.script["blocked"] = [Refused("forbidden", whole_chat=True)]
    sender = make_sender(database, platform)
    await queue(database, "bad", "x", "y")
    await queue(database, "blocked", "p", "q", "r")
    await sender.drain()
    assert platform.delivered == [("bad", "y")]
    rows = {(r.chat_id, r.status, r.last_error) for r in await outbox(database)}
    assert rows == {
        ("bad", "refused", "bad request"),
        ("bad", "sent", None),
        ("blocked", "refused", "forbidden"),
    }
    assert platform.calls == 3  # nothing more was tried on the blocked chat


async def test_after_a_restart_a_chats_next_call_waits_behind_the_one_waiting_for_its_retry(database):
    from datetime import timedelta

    await queue(database, "c", "một", "hai")
    await queue(database, "d", "khác")
    now = datetime.now(timezone.utc)
    first = (await outbox(database))[0]
    # The holder that died had been told to try "một" again in a minute (e.g. 429 retry_after 60).
    async with database.transaction() as session:
        await deliveries.note_attempt(session, first.id, 1, now + timedelta(minutes=1), "429")
    platform = FakePlatform()
    clock = {"now": now}
    sender = make_sender(database, platform, clock=lambda: clock["now"])
    await sender.drain()
    assert platform.delivered == [("d", "khác")]  # "hai" does not overtake "một"
    clock["now"] = now + timedelta(minutes=2)
    await sender.drain()
    assert platform.delivered == [("d", "khác"), ("c", "một"), ("c", "hai")]


async def test_one_sender_at_a_time_and_takeover_when_the_holder_dies(db_url):
    db_a, db_b = Database(db_url), Database(db_url)
    await db_a.migrate()
    platform = FakePlatform()
    a = make_sender(db_a, platform, holder="a", lease_ttl=1.0)
    b = make_sender(db_b, platform, holder="b", lease_ttl=1.0)
    try:
        assert await a.keep_lease()
        assert not await b.keep_lease()
        await queue(db_a, "c", "1", "2")
        await b.drain()  # not the holder: sends nothing
        assert platform.delivered == []
        await a.drain()
        assert platform.delivered == [("c", "1"), ("c", "2")]
        await queue(db_a, "c", "3")
        # a dies without giving the lease up: b takes over once it expires
        await asyncio.sleep(1.1)
        assert await b.keep_lease()
        await b.drain()
        assert platform.delivered == [("c", "1"), ("c", "2"), ("c", "3")]
        assert not await a.keep_lease()  # a (back from the dead) finds it taken
        # and a restarted process under the same name takes its lease back at once
        again = make_sender(db_b, platform, holder="b", lease_ttl=1.0)
        assert await again.keep_lease()
    finally:
        await db_a.close()
        await db_b.close()


# -- receiving --------------------------------------------------------------------------------------


async def test_a_delivery_is_taken_once_even_by_two_processes_at_the_same_moment(db_url, service, catalog, settings, clock):
    from bot.service import ChatService

    other_db = Database(db_url)
    try:
        other = ChatService(other_db, catalog, settings, clock=clock)
        pipelines = [Pipeline(service), Pipeline(other)]
        results = await asyncio.gather(*(p.receive(work("k1", "chat-1", "/menu")) for p in pipelines for _ in range(3)))
        assert sorted(results) == [False] * 5 + [True]
        rows = await outbox(service.db)
        assert len(rows) == 1
        assert rows[0].call["text"].startswith("Anh/chị cần gì?") and rows[0].user_id == "u1"
        assert await inbox_keys(service.db, "fake") == ["k1"]
    finally:
        await other_db.close()


async def test_a_failure_before_the_commit_leaves_nothing_and_the_retry_is_handled(service):
    pipeline = Pipeline(service)
    real = service.handle_many

    async def away(*args, **kwargs):
        raise OSError("connection reset by the database")

    service.handle_many = away
    with pytest.raises(Unavailable):
        await pipeline.receive(work("k2", "chat-2", "/menu"))
    assert await inbox_keys(service.db, "fake") == [] and await outbox(service.db) == []
    service.handle_many = real
    assert await pipeline.receive(work("k2", "chat-2", "/menu"))
    assert [r.call["text"][:15] for r in await outbox(service.db)] == ["Anh/chị cần gì?"]


async def test_a_bug_in_handling_rolls_everything_back_and_says_sorry_once(service, catalog):
    pipeline = Pipeline(service)

    async def bug(*args, **kwargs):
        raise ValueError("a bug")

    service.handle_many = bug
    assert await pipeline.receive(work("k3", "chat-3", "/menu"))
    assert not await pipeline.receive(work("k3", "chat-3", "/menu"))  # the platform's retry changes nothing
    assert [r.call["text"] for r in await outbox(service.db)] == [catalog.msg("error")]


def guide_work(key: str, chat: str, text: str, user: str) -> Work:
    """A typed message, or a button press when `text` is "press:<payload>"."""
    payload = text.removeprefix("press:") if text.startswith("press:") else None
    msg = Incoming("fake", chat, ChatType.PRIVATE, user, "Lan", "" if payload else text, datetime.now(timezone.utc), payload=payload)
    return Work("fake", key, chat, render=lambda replies: [{"text": r.text} for r in replies], incoming=msg, user_id=user)


async def test_deliveries_arriving_together_are_each_handled_and_each_chat_keeps_its_order(service):
    pipeline = Pipeline(service)
    walk = ["/huongdan", "press:g:n", "press:g:n", "press:g:n"]
    works = [guide_work(f"{chat}-{n}", chat, text, f"u-{chat}") for n, text in enumerate(walk) for chat in ("a", "b", "c")]
    results = await asyncio.gather(*(pipeline.receive(w) for w in works))
    assert results == [True] * len(works)
    steps: dict[str, list[str]] = {}
    for row in await outbox(service.db):
        if row.call["text"].startswith("Bước"):
            steps.setdefault(row.chat_id, []).append(row.call["text"].split()[1].rstrip(":"))
    # Every chat walked its own guide, one step per press, in the order it pressed.
    assert steps == {chat: ["1/9", "2/9", "3/9", "4/9"] for chat in ("a", "b", "c")}


async def test_a_bug_with_one_delivery_does_not_touch_those_handled_with_it(service, catalog):
    pipeline = Pipeline(service)
    real = service.handle_many

    async def bug_on_x(session, msgs, started=None, **kwargs):
        if any(m.text == "x" for m in msgs):
            raise ValueError("a bug")
        return await real(session, msgs, started, **kwargs)

    service.handle_many = bug_on_x
    works = [work("k-ok-1", "chat-1", "/menu"), work("k-bad", "chat-2", "x"), guide_work("k-ok-2", "chat-3", "/menu", "u3")]
    assert await asyncio.gather(*(pipeline.receive(w) for w in works)) == [True, True, True]
    texts = {r.chat_id: r.call["text"] for r in await outbox(service.db)}
    assert texts["chat-2"] == catalog.msg("error")
    assert texts["chat-1"].startswith("Anh/chị cần gì?") and texts["chat-3"].startswith("Anh/chị cần gì?")


async def test_replies_go_straight_to_this_processs_sender_behind_what_the_chat_still_waits_for(service):
    platform = FakePlatform()
    sender = make_sender(service.db, platform)
    assert await sender.keep_lease()  # the sender's scanning loop is not started: no scan but drain's
    pipeline = Pipeline(service, sender)
    # Another process queued a call for chat-x that this sender has not seen yet.
    await queue(service.db, "chat-x", "trước")
    assert await pipeline.receive(work("k-y", "chat-y", "/menu"))
    assert await pipeline.receive(work("k-x", "chat-x", "/menu"))
    for _ in range(200):
        if platform.delivered:
            break
        await asyncio.sleep(0.01)
    # chat-y had nothing waiting: its reply went out without a scan; chat-x's waits for the one before it.
    assert [chat for chat, _text in platform.delivered] == ["chat-y"]
    await sender.drain()
    assert [text[:15] for chat, text in platform.delivered if chat == "chat-x"] == ["trước", "Anh/chị cần gì?"]
    assert {r.status for r in await outbox(service.db)} == {"sent"}


async def test_erasure_deletes_what_still_waits_for_the_person(database):
    await queue(database, "chat-9", "a", "b", user="person-9")
    await queue(database, "chat-8", "c", user="person-8")
    async with database.transaction() as session:
        assert await deliveries.delete_pending_of_user(session, "fake", "person-9") == 2
    assert [r.user_id for r in await outbox(database)] == ["person-8"]


# -- migrations -------------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # several processes need PostgreSQL
async def test_processes_started_together_on_an_empty_database_migrate_once(db_url):
    code = "import sys; from storage.migrate import upgrade_sync; upgrade_sync(sys.argv[1])"
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", code, db_url, stderr=asyncio.subprocess.PIPE)
        for _ in range(3)
    ]
    results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    assert [p.returncode for p in procs] == [0, 0, 0], [err.decode()[-500:] for _out, err in results]
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            versions = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        from alembic.script import ScriptDirectory

        from storage.migrate import alembic_config

        assert versions == [ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()]
    finally:
        await db.close()


async def test_keys_recorded_before_the_pipeline_are_kept(db_url):
    await upgrade(db_url, "0002")
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO processed_updates (channel, update_key, created_at, done) "
                    "VALUES ('fake', 'old', '2026-01-01 00:00:00', true)"
                )
            )
        await db.migrate()
        assert await inbox_keys(db, "fake") == ["old"]
    finally:
        await db.close()


def held_work(key: str, chat: str, gate: asyncio.Event, entered: asyncio.Event, fail: bool = False) -> Work:
    """A delivery whose transaction stays open until `gate` is set (its channel's change waits on it)."""

    async def apply(_session) -> None:
        entered.set()
        await gate.wait()
        if fail:
            raise ValueError("a bug in the channel's change")

    w = work(key, chat, "/menu")
    w.apply = apply
    return w


@pytest.mark.parametrize("fail", [False, True], ids=["committed", "rolled-back"])
async def test_a_call_sent_while_messages_are_handled_is_recorded_with_them(service, fail):
    """A sent call is recorded by the receiving transaction running at that moment instead of a transaction
    (SQLite: one writer, every commit waits for the disk) or a statement (PostgreSQL) of its own; if that one
    rolls back, the call is recorded all the same, once, and never sent again."""
    from sqlalchemy import event

    from storage.db import STATS

    own_marks: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            own_marks.append(statement)

    platform = FakePlatform()
    platform.gates["chat-a"] = asyncio.Event()
    platform.gates["chat-b"] = asyncio.Event()  # chat-b's reply waits: only chat-a's call is recorded here
    sender = make_sender(service.db, platform)
    assert await sender.keep_lease()
    pipeline = Pipeline(service, sender)
    await queue(service.db, "chat-a", "trước")
    await sender.dispatch_due()  # chat-a's call is being made (the platform holds it)
    gate, entered = asyncio.Event(), asyncio.Event()
    received = asyncio.create_task(pipeline.receive(held_work("k-b", "chat-b", gate, entered, fail)))
    await asyncio.wait_for(entered.wait(), 5)  # chat-b's transaction is open, holding the writer
    before = STATS["transactions"]
    if not service.db.is_sqlite:
        event.listen(service.db.engine.sync_engine, "before_cursor_execute", note)
    platform.gates["chat-a"].set()
    for _ in range(100):  # the call is made; its record waits for the transaction
        if platform.delivered:
            break
        await asyncio.sleep(0.01)
    assert platform.delivered == [("chat-a", "trước")]
    gate.set()
    assert await asyncio.wait_for(received, 10)  # handled (or, after the bug, taken with the apology)
    if not fail:
        if service.db.is_sqlite:
            assert STATS["transactions"] == before  # none began for chat-a's call: it rode on chat-b's (begun before)
        else:
            event.remove(service.db.engine.sync_engine, "before_cursor_execute", note)
            assert own_marks == []  # recorded by chat-b's write statement, not one of its own
        assert (await outbox(service.db))[0].status == "sent"
    platform.gates["chat-b"].set()
    await asyncio.wait_for(sender.drain(), 10)
    rows = {r.chat_id: r for r in await outbox(service.db)}
    assert rows["chat-a"].status == "sent" and rows["chat-b"].status == "sent"
    assert [c for c, _t in platform.delivered].count("chat-a") == 1


async def test_after_a_server_error_a_chat_tries_again_as_soon_as_the_platform_takes_a_call(database):
    """A chat backing off after a 5xx (here a 30 s step) does not wait out its step once another call of the
    channel goes through; a 429's retry_after is waited out all the same."""
    platform = FakePlatform()
    platform.script["chat-a"] = [Retry("HTTP 502")]
    platform.script["chat-c"] = [Retry("flood", after=30.0)]
    sender = Sender(database, holder="a", jitter=0, listen=False, backoff=(30.0,))  # real sleeps
    sender.register("fake", platform)
    assert await sender.keep_lease()
    await queue(database, "chat-a", "a1")
    await queue(database, "chat-c", "c1")
    await sender.dispatch_due()
    for _ in range(100):  # both met their fault and wait
        if platform.calls == 2:
            break
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await queue(database, "chat-b", "b1")
    await sender.dispatch_due()  # chat-b's call goes through: the platform is back
    for _ in range(300):
        if ("chat-a", "a1") in platform.delivered:
            break
        await asyncio.sleep(0.01)
    assert ("chat-a", "a1") in platform.delivered and time.monotonic() - started < 3
    assert ("chat-c", "c1") not in platform.delivered  # retry_after 30 s: still waiting
    await sender.stop(drain_seconds=0)


# -- replies before the flush (CCCD_PIPELINE_REPLY_BEFORE_FLUSH) -------------------------------------


class GatedFlushDatabase(Database):
    """A database whose disk flushes wait for `gate` (or fail with `failure`): what the platform sees meanwhile."""

    def __init__(self, url: str) -> None:
        super().__init__(url, reply_before_flush=True)
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: Exception | None = None
        self.flushes = 0

    async def flushed(self) -> None:
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        self.flushes += 1
        await super().flushed()


async def reply_before_flush_pipeline(db_url, catalog, settings, clock, db: Database):
    from bot.service import ChatService

    await db.migrate()
    platform = FakePlatform()
    sender = make_sender(db, platform)
    assert await sender.keep_lease()
    return platform, sender, Pipeline(ChatService(db, catalog, settings, clock=clock), sender)


async def test_with_replies_before_the_flush_the_reply_goes_out_and_the_platform_hears_taken_once_on_disk(db_url, catalog, settings, clock):
    db = GatedFlushDatabase(db_url)
    try:
        platform, sender, pipeline = await reply_before_flush_pipeline(db_url, catalog, settings, clock, db)
        db.gate.clear()  # the disk is slow
        receiving = asyncio.ensure_future(pipeline.receive(work("f1", "chat-f", "/menu")))
        for _ in range(300):
            if platform.delivered:
                break
            await asyncio.sleep(0.01)
        # The person has the answer while the webhook is not answered yet.
        assert [(chat, text[:15]) for chat, text in platform.delivered] == [("chat-f", "Anh/chị cần gì?")]
        assert not receiving.done()
        db.gate.set()
        assert await receiving is True
        assert db.flushes == 1
        # The platform's retry of an acknowledged update changes nothing.
        assert await pipeline.receive(work("f1", "chat-f", "/menu")) is False
        await sender.drain()
        assert len(platform.delivered) == 1
    finally:
        await db.close()


async def test_with_replies_before_the_flush_a_failed_flush_makes_the_platform_deliver_again_and_nothing_twice(db_url, catalog, settings, clock):
    db = GatedFlushDatabase(db_url)
    try:
        platform, sender, pipeline = await reply_before_flush_pipeline(db_url, catalog, settings, clock, db)
        db.failure = OSError("connection reset by the database")
        with pytest.raises(Unavailable):
            await pipeline.receive(work("f2", "chat-g", "/menu"))
        db.failure = None
        assert await pipeline.receive(work("f2", "chat-g", "/menu")) is False  # it was committed: a duplicate
        await sender.drain()
        assert [(chat, text[:15]) for chat, text in platform.delivered] == [("chat-g", "Anh/chị cần gì?")]
    finally:
        await db.close()


async def test_with_replies_before_the_flush_each_chat_keeps_its_order(db_url, catalog, settings, clock):
    db = Database(db_url, reply_before_flush=True)
    try:
        platform, sender, pipeline = await reply_before_flush_pipeline(db_url, catalog, settings, clock, db)
        walk = ["/huongdan", "press:g:n", "press:g:n", "press:g:n"]
        works = [guide_work(f"{chat}-{n}", chat, text, f"u-{chat}") for n, text in enumerate(walk) for chat in ("a", "b", "c")]
        assert await asyncio.gather(*(pipeline.receive(w) for w in works)) == [True] * len(works)
        await sender.drain()
        steps: dict[str, list[str]] = {}
        for chat, text in platform.delivered:
            if text.startswith("Bước"):
                steps.setdefault(chat, []).append(text.split()[1].rstrip(":"))
        assert steps == {chat: ["1/9", "2/9", "3/9", "4/9"] for chat in ("a", "b", "c")}
        assert {r.status for r in await outbox(db)} == {"sent"}
    finally:
        await db.close()


def test_replies_go_before_the_flush_by_default_and_the_setting_turns_it_off(catalog, tmp_path, monkeypatch):
    # What `serve` builds: a reply goes once its commit is visible (the platform hears "taken" once it is on
    # disk), on both databases; CCCD_PIPELINE_REPLY_BEFORE_FLUSH=false makes replies wait for the disk.
    from bot.config import Settings
    from bot.server import DATABASE, create_app

    def built(url: str, **env: str) -> bool:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        app = create_app(Settings(database_url=url), catalog)
        return app[DATABASE].reply_before_flush

    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}"
    assert built("postgresql+asyncpg://bot@127.0.0.1:5432/bot") is True
    assert built(sqlite) is True
    assert built("postgresql+asyncpg://bot@127.0.0.1:5432/bot", CCCD_PIPELINE_REPLY_BEFORE_FLUSH="false") is False
    assert built(sqlite) is False  # still set
