"""Reminders, mobile teams' visits and recurring broadcasts: what the broadcast sender turns into broadcasts when due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.broadcasts import BroadcastStatus, DeliveryStatus
from storage.models import Broadcast, BroadcastDelivery, MobileVisit, RecurringBroadcast, Reminder

# A reminder is pending, sent (handed to the sender as a broadcast of one), cancelled, or expired (its day
# came before it could be sent).
PENDING, SENT, CANCELLED, EXPIRED = "pending", "sent", "cancelled", "expired"
# announced_broadcast_id of a visit that was not announced and will not be (no hamlet left, or too late).
NOT_ANNOUNCED = 0
# Finished reminders (sent, cancelled, expired) are deleted this many days after their appointment.
KEEP_DAYS = 30
_UNFINISHED = (BroadcastStatus.DRAFT, BroadcastStatus.AWAITING_APPROVAL, BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING, BroadcastStatus.PAUSED)


# ---------------------------------------------------------------- reminders


async def set_reminder(
    session: AsyncSession, *, channel: str, user_id: str, hamlet: str | None, appointment: date, remind_at: datetime, text: str, now: datetime
) -> Reminder:
    """Set the person's reminder; one at a time (a new date replaces the one not yet sent)."""
    await cancel_reminders(session, channel, user_id, now)
    row = Reminder(
        channel=channel, user_id=user_id, hamlet_code=hamlet, appointment=appointment, remind_at=remind_at, text=text,
        status=PENDING, created_at=now, updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def cancel_reminders(session: AsyncSession, channel: str, user_id: str, now: datetime) -> int:
    """Cancel the person's reminder, also one already handed to the sender and not sent yet; returns how many."""
    result = await session.execute(
        update(Reminder)
        .where(Reminder.channel == channel, Reminder.user_id == user_id, Reminder.status == PENDING)
        .values(status=CANCELLED, updated_at=now)
    )
    stopped = await _stop_reminder_broadcasts(session, channel, user_id, now)
    return (result.rowcount or 0) + stopped


async def _reminder_broadcasts(session: AsyncSession, channel: str, user_id: str) -> list[int]:
    query = select(Reminder.broadcast_id).where(
        Reminder.channel == channel, Reminder.user_id == user_id, Reminder.broadcast_id.is_not(None)
    )
    return [b for b in (await session.execute(query)).scalars() if b]


async def _stop_reminder_broadcasts(session: AsyncSession, channel: str, user_id: str, now: datetime) -> int:
    """Cancel the person's reminder broadcasts not finished yet (their delivery not sent); returns how many."""
    ids = await _reminder_broadcasts(session, channel, user_id)
    if not ids:
        return 0
    open_ = list((await session.execute(
        select(Broadcast.id).where(Broadcast.id.in_(ids), Broadcast.kind == "reminder", Broadcast.status.in_(_UNFINISHED))
    )).scalars())
    if not open_:
        return 0
    await session.execute(
        update(BroadcastDelivery)
        .where(BroadcastDelivery.broadcast_id.in_(open_), BroadcastDelivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.CANCELLED, claimed_by=None, updated_at=now)
    )
    await session.execute(update(Broadcast).where(Broadcast.id.in_(open_)).values(status=BroadcastStatus.CANCELLED, finished_at=now, updated_at=now))
    await session.execute(update(Reminder).where(Reminder.broadcast_id.in_(open_)).values(status=CANCELLED, updated_at=now))
    return len(open_)


async def has_open_reminder(session: AsyncSession, channel: str, user_id: str) -> bool:
    """Whether the person has a reminder not sent yet (pending, or handed to the sender and not finished)."""
    if await pending_reminder(session, channel, user_id) is not None:
        return True
    ids = await _reminder_broadcasts(session, channel, user_id)
    if not ids:
        return False
    query = select(Broadcast.id).where(Broadcast.id.in_(ids), Broadcast.status.in_(_UNFINISHED)).limit(1)
    return (await session.execute(query)).first() is not None


async def pending_reminder(session: AsyncSession, channel: str, user_id: str) -> Reminder | None:
    query = select(Reminder).where(Reminder.channel == channel, Reminder.user_id == user_id, Reminder.status == PENDING)
    return (await session.execute(query.order_by(Reminder.id.desc()).limit(1))).scalar_one_or_none()


async def due_reminders(session: AsyncSession, now: datetime, today: date | None = None, limit: int = 200) -> list[Reminder]:
    """Pending reminders whose time has come and whose appointment is not past (`today`: the local date)."""
    query = select(Reminder).where(Reminder.status == PENDING, Reminder.remind_at <= now)
    if today is not None:
        query = query.where(Reminder.appointment >= today)
    return list((await session.execute(query.order_by(Reminder.remind_at, Reminder.id).limit(limit))).scalars())


async def expired_reminders_exist(session: AsyncSession, today: date) -> bool:
    query = select(Reminder.id).where(Reminder.status == PENDING, Reminder.appointment < today).limit(1)
    return (await session.execute(query)).first() is not None


async def expire_reminders(session: AsyncSession, today: date) -> int:
    """Pending reminders whose appointment is past (the sender was down): never sent; returns how many."""
    result = await session.execute(
        update(Reminder).where(Reminder.status == PENDING, Reminder.appointment < today).values(status=EXPIRED)
    )
    return result.rowcount or 0


async def forget_reminders(session: AsyncSession, channel: str, user_id: str) -> None:
    """A person erased (/xoa): their reminders go too, with the broadcasts made of them (their chat id, the date)."""
    ids = await _reminder_broadcasts(session, channel, user_id)
    if ids:
        # A delivery being sent right now (`sending`) is left to its sender, which settles it; the rest go.
        await session.execute(
            delete(BroadcastDelivery).where(BroadcastDelivery.broadcast_id.in_(ids), BroadcastDelivery.status != DeliveryStatus.SENDING)
        )
        await session.execute(
            update(Broadcast).where(Broadcast.id.in_(ids), Broadcast.status.in_(_UNFINISHED)).values(status=BroadcastStatus.CANCELLED)
        )
    await session.execute(delete(Reminder).where(Reminder.channel == channel, Reminder.user_id == user_id))


async def prune_reminders(session: AsyncSession, before: date) -> int:
    """Retention: finished reminders whose appointment is before `before` are deleted, with their deliveries
    (the person's id and the date); returns how many reminders."""
    done = [SENT, CANCELLED, EXPIRED]
    rows = (await session.execute(
        select(Reminder.id, Reminder.broadcast_id).where(Reminder.status.in_(done), Reminder.appointment < before)
    )).all()
    if not rows:
        return 0
    broadcasts = [b for _, b in rows if b]
    if broadcasts:
        await session.execute(
            delete(BroadcastDelivery).where(BroadcastDelivery.broadcast_id.in_(broadcasts), BroadcastDelivery.status != DeliveryStatus.SENDING)
        )
    await session.execute(delete(Reminder).where(Reminder.id.in_([i for i, _ in rows])))
    return len(rows)


# ---------------------------------------------------------------- mobile teams' visits


async def add_visit(
    session: AsyncSession, *, commune: str, day: date, start: str, end: str | None, place: str, hamlets: Sequence[str], by: str, now: datetime
) -> MobileVisit:
    row = MobileVisit(
        commune_code=commune, visit_date=day, start_time=start, end_time=end, place=place, hamlets=list(hamlets),
        created_by=by, cancelled=False, created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def visits(session: AsyncSession, commune: str | None, since: date) -> list[MobileVisit]:
    """Visits from `since` on (cancelled ones included), by date."""
    query = select(MobileVisit).where(MobileVisit.visit_date >= since)
    if commune:
        query = query.where(MobileVisit.commune_code == commune)
    return list((await session.execute(query.order_by(MobileVisit.visit_date, MobileVisit.start_time, MobileVisit.id))).scalars())


async def visits_to_announce(session: AsyncSession, day: date) -> list[MobileVisit]:
    """Visits of `day` not announced yet (nor cancelled)."""
    query = select(MobileVisit).where(
        MobileVisit.visit_date == day, MobileVisit.cancelled.is_(False), MobileVisit.announced_broadcast_id.is_(None)
    )
    return list((await session.execute(query.order_by(MobileVisit.id))).scalars())


# ---------------------------------------------------------------- recurring broadcasts


async def add_recurring(
    session: AsyncSession, *, author: str, text: str, audience: dict, cron: str, timezone: str, next_run_at: datetime, now: datetime
) -> RecurringBroadcast:
    row = RecurringBroadcast(
        author=author, text=text, audience=audience, cron=cron, timezone=timezone, next_run_at=next_run_at, active=True,
        created_at=now, updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def recurring(session: AsyncSession) -> list[RecurringBroadcast]:
    return list((await session.execute(select(RecurringBroadcast).order_by(RecurringBroadcast.id))).scalars())


async def due_recurring(session: AsyncSession, now: datetime) -> list[RecurringBroadcast]:
    query = select(RecurringBroadcast).where(RecurringBroadcast.active.is_(True), RecurringBroadcast.next_run_at <= now)
    return list((await session.execute(query.order_by(RecurringBroadcast.next_run_at, RecurringBroadcast.id))).scalars())
