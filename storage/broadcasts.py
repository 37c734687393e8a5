"""Broadcasts and their delivery rows: the repository the broadcast sender and the commands use.

The delivery rows are the truth of a broadcast. A row moves pending -> sending (just before the platform
call, committed) -> sent | failed | blocked | no_window, or back to pending with a later next attempt.
A row left in `sending` by a sender that died cannot be settled (the platform may or may not have shown
the message): recovery marks it `unknown` and never sends it again (see bot/broadcasts/sender.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Broadcast, BroadcastDelivery, BroadcastPolicy, Chat, Hamlet, User


class BroadcastStatus(StrEnum):
    DRAFT = "draft"
    AWAITING_APPROVAL = "awaiting_approval"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    DONE = "done"
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BLOCKED = "blocked"
    NO_WINDOW = "no_window"
    OPTED_OUT = "opted_out"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


OPEN_DELIVERY = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


@dataclass(frozen=True, slots=True)
class Recipient:
    channel: str
    chat_id: str
    kind: str  # "group" or "private"
    hamlet_code: str | None
    commune_code: str | None
    opted_out: bool = False


# ---------------------------------------------------------------- broadcasts


async def create(
    session: AsyncSession,
    *,
    author: str,
    text: str,
    audience: dict,
    now: datetime,
    scheduled_at: datetime | None = None,
    image: str | None = None,
) -> Broadcast:
    row = Broadcast(
        author=author,
        text=text,
        image=image,
        audience=audience,
        status=BroadcastStatus.DRAFT,
        scheduled_at=scheduled_at,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def get(session: AsyncSession, broadcast_id: int, *, lock: bool = False) -> Broadcast | None:
    query = select(Broadcast).where(Broadcast.id == broadcast_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_recent(session: AsyncSession, limit: int = 50) -> list[Broadcast]:
    return list((await session.execute(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit))).scalars())


async def due_to_start(session: AsyncSession, now: datetime) -> list[Broadcast]:
    """Scheduled broadcasts whose time has come, oldest first."""
    query = (
        select(Broadcast)
        .where(Broadcast.status == BroadcastStatus.SCHEDULED)
        .where((Broadcast.scheduled_at.is_(None)) | (Broadcast.scheduled_at <= now))
        .order_by(Broadcast.id)
    )
    return list((await session.execute(query)).scalars())


async def policy(session: AsyncSession, commune_code: str | None) -> BroadcastPolicy:
    """The commune's rules, or the defaults (21:00-07:00 Asia/Ho_Chi_Minh, approval required)."""
    row = await session.get(BroadcastPolicy, commune_code) if commune_code else None
    if row is None:
        row = BroadcastPolicy(
            commune_code=commune_code or "", quiet_start="21:00", quiet_end="07:00", timezone="Asia/Ho_Chi_Minh", approval_required=True
        )
    return row


async def set_policy(session: AsyncSession, commune_code: str, **values) -> BroadcastPolicy:
    row = await session.get(BroadcastPolicy, commune_code)
    if row is None:
        base = await policy(session, None)
        row = BroadcastPolicy(
            commune_code=commune_code,
            quiet_start=base.quiet_start,
            quiet_end=base.quiet_end,
            timezone=base.timezone,
            approval_required=base.approval_required,
        )
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    await session.flush()
    return row


# ---------------------------------------------------------------- audience


async def hamlet_communes(session: AsyncSession) -> dict[str, str]:
    """hamlet code -> commune code."""
    return {code: commune for code, commune in (await session.execute(select(Hamlet.code, Hamlet.commune_code))).all()}


async def audience(
    session: AsyncSession, *, hamlets: Sequence[str] | None, kinds: Iterable[str], channels: Iterable[str] | None
) -> list[Recipient]:
    """Active hamlet groups and private subscribers of the given hamlets (None: everyone), in a stable order.

    Blocked or removed chats (active false) are left out; opted-out people are returned, marked, so
    that the report can count them as skipped.
    """
    kinds = set(kinds)
    communes = await hamlet_communes(session)
    out: list[Recipient] = []
    if "group" in kinds:
        query = select(Chat.channel, Chat.external_id, Chat.hamlet_code).where(
            Chat.type == "group", Chat.active.is_(True), Chat.hamlet_code.is_not(None)
        )
        if hamlets is not None:
            query = query.where(Chat.hamlet_code.in_(list(hamlets)))
        if channels:
            query = query.where(Chat.channel.in_(list(channels)))
        for channel, external_id, hamlet in (await session.execute(query.order_by(Chat.id))).all():
            out.append(Recipient(channel, external_id, "group", hamlet, communes.get(hamlet)))
    if "private" in kinds:
        # A private chat's id is the person's own id on Telegram, Zalo Bot and Zalo OA.
        query = select(User.channel, User.external_id, User.hamlet_code, User.opted_out).where(User.active.is_(True))
        if hamlets is not None:
            query = query.where(User.hamlet_code.in_(list(hamlets)))
        if channels:
            query = query.where(User.channel.in_(list(channels)))
        for channel, external_id, hamlet, opted_out in (await session.execute(query.order_by(User.id))).all():
            out.append(Recipient(channel, external_id, "private", hamlet, communes.get(hamlet) if hamlet else None, bool(opted_out)))
    return out


async def reach_by_hamlet(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """hamlet code -> (active hamlet groups, active private subscribers who have not opted out)."""
    reach: dict[str, list[int]] = {}
    groups = select(Chat.hamlet_code, func.count()).where(
        Chat.type == "group", Chat.active.is_(True), Chat.hamlet_code.is_not(None)
    ).group_by(Chat.hamlet_code)
    for hamlet, n in (await session.execute(groups)).all():
        reach.setdefault(hamlet, [0, 0])[0] = n
    people = select(User.hamlet_code, func.count()).where(
        User.active.is_(True), User.opted_out.is_(False), User.hamlet_code.is_not(None)
    ).group_by(User.hamlet_code)
    for hamlet, n in (await session.execute(people)).all():
        reach.setdefault(hamlet, [0, 0])[1] = n
    return {hamlet: (g, p) for hamlet, (g, p) in reach.items()}


# ---------------------------------------------------------------- deliveries


async def add_deliveries(
    session: AsyncSession, broadcast_id: int, recipients: Iterable[Recipient], now: datetime, *, staged_by: str | None = None
) -> int:
    """Insert one row per recipient; with `staged_by`, claimed by that sender (nobody sends them) until `unstage`."""
    rows = [
        {
            "broadcast_id": broadcast_id,
            "channel": r.channel,
            "chat_id": r.chat_id,
            "kind": r.kind,
            "hamlet_code": r.hamlet_code,
            "commune_code": r.commune_code,
            "status": DeliveryStatus.OPTED_OUT if r.opted_out else DeliveryStatus.PENDING,
            "parts_sent": 0,
            "attempts": 0,
            "next_attempt_at": now,
            "updated_at": now,
            "claimed_by": staged_by,
        }
        for r in recipients
    ]
    for start in range(0, len(rows), 1000):
        await session.execute(BroadcastDelivery.__table__.insert(), rows[start : start + 1000])
    return len(rows)


async def drop_staged(session: AsyncSession, broadcast_id: int, *, only_holder: str | None = None) -> int:
    """Delete the rows of a broadcast that has not started (left by a start cut short), or only the rows
    one sender staged (its start gave up)."""
    if only_holder is None:
        where = BroadcastDelivery.broadcast_id.in_(select(Broadcast.id).where(Broadcast.status == BroadcastStatus.SCHEDULED))
    else:
        where = BroadcastDelivery.claimed_by == only_holder
    query = delete(BroadcastDelivery).where(BroadcastDelivery.broadcast_id == broadcast_id, where)
    return (await session.execute(query)).rowcount or 0


async def staged_count(session: AsyncSession, broadcast_id: int, holder: str) -> int:
    query = select(func.count()).select_from(BroadcastDelivery).where(
        BroadcastDelivery.broadcast_id == broadcast_id, BroadcastDelivery.claimed_by == holder
    )
    return (await session.execute(query)).scalar_one()


async def unstage(session: AsyncSession, broadcast_id: int, holder: str) -> None:
    await session.execute(
        update(BroadcastDelivery)
        .where(BroadcastDelivery.broadcast_id == broadcast_id, BroadcastDelivery.claimed_by == holder)
        .values(claimed_by=None)
    )


async def claim_due(
    session: AsyncSession, holder: str, now: datetime, limit: int, *, skip_locked: bool
) -> list[BroadcastDelivery]:
    """Claim up to `limit` due pending deliveries of broadcasts being sent, oldest first.

    On PostgreSQL the rows are locked FOR UPDATE SKIP LOCKED so that claimants never wait on or take
    each other's rows; SQLite has one writer at a time, which serialises claimants by itself.
    """
    query = (
        select(BroadcastDelivery)
        .join(Broadcast, Broadcast.id == BroadcastDelivery.broadcast_id)
        .where(
            BroadcastDelivery.status == DeliveryStatus.PENDING,
            BroadcastDelivery.claimed_by.is_(None),
            BroadcastDelivery.next_attempt_at <= now,
            Broadcast.status == BroadcastStatus.SENDING,
            # A reminder or a visit's announcement past its time is never sent (see expire_due).
            (Broadcast.expires_at.is_(None)) | (Broadcast.expires_at > now),
        )
        .order_by(BroadcastDelivery.next_attempt_at, BroadcastDelivery.id)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(of=BroadcastDelivery, skip_locked=True)
    rows = list((await session.execute(query)).scalars())
    if rows:
        await session.execute(
            update(BroadcastDelivery)
            .where(BroadcastDelivery.id.in_([r.id for r in rows]), BroadcastDelivery.claimed_by.is_(None))
            .values(claimed_by=holder)
        )
        for row in rows:
            row.claimed_by = holder
    return rows


def _sendable(now: datetime):
    """The broadcasts whose deliveries may be sent now: being sent, and not past their `expires_at`."""
    return select(Broadcast.id).where(
        Broadcast.status == BroadcastStatus.SENDING, (Broadcast.expires_at.is_(None)) | (Broadcast.expires_at > now)
    )


async def mark_sending(session: AsyncSession, delivery_id: int, holder: str, now: datetime) -> bool:
    """Record that the platform call is about to be made; False if the row is no longer ours to send."""
    result = await session.execute(
        update(BroadcastDelivery)
        .where(
            BroadcastDelivery.id == delivery_id,
            BroadcastDelivery.claimed_by == holder,
            BroadcastDelivery.status == DeliveryStatus.PENDING,
            # A broadcast paused or cancelled after the claim is not sent.
            BroadcastDelivery.broadcast_id.in_(_sendable(now)),
        )
        .values(status=DeliveryStatus.SENDING, attempts=BroadcastDelivery.attempts + 1, updated_at=now)
    )
    return bool(result.rowcount)


async def mark_sending_many(session: AsyncSession, delivery_ids: Sequence[int], holder: str, now: datetime) -> set[int]:
    """`mark_sending` for several rows in one statement; returns the ids marked."""
    if not delivery_ids:
        return set()
    result = await session.execute(
        update(BroadcastDelivery)
        .where(
            BroadcastDelivery.id.in_(list(delivery_ids)),
            BroadcastDelivery.claimed_by == holder,
            BroadcastDelivery.status == DeliveryStatus.PENDING,
            BroadcastDelivery.broadcast_id.in_(_sendable(now)),
        )
        .values(status=DeliveryStatus.SENDING, attempts=BroadcastDelivery.attempts + 1, updated_at=now)
        .returning(BroadcastDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars())


async def settle_many(session: AsyncSession, holder: str, outcomes: Sequence[tuple[int, datetime, dict]]) -> None:
    """`settle` for several rows: one executemany for each set of columns written."""
    table = BroadcastDelivery.__table__
    shapes: dict[tuple[str, ...], list[dict]] = {}
    for delivery_id, now, values in outcomes:
        values = {"claimed_by": None, **values, "updated_at": now}
        keys = tuple(sorted(values))
        shapes.setdefault(keys, []).append({"_id": delivery_id, "_holder": holder, **{f"_v_{k}": v for k, v in values.items()}})
    for keys, params in shapes.items():
        statement = (
            table.update()
            .where(table.c.id == bindparam("_id"), table.c.claimed_by == bindparam("_holder"))
            .values({k: bindparam(f"_v_{k}") for k in keys})
        )
        await session.execute(statement, params)


async def settle(session: AsyncSession, delivery_id: int, holder: str, now: datetime, **values) -> bool:
    """Write the outcome of a call (status, parts_sent, next_attempt_at, errors) and release the claim."""
    values.setdefault("claimed_by", None)
    result = await session.execute(
        update(BroadcastDelivery)
        .where(BroadcastDelivery.id == delivery_id, BroadcastDelivery.claimed_by == holder)
        .values(updated_at=now, **values)
    )
    return bool(result.rowcount)


async def release_claims(session: AsyncSession, holder: str, now: datetime) -> None:
    """Give back claimed rows not yet being sent (a clean stop, or rows deferred in memory)."""
    await session.execute(
        update(BroadcastDelivery)
        .where(BroadcastDelivery.claimed_by == holder, BroadcastDelivery.status == DeliveryStatus.PENDING)
        .values(claimed_by=None, updated_at=now)
    )


async def recover(session: AsyncSession, now: datetime) -> int:
    """After taking the sender lease over: settle what a dead sender left. Returns the rows marked unknown."""
    result = await session.execute(
        update(BroadcastDelivery)
        .where(BroadcastDelivery.status == DeliveryStatus.SENDING)
        .values(
            status=DeliveryStatus.UNKNOWN,
            claimed_by=None,
            last_error="sender stopped during the platform call: delivery unknown, not sent again",
            updated_at=now,
        )
    )
    await session.execute(
        update(BroadcastDelivery)
        .where(BroadcastDelivery.claimed_by.is_not(None), BroadcastDelivery.status == DeliveryStatus.PENDING)
        .values(claimed_by=None, updated_at=now)
    )
    return result.rowcount or 0


async def recent_calls(session: AsyncSession, since: datetime) -> list[tuple[str, str, datetime]]:
    """(channel, chat id, when) of deliveries tried since `since`: a new sender keeps their spacing."""
    query = select(BroadcastDelivery.channel, BroadcastDelivery.chat_id, BroadcastDelivery.updated_at).where(
        BroadcastDelivery.updated_at >= since, BroadcastDelivery.attempts > 0
    )
    return [tuple(r) for r in (await session.execute(query)).all()]


async def cancel_open(session: AsyncSession, broadcast_id: int, now: datetime) -> int:
    """Cancel the deliveries not yet started (rows being sent right now are settled by their sender)."""
    result = await session.execute(
        update(BroadcastDelivery)
        .where(BroadcastDelivery.broadcast_id == broadcast_id, BroadcastDelivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.CANCELLED, claimed_by=None, updated_at=now)
    )
    return result.rowcount or 0


async def open_count(session: AsyncSession, broadcast_id: int) -> int:
    return (
        await session.execute(
            select(func.count())
            .select_from(BroadcastDelivery)
            .where(BroadcastDelivery.broadcast_id == broadcast_id, BroadcastDelivery.status.in_(list(OPEN_DELIVERY)))
        )
    ).scalar_one()


async def sending_broadcast_ids(session: AsyncSession) -> list[int]:
    return list(
        (await session.execute(select(Broadcast.id).where(Broadcast.status == BroadcastStatus.SENDING))).scalars()
    )


async def report(session: AsyncSession, broadcast_id: int) -> list[tuple[str | None, str, str, str, int]]:
    """(hamlet, channel, kind, status, count) rows of one broadcast."""
    query = (
        select(
            BroadcastDelivery.hamlet_code,
            BroadcastDelivery.channel,
            BroadcastDelivery.kind,
            BroadcastDelivery.status,
            func.count(),
        )
        .where(BroadcastDelivery.broadcast_id == broadcast_id)
        .group_by(BroadcastDelivery.hamlet_code, BroadcastDelivery.channel, BroadcastDelivery.kind, BroadcastDelivery.status)
        .order_by(BroadcastDelivery.hamlet_code, BroadcastDelivery.channel, BroadcastDelivery.kind, BroadcastDelivery.status)
    )
    return [tuple(r) for r in (await session.execute(query)).all()]


async def totals(session: AsyncSession, broadcast_id: int) -> dict[str, int]:
    query = (
        select(BroadcastDelivery.status, func.count())
        .where(BroadcastDelivery.broadcast_id == broadcast_id)
        .group_by(BroadcastDelivery.status)
    )
    return {status: n for status, n in (await session.execute(query)).all()}


async def deliveries(session: AsyncSession, broadcast_id: int) -> list[BroadcastDelivery]:
    query = select(BroadcastDelivery).where(BroadcastDelivery.broadcast_id == broadcast_id).order_by(BroadcastDelivery.id)
    return list((await session.execute(query)).scalars())


async def is_opted_out(session: AsyncSession, channel: str, external_ids: Sequence[str]) -> set[str]:
    if not external_ids:
        return set()
    query = select(User.external_id).where(
        User.channel == channel, User.external_id.in_(list(external_ids)), User.opted_out.is_(True)
    )
    return set((await session.execute(query)).scalars())


async def set_opted_out(session: AsyncSession, channel: str, external_id: str, opted_out: bool) -> None:
    await session.execute(
        update(User).where(User.channel == channel, User.external_id == external_id).values(opted_out=opted_out)
    )


EXPIRED = "expired"  # last_error of the deliveries of a broadcast closed at its expires_at


_OPEN_BROADCAST = (
    BroadcastStatus.DRAFT, BroadcastStatus.AWAITING_APPROVAL, BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING, BroadcastStatus.PAUSED,
)


def _expired(now: datetime):
    return select(Broadcast.id).where(
        Broadcast.expires_at.is_not(None), Broadcast.expires_at <= now, Broadcast.status.in_(list(_OPEN_BROADCAST))
    )


async def expired_exist(session: AsyncSession, now: datetime) -> bool:
    return (await session.execute(_expired(now).limit(1))).first() is not None


async def expire_due(session: AsyncSession, now: datetime) -> list[int]:
    """Close the broadcasts past their `expires_at` that are not finished: their open deliveries are
    cancelled (last error "expired") and the broadcast is cancelled. Returns their ids."""
    ids = list((await session.execute(_expired(now))).scalars())
    if ids:
        await session.execute(
            update(BroadcastDelivery)
            .where(BroadcastDelivery.broadcast_id.in_(ids), BroadcastDelivery.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.CANCELLED, last_error=EXPIRED, claimed_by=None, updated_at=now)
        )
        await session.execute(
            update(Broadcast).where(Broadcast.id.in_(ids)).values(status=BroadcastStatus.CANCELLED, finished_at=now, updated_at=now)
        )
    return ids
