"""The pipeline's tables: inbox keys (each delivery taken once), the outbox of platform calls, and leases.

Everything here is one statement (one round trip) per call, written with SQLAlchemy Core: these run for
every message, and the ORM's unit of work would double their cost.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import InboxEntry, Lease, OutboxMessage

KEY_LENGTH = 128
PENDING, SENT, REFUSED = "pending", "sent", "refused"
ENDED = (SENT, REFUSED)


def _insert(session: AsyncSession, table):
    """The dialect's INSERT, which knows ON CONFLICT (PostgreSQL and SQLite both do)."""
    if session.bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# -- inbox ----------------------------------------------------------------------------------------


async def take(session: AsyncSession, channel: str, update_key: str, now: datetime) -> bool:
    """Record a delivery's key; False when any process recorded it before (a retry or a duplicate)."""
    return bool(await take_many(session, [(channel, update_key)], now))


async def take_many(
    session: AsyncSession, keys: Sequence[tuple[str, str]], now: datetime, *, locks: Sequence[int] = (), flush_later: bool = False
) -> set[tuple[str, str]]:
    """Record deliveries' (channel, key) in one statement; return those no process recorded before.

    Keys are cut to the column's length, in the returned pairs too. `locks` (PostgreSQL): advisory lock
    numbers, in order, that the same statement takes before it inserts (`Database.locked_many`); with
    `flush_later` the same statement makes the transaction's COMMIT return before its WAL is flushed
    (`SET LOCAL synchronous_commit = off`, see `Database.flushed`).
    """
    rows = sorted({(channel, key[:KEY_LENGTH]) for channel, key in keys})
    conn = await session.connection()
    if locks:
        params = {"locks": list(locks), "channels": [c for c, _ in rows], "keys": [k for _, k in rows], "now": now,
                  "sync": "off" if flush_later else None}
        return {(channel, key) for channel, key in (await conn.execute(_LOCK_AND_TAKE, params)).all()}
    if not rows:
        return set()
    params = [{"channel": channel, "update_key": key, "received_at": now} for channel, key in rows]
    return {(channel, key) for channel, key in (await conn.execute(_take_stmt(conn.dialect.name), params)).all()}


# The locks first (an InitPlan, evaluated once before any row), then the keys; without keys, the locks only.
_LOCK_AND_TAKE = text(
    "INSERT INTO inbox (channel, update_key, received_at) "
    "SELECT t.channel, t.update_key, :now "
    "FROM unnest(CAST(:channels AS VARCHAR[]), CAST(:keys AS VARCHAR[])) AS t(channel, update_key) "
    "WHERE (SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:locks AS BIGINT[])) AS k) >= 0 "
    "AND (SELECT set_config('synchronous_commit', COALESCE(CAST(:sync AS TEXT), current_setting('synchronous_commit')), true)) IS NOT NULL "
    "ON CONFLICT (channel, update_key) DO NOTHING "
    "RETURNING channel, update_key"
)


@functools.cache
def _take_stmt(dialect: str):
    table = InboxEntry.__table__
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_(table)
        .on_conflict_do_nothing(index_elements=["channel", "update_key"])
        .returning(table.c.channel, table.c.update_key)
    )


async def taken(session: AsyncSession, channel: str, update_key: str) -> bool:
    """Whether a delivery's key is recorded."""
    stmt = select(InboxEntry.update_key).where(InboxEntry.channel == channel, InboxEntry.update_key == update_key[:KEY_LENGTH])
    return (await session.execute(stmt)).first() is not None


async def prune_inbox(session: AsyncSession, now: datetime, keep: timedelta = timedelta(days=7)) -> None:
    """Forget keys older than `keep`: platforms stop redelivering long before."""
    await session.execute(delete(InboxEntry).where(InboxEntry.received_at < now - keep))


# -- outbox ---------------------------------------------------------------------------------------

_OUTBOX = OutboxMessage.__table__
_ENQUEUE = insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True)
_PENDING_OF = select(_OUTBOX.c.channel, _OUTBOX.c.chat_id, _OUTBOX.c.id).where(
    tuple_(_OUTBOX.c.channel, _OUTBOX.c.chat_id).in_(bindparam("chats", expanding=True)), _OUTBOX.c.status == PENDING
)


@dataclass
class Outgoing:
    """A pending outbox row as the sender holds it."""

    id: int
    channel: str
    chat_id: str
    call: dict[str, Any]
    attempts: int
    created_at: datetime


async def enqueue(
    session: AsyncSession,
    channel: str,
    chat_id: str,
    calls: Sequence[dict[str, Any]],
    now: datetime,
    *,
    user_id: str | None = None,
    kind: str = "reply",
) -> None:
    """Add platform calls for one chat, in order (one multi-row INSERT)."""
    await enqueue_many(session, [(channel, chat_id, calls, user_id)], now, kind=kind)


async def enqueue_many(
    session: AsyncSession,
    groups: Sequence[tuple[str, str, Sequence[dict[str, Any]], str | None]],
    now: datetime,
    *,
    kind: str = "reply",
) -> list[Outgoing]:
    """Add the calls of several chats, each `(channel, chat_id, calls, user_id)`, in one multi-row INSERT.

    Ids follow the order given, so a chat's calls keep theirs; returns the rows as the sender holds them.
    """
    rows = [
        {
            "channel": channel,
            "chat_id": chat_id,
            "user_id": user_id,
            "kind": kind,
            "call": call,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for channel, chat_id, calls, user_id in groups
        for call in calls
    ]
    if not rows:
        return []
    conn = await session.connection()
    result = await conn.execute(_ENQUEUE, rows)
    return [
        Outgoing(id_, row["channel"], row["chat_id"], row["call"], 0, now)
        for (id_,), row in zip(result.all(), rows, strict=True)
    ]


async def pending_of(session: AsyncSession, chats: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[int]]:
    """The ids of the pending calls of these (channel, chat_id), per chat (one SELECT)."""
    chats = sorted(set(chats))
    if not chats:
        return {}
    conn = await session.connection()
    found: dict[tuple[str, str], list[int]] = {}
    for channel, chat_id, id_ in (await conn.execute(_PENDING_OF, {"chats": chats})).all():
        found.setdefault((channel, chat_id), []).append(id_)
    return found


async def due_keys(session: AsyncSession, now: datetime, limit: int = 500) -> list[tuple[int, str, str]]:
    """(id, channel, chat_id) of pending calls whose time has come and that no earlier call of their chat
    still waits before, oldest first: cheap to scan again."""
    conn = await session.connection()
    return [tuple(row) for row in (await conn.execute(_DUE_KEYS, {"now": now, "limit": limit})).all()]


async def load(session: AsyncSession, ids: Sequence[int]) -> list[Outgoing]:
    """The pending calls with these ids, oldest first (ended ones are left out)."""
    conn = await session.connection()
    return [Outgoing(*row) for row in (await conn.execute(_LOAD, {"ids": list(ids)})).all()]


async def mark_sent(session: AsyncSession, ids: Iterable[int], now: datetime) -> None:
    """Record calls the platform accepted; their content is dropped."""
    ids = sorted(set(ids))
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        # One text (one prepared statement) whatever the number of ids.
        await conn.execute(_MARK_SENT_PG, {"ids": ids, "now": now})
        return
    for start in range(0, len(ids), 500):
        await conn.execute(_MARK_SENT, {"ids": ids[start : start + 500], "now": now})


_EARLIER = _OUTBOX.alias("earlier")
_DUE_KEYS = (
    select(_OUTBOX.c.id, _OUTBOX.c.channel, _OUTBOX.c.chat_id)
    .where(
        _OUTBOX.c.status == PENDING,
        _OUTBOX.c.next_attempt_at <= bindparam("now"),
        # Not behind a call of its chat that waits for its retry (e.g. after a restart): the chat's order.
        ~select(_EARLIER.c.id)
        .where(
            _EARLIER.c.channel == _OUTBOX.c.channel,
            _EARLIER.c.chat_id == _OUTBOX.c.chat_id,
            _EARLIER.c.status == PENDING,
            _EARLIER.c.id < _OUTBOX.c.id,
            _EARLIER.c.next_attempt_at > bindparam("now"),
        )
        .exists(),
    )
    .order_by(_OUTBOX.c.id)
    .limit(bindparam("limit"))
)
_LOAD = (
    select(_OUTBOX.c.id, _OUTBOX.c.channel, _OUTBOX.c.chat_id, _OUTBOX.c.call, _OUTBOX.c.attempts, _OUTBOX.c.created_at)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)), _OUTBOX.c.status == PENDING)
    .order_by(_OUTBOX.c.id)
)
_MARK_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)), _OUTBOX.c.status == PENDING)
    .values(status=SENT, ended_at=bindparam("now"), call=None)
)


_MARK_SENT_PG = text(
    "UPDATE outbox SET status = 'sent', ended_at = :now, call = NULL "
    "WHERE id = ANY(CAST(:ids AS BIGINT[])) AND status = 'pending'"
)


async def mark_refused(session: AsyncSession, ids: Iterable[int], reason: str, now: datetime) -> None:
    """Record calls the platform refused for good (blocked, chat gone, bad request)."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(sorted(set(ids))), OutboxMessage.status == PENDING)
        .values(status=REFUSED, ended_at=now, last_error=reason[:200], call=None)
    )


async def refuse_chat(session: AsyncSession, channel: str, chat_id: str, reason: str, now: datetime) -> int:
    """Refuse every pending call of a chat that cannot be reached; return how many."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.channel == channel, OutboxMessage.chat_id == chat_id, OutboxMessage.status == PENDING)
        .values(status=REFUSED, ended_at=now, last_error=reason[:200], call=None)
    )
    return result.rowcount or 0


async def note_attempt(session: AsyncSession, id_: int, attempts: int, next_at: datetime, error: str) -> None:
    """Record a failed attempt that will be retried at `next_at`."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == id_, OutboxMessage.status == PENDING)
        .values(attempts=attempts, next_attempt_at=next_at, last_error=error[:200])
    )


async def move_chat(session: AsyncSession, channel: str, old_id: str, new_id: str) -> None:
    """Point the pending calls of a chat at its new id (a Telegram group that became a supergroup)."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.channel == channel, OutboxMessage.chat_id == old_id, OutboxMessage.status == PENDING)
        .values(chat_id=new_id)
    )


async def delete_pending_of_user(session: AsyncSession, channel: str, user_id: str) -> int:
    """Erasure: delete what is still waiting to be sent to (or in answer to) a person."""
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.channel == channel, OutboxMessage.user_id == user_id, OutboxMessage.status == PENDING
        )
    )
    return result.rowcount or 0


async def depth(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many calls are pending, and since when the oldest waits."""
    row = (
        await session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.status == PENDING)
        )
    ).one()
    return int(row[0]), row[1]


async def counts(session: AsyncSession) -> dict[str, int]:
    """Outbox rows by status."""
    rows = (await session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all()
    return {status: int(n) for status, n in rows}


async def prune_outbox(session: AsyncSession, now: datetime, keep: timedelta = timedelta(days=2)) -> None:
    """Delete ended calls older than `keep` (their content was dropped when they ended)."""
    await session.execute(
        delete(OutboxMessage).where(OutboxMessage.status.in_(ENDED), OutboxMessage.ended_at < now - keep)
    )


# -- leases ---------------------------------------------------------------------------------------


async def hold_lease(session: AsyncSession, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew lease `name` for `holder` unless another holder's lease is still valid."""
    stmt = _insert(session, Lease).values(name=name, holder=holder, expires_at=now + ttl)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"holder": holder, "expires_at": now + ttl},
        where=(Lease.holder == holder) | (Lease.expires_at < now),
    ).returning(Lease.holder)
    return (await session.execute(stmt)).first() is not None


async def release_lease(session: AsyncSession, name: str, holder: str) -> None:
    await session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


async def lease_holder(session: AsyncSession, name: str, now: datetime) -> str | None:
    row = (await session.execute(select(Lease.holder, Lease.expires_at).where(Lease.name == name))).first()
    if row is None:
        return None
    expires = row[1] if row[1].tzinfo else row[1].replace(tzinfo=now.tzinfo)
    return row[0] if expires >= now else None
