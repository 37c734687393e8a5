"""Reminders, mobile teams' visits and recurring broadcasts: what the broadcast sender turns into broadcasts when due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import MobileVisit, RecurringBroadcast, Reminder

PENDING, SENT, CANCELLED = "pending", "sent", "cancelled"


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
    result = await session.execute(
        update(Reminder)
        .where(Reminder.channel == channel, Reminder.user_id == user_id, Reminder.status == PENDING)
        .values(status=CANCELLED, updated_at=now)
    )
    return result.rowcount or 0


async def pending_reminder(session: AsyncSession, channel: str, user_id: str) -> Reminder | None:
    query = select(Reminder).where(Reminder.channel == channel, Reminder.user_id == user_id, Reminder.status == PENDING)
    return (await session.execute(query.order_by(Reminder.id.desc()).limit(1))).scalar_one_or_none()


async def due_reminders(session: AsyncSession, now: datetime, limit: int = 200) -> list[Reminder]:
    query = select(Reminder).where(Reminder.status == PENDING, Reminder.remind_at <= now).order_by(Reminder.remind_at, Reminder.id)
    return list((await session.execute(query.limit(limit))).scalars())


async def forget_reminders(session: AsyncSession, channel: str, user_id: str) -> None:
    """A person erased (/xoa): their reminders go too."""
    from sqlalchemy import delete

    await session.execute(delete(Reminder).where(Reminder.channel == channel, Reminder.user_id == user_id))


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


async def cancel_visit(session: AsyncSession, visit_id: int) -> MobileVisit | None:
    row = await session.get(MobileVisit, visit_id)
    if row is not None:
        row.cancelled = True
    return row


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
