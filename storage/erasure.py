"""Erasure that sticks: tombstones of erased people, and retention.

`/xoa` deletes a person's rows (storage.people, storage.conversations, storage.logs, the outbox rows
still waiting for them). What this module adds is what makes it last: a tombstone says when the person
was erased, so that a message they sent before — redelivered by the platform after a crash — is dropped
instead of creating them again. The inbox never holds an update's payload (docs/pipeline.md), so there
is nothing of theirs left to retire there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import stats
from storage.models import Erasure, QueryLog


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


async def record(session: AsyncSession, person_ref: str, at: datetime) -> None:
    """Remember that the person was erased at `at` (the latest erasure counts)."""
    row = await session.get(Erasure, person_ref)
    if row is None:
        session.add(Erasure(person_ref=person_ref, erased_at=at))
    elif aware(row.erased_at) < aware(at):
        row.erased_at = at
    await session.flush()


async def erased_at(session: AsyncSession, person_ref: str) -> datetime | None:
    """When the person was erased, or None."""
    return (await erased_at_many(session, [person_ref])).get(person_ref)


async def erased_at_many(session: AsyncSession, person_refs: Sequence[str]) -> dict[str, datetime]:
    """When each of these people was erased, for those who were (one SELECT)."""
    if not person_refs:
        return {}
    conn = await session.connection()
    rows = await conn.execute(_ERASED_AT, {"refs": list(person_refs)})
    return {ref: aware(at) for ref, at in rows.all()}


_ERASED_AT = select(Erasure.__table__.c.person_ref, Erasure.__table__.c.erased_at).where(
    Erasure.__table__.c.person_ref.in_(bindparam("refs", expanding=True))
)


async def prune_tombstones(session: AsyncSession, before: datetime) -> int:
    """Forget erasures older than `before` (no delivery can arrive that late)."""
    result = await session.execute(delete(Erasure).where(Erasure.erased_at < before))
    return result.rowcount or 0


async def expire_query_texts(session: AsyncSession, now: datetime, keep: timedelta) -> int:
    """Delete the (masked) texts of queries older than `keep`; the rows and their counts stay."""
    result = await session.execute(
        update(QueryLog)
        .where(QueryLog.created_at < now - keep, QueryLog.text.is_not(None))
        .values(text=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


# Erasure tombstones outlive any delivery that could still arrive (platforms stop retrying within days).
TOMBSTONE_DAYS = 30


async def apply_retention(session: AsyncSession, now: datetime, text_days: int) -> tuple[int, int]:
    """Both retention rules at once: question texts older than `text_days`, and old tombstones.

    Returns (texts deleted, tombstones deleted). The server runs it hourly; `cccd-bot db retention` on demand.
    """
    keep = timedelta(days=text_days)
    texts = await expire_query_texts(session, now, keep)
    await stats.expire_wordings(session, now - keep)  # the unanswered page's copy of those texts
    tombstones = await prune_tombstones(session, now - timedelta(days=TOMBSTONE_DAYS))
    from storage import schedules

    # Finished appointment reminders (a person's id and date) go a month after the appointment.
    await schedules.prune_reminders(session, (now - timedelta(days=schedules.KEEP_DAYS)).date())
    return texts, tombstones

