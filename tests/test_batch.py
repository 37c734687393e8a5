"""A receiving batch's reads and writes (storage/batch.py): on PostgreSQL one statement each, storing exactly
what the statements by kind store; on both databases, what the pipeline relies on."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bot.config import Settings
from bot.messages import ChatType, Incoming
from bot.pipeline import Pipeline, Sender, Sent, Work
from bot.service import ChatService
from storage import batch, conversations, deliveries, erasure, people, registry
from storage.db import Database
from storage.models import Chat, User
from tests.conftest import EXAMPLE_CSV


class Platform:
    async def deliver(self, chat_id: str, call: dict):
        return Sent()


def msg(clock, text="", payload=None, *, user="u1", chat=None, group=False, addressed=True, at=None) -> Incoming:
    return Incoming(
        "console", chat or user, ChatType.GROUP if group else ChatType.PRIVATE, user, "Lan", text, at or clock(),
        payload=payload, addressed=addressed,
    )


def work(key: str, incoming: Incoming) -> Work:
    return Work(
        "console", key, incoming.chat_id, render=lambda replies: [{"text": r.text} for r in replies], incoming=incoming,
        user_id=incoming.sender_id,
    )


async def scenario(db: Database, catalog, clock) -> None:
    """Private chats, a group with a hamlet, the guide, answered, stuck and unanswered questions, a choice
    turned unanswered, a message sent before its sender's erasure, /xoa: every kind of row and counter."""
    settings = Settings(_env_file=None, database_url=db.url, officers="console:officer-1", pseudonym_salt="fixed salt")
    service = ChatService(db, catalog, settings, clock=clock)
    await service.load_salt()
    sender = Sender(db, holder="test", listen=False, clock=clock)
    sender.register("console", Platform())
    await sender.keep_lease()
    pipeline = Pipeline(service, sender, clock=clock)
    async with db.transaction() as session:
        await erasure.record(session, service.erasure_ref("console", "u6"), clock() + timedelta(minutes=1))
    stuck = f"g:s:{catalog.steps[1].slug}"
    rounds = [
        [msg(clock, "/thon Tổ dân phố 5", user="officer-1", chat="g1", group=True), msg(clock, "/start h_ngoctrao_tdp02"),
         msg(clock, "/huongdan", user="u2"), msg(clock, "cccd", user="u3"), msg(clock, "/start", user="u5")],
        [msg(clock, "/cauhoi mất căn cước làm lại thế nào", user="u4", chat="g1", group=True),
         msg(clock, "mất căn cước làm lại thế nào"), msg(clock, payload="g:n", user="u2"), msg(clock, payload="f:-", user="u3"),
         msg(clock, "xin chào", user="u6"), msg(clock, "chuyện riêng", user="u7", chat="g1", group=True, addressed=False)],
        [msg(clock, "/start", user="u4"), msg(clock, payload=stuck, user="u2"), msg(clock, "/xoa", user="u5"),
         msg(clock, "thời tiết mai thế nào", user="u3"), msg(clock, "làm căn cước ở đâu", user="u8", chat="g1", group=True)],
        [msg(clock, "1", user="u5"), msg(clock, "đúng rồi", user="u4"), msg(clock, "thời tiết mai thế nào", user="u9")],
    ]
    n = 0
    for i, messages in enumerate(rounds):
        if i == 2:
            clock.advance(days=1)
        works = []
        for incoming in messages:
            n += 1
            works.append(work(f"k{n}", incoming))
        await pipeline.receive_all(works)
        await sender.drain()


TABLES = {
    "users": "channel, external_id", "chats": "channel, external_id", "conversation_states": "channel, chat_id, user_id",
    "query_log": "id", "guide_events": "id", "inbox": "channel, update_key", "outbox": "id", "erasures": "person_ref",
    "stat_messages": "scope, day, channel, outcome", "stat_messages_monthly": "scope, month, outcome",
    "stat_topics": "scope, day, topic", "stat_stuck": "scope, day, step", "stat_seen_daily": "what, hamlet_code, day, channel, ref",
    "stat_seen_monthly": "scope, month, what, channel, ref", "stat_people": "scope, month, what, channel",
    "question_wordings": "text_hash", "stat_unanswered": "hamlet_code, day, text_hash", "reminders": "id",
}


async def dump(db: Database) -> dict[str, list[tuple]]:
    out = {}
    async with db.transaction() as session:
        for table, order in TABLES.items():
            rows = (await session.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))).mappings().all()
            # The time a message took to handle, and the random stand-in of an erased person's pseudonym, differ by run.
            out[table] = sorted(
                tuple((k, "anonymous" if k == "ref" and str(v).startswith("x") else v) for k, v in row.items() if k != "handling_ms")
                for row in rows
            )
    return out


async def run(url: str, catalog, clock) -> dict[str, list[tuple]]:
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        await registry.import_rows(session, registry.parse_csv(EXAMPLE_CSV.read_bytes()))
    try:
        await scenario(db, catalog, clock)
        return await dump(db)
    finally:
        await db.close()


async def empty_schema(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


async def test_on_postgresql_a_batch_in_two_statements_stores_what_the_statements_by_kind_store(db_url, catalog, monkeypatch):
    if not db_url.startswith("postgresql"):
        pytest.skip("the one-statement reads and writes are PostgreSQL's")
    from tests.conftest import FrozenClock

    one = await run(db_url, catalog, FrozenClock())
    await empty_schema(db_url)
    monkeypatch.setattr(batch, "ONE_STATEMENT", False)
    by_kind = await run(db_url, catalog, FrozenClock())
    assert one == by_kind
    # The scenario reached every kind of row and counter, in a hamlet, its commune and everywhere.
    for table in TABLES:
        if table != "reminders":
            assert one[table], table
    scopes = {dict(row)["scope"] for row in one["stat_messages"]}
    assert {"ngoctrao_tdp05", "@ngoc_trao", "ngoctrao_tdp02", "*"} <= scopes
    assert sum(dict(row)["n"] for row in one["stat_unanswered"]) >= 2


async def test_a_batch_read_skips_those_erased_after_they_wrote_and_creates_or_touches_the_others(registry_loaded, clock):
    db = registry_loaded
    now = clock()
    async with db.transaction() as session:
        await people.seen_users(session, [("console", "u-known")], now - timedelta(days=3))
        await people.set_user_hamlet(session, "console", "u-known", "ngoctrao_tdp03")
        await people.set_user_opted_out(session, "console", "u-known", True)
        await people.seen_chats(session, [("console", "g1", "group")], now - timedelta(days=3))
        await people.set_chat_hamlet(session, "console", "g1", "ngoctrao_tdp05")
        await conversations.write_states(session, [(("console", "g1", "u-known"), {"flow": "idle"})], now - timedelta(days=3))
        await erasure.record(session, "ref-gone", now)
        await erasure.record(session, "ref-back", now - timedelta(hours=1))
    from storage import logs

    async with db.transaction() as session:
        await logs.add_many(session, queries=[{
            "created_at": now - timedelta(days=1), "channel": "console", "chat_type": "group", "chat_ref": "g-ref",
            "hamlet_code": "ngoctrao_tdp05", "user_ref": "p-new", "text": "x", "topic": None, "score": 0.0, "outcome": "answered",
        }])
    msgs = [
        batch.Message("console", "g1", "group", "u-known", "ref-known", "p-known", now),
        batch.Message("console", "u-new", "private", "u-new", "ref-new", "p-new", now),
        batch.Message("console", "u-gone", "private", "u-gone", "ref-gone", "p-gone", now - timedelta(minutes=5)),
        batch.Message("console", "u-back", "private", "u-back", "ref-back", "p-back", now),
    ]
    async with db.writing() as session:
        reads = await batch.read(session, msgs, now)
    assert reads.erased == {2}  # wrote before their erasure; the one who came back after it is not
    assert reads.states == {("console", "g1", "u-known"): {"flow": "idle"}}
    assert reads.users == {("console", "u-known"): ("ngoctrao_tdp03", True), ("console", "u-new"): (None, False), ("console", "u-back"): (None, False)}
    assert reads.chats == {("console", "g1"): "ngoctrao_tdp05", ("console", "u-new"): None, ("console", "u-back"): None}
    assert reads.last_group == {"p-new": "ngoctrao_tdp05"}  # offered in private to the person without a hamlet
    async with db.transaction() as session:
        users = dict((await session.execute(select(User.external_id, User.last_seen_at))).all())
        chats = set((await session.execute(select(Chat.external_id))).scalars())
    assert set(users) == {"u-known", "u-new", "u-back"}, "the erased person is not created again"
    assert erasure.aware(users["u-known"]) == now, "a known person is seen now"
    assert chats == {"g1", "u-new", "u-back"}


async def test_a_batch_write_returns_the_rows_in_order_and_what_each_chat_still_waited_for(database, clock):
    now = clock()
    async with database.transaction() as session:
        await deliveries.enqueue(session, "console", "a", [{"text": "a1"}, {"text": "a2"}], now)
        await deliveries.enqueue(session, "console", "c", [{"text": "c1"}], now)
    async with database.transaction() as session:
        first = (await deliveries.due_keys(session, now))[0][0]
        await deliveries.mark_sent(session, [first], now)
    writes = batch.Writes(states=[(("console", "b", "u"), {"flow": "idle"})])
    calls = [("console", "b", [{"text": "b1"}, {"text": "b2"}], "u"), ("console", "a", [{"text": "a3"}], "v")]
    async with database.writing() as session:
        rows, earlier = await batch.write(session, writes, calls, now, pending_before=True)
    assert [(r.chat_id, r.call["text"]) for r in rows] == [("b", "b1"), ("b", "b2"), ("a", "a3")]
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert earlier == {("console", "a"): [first + 1]}  # a1 was sent; c is not among these chats
    async with database.transaction() as session:
        pending = await deliveries.pending_of(session, [("console", "a"), ("console", "b")])
        assert await conversations.read_states(session, [("console", "b", "u")]) == {("console", "b", "u"): {"flow": "idle"}}
    assert {chat: sorted(ids) for chat, ids in pending.items()} == {
        ("console", "a"): [first + 1, rows[2].id], ("console", "b"): [rows[0].id, rows[1].id]
    }
    async with database.writing() as session:
        assert await batch.write(session, batch.Writes(), [], now, pending_before=True) == ([], {})


async def test_batches_of_one_process_running_side_by_side_keep_each_chats_order(service):
    """Two transactions at a time (CCCD_PIPELINE_CONCURRENCY=2): a chat's deliveries still one after the other."""
    pipeline = Pipeline(service, concurrency=3)
    walk = ["/huongdan", "g:n", "g:n", "g:n", "g:n"]
    works = []
    for chat in ("a", "b", "c", "d"):
        for i, step in enumerate(walk):
            incoming = Incoming("fake", chat, ChatType.PRIVATE, chat, "Lan", "" if step == "g:n" else step, service.clock(),
                                payload=step if step == "g:n" else None)
            works.append(Work("fake", f"{chat}{i}", chat, render=lambda replies: [{"text": r.text} for r in replies], incoming=incoming))
    await asyncio.gather(*(pipeline.receive(w) for w in works))
    from tests.fakes.deliveries import outbox

    steps: dict[str, list[str]] = {}
    for row in await outbox(service.db):
        if row.call["text"].startswith("Bước "):
            steps.setdefault(row.chat_id, []).append(row.call["text"].split()[1].rstrip(":"))
    assert steps == {chat: ["1/9", "2/9", "3/9", "4/9", "5/9"] for chat in "abcd"}
