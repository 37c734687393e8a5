"""Deliveries taken from the platforms, kept with their payload until handled.

A delivery is claimed once (retries and duplicates are dropped) and, until its processing has ended,
its row keeps the payload and `done` false. Rows left unfinished by a crash or a shutdown are taken
again by recovery; a delivery that keeps failing that way is given up after a few attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ProcessedUpdate

log = logging.getLogger(__name__)

KEY_LENGTH = 128


def _key(update_key: str) -> str:
    return update_key[:KEY_LENGTH]


async def claim(
    session: AsyncSession, channel: str, update_key: str, now: datetime, payload: dict[str, Any] | None = None
) -> bool:
    """Record a delivery (unfinished when it has a payload); return False when it was already recorded (by any process)."""
    row = ProcessedUpdate(
        channel=channel, update_key=_key(update_key), created_at=now, payload=payload, done=payload is None, attempts=0
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return False
    return True


async def finish(session: AsyncSession, channel: str, update_key: str) -> None:
    """Mark a delivery handled and drop its payload."""
    await session.execute(
        update(ProcessedUpdate)
        .where(ProcessedUpdate.channel == channel, ProcessedUpdate.update_key == _key(update_key))
        .values(done=True, payload=None)
        .execution_options(synchronize_session=False)
    )


async def renew(session: AsyncSession, channel: str, update_keys: Iterable[str], now: datetime) -> None:
    """Move the time of unfinished deliveries still queued in this process to `now`, so recovery leaves them alone."""
    keys = sorted({_key(k) for k in update_keys})
    for start in range(0, len(keys), 500):
        await session.execute(
            update(ProcessedUpdate)
            .where(
                ProcessedUpdate.channel == channel,
                ProcessedUpdate.update_key.in_(keys[start : start + 500]),
                ProcessedUpdate.done.is_(False),
            )
            .values(created_at=now)
            .execution_options(synchronize_session=False)
        )


async def take_unfinished(
    session: AsyncSession,
    channel: str,
    now: datetime,
    older_than: timedelta,
    *,
    max_attempts: int = 3,
    limit: int = 100,
) -> list[tuple[str, dict[str, Any]]]:
    """Take the unfinished deliveries of `channel` older than `older_than`; return (key, payload) pairs.

    One UPDATE moves their time to `now` and counts the attempt, so a second process (or a second
    call) does not take them again until they are `older_than` once more. Deliveries already taken
    `max_attempts` times are given up: marked done, logged, not returned.
    """
    cutoff = now - older_than
    stale = and_(
        ProcessedUpdate.channel == channel,
        ProcessedUpdate.done.is_(False),
        ProcessedUpdate.created_at < cutoff,
    )
    # Rows another taker holds are skipped here too (PostgreSQL), so that a concurrent taker never
    # waits for this transaction; they are given up by whoever holds them, or next round.
    exhausted = await session.execute(
        select(ProcessedUpdate.update_key)
        .where(stale, ProcessedUpdate.attempts >= max_attempts)
        .with_for_update(skip_locked=True)
    )
    exhausted_keys = list(exhausted.scalars().all())
    if exhausted_keys:
        given_up = await session.execute(
            update(ProcessedUpdate)
            .where(ProcessedUpdate.channel == channel, ProcessedUpdate.update_key.in_(exhausted_keys))
            .values(done=True, payload=None)
            .returning(ProcessedUpdate.update_key, ProcessedUpdate.attempts)
            .execution_options(synchronize_session=False)
        )
        for key, attempts in given_up.all():
            log.error("%s: delivery %s was never handled after %d recoveries; given up", channel, key, attempts)
    candidates = await session.execute(
        select(ProcessedUpdate.update_key)
        .where(stale, ProcessedUpdate.attempts < max_attempts)
        .order_by(ProcessedUpdate.created_at, ProcessedUpdate.update_key)
        .limit(limit)
        # A concurrent taker (PostgreSQL) skips the rows locked here and takes the next ones, instead
        # of picking the same rows, finding them taken, and leaving the rest for the next round.
        # SQLite ignores this: its writers are already serialised.
        .with_for_update(skip_locked=True)
    )
    order = {key: i for i, key in enumerate(candidates.scalars().all())}
    if not order:
        return []
    taken = await session.execute(
        update(ProcessedUpdate)
        # The conditions are repeated on the row itself, defensively: the rows are locked by the
        # SELECT above on PostgreSQL, but SQLite takes no row locks.
        .where(stale, ProcessedUpdate.attempts < max_attempts, ProcessedUpdate.update_key.in_(list(order)))
        .values(created_at=now, attempts=ProcessedUpdate.attempts + 1)
        .returning(ProcessedUpdate.update_key, ProcessedUpdate.payload)
        .execution_options(synchronize_session=False)
    )
    rows = [(key, payload) for key, payload in taken.all() if payload is not None]
    # Oldest first, so that the deliveries of one chat are queued again in the order they came.
    return sorted(rows, key=lambda row: order[row[0]])


async def prune(session: AsyncSession, now: datetime, keep: timedelta = timedelta(days=7)) -> None:
    """Forget handled deliveries older than `keep` (platforms stop retrying long before)."""
    await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.created_at < now - keep, ProcessedUpdate.done.is_(True))
    )
