"""Erasure that sticks: tombstones of erased people, their unhandled deliveries, and retention.

`/xoa` deletes a person's rows (storage.people, storage.conversations, storage.logs). What this module
adds is what makes it last: the person's deliveries not yet handled lose their payload (the platform id
stays, so a redelivery is still recognised as a duplicate), and a tombstone says when the person was
erased, so that a message they sent before — redelivered, or recovered after a crash — is dropped
instead of creating them again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Erasure, ProcessedUpdate, QueryLog

# Keys under which the platforms put a person in an update (Telegram: from, chat; Zalo Bot: from, chat;
# Zalo OA: sender, follower, user_id_by_app).
_PERSON_KEYS = ("from", "sender", "follower", "chat", "user")


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
    row = await session.get(Erasure, person_ref, populate_existing=True)
    return aware(row.erased_at) if row is not None else None


def mentions(payload: Any, external_id: str, depth: int = 0) -> bool:
    """Whether a stored update names this person as its sender or chat (any platform's shape)."""
    if depth > 8:
        return False
    if isinstance(payload, dict):
        for key, value in payload.items():
            if key in _PERSON_KEYS:
                if isinstance(value, dict) and str(value.get("id", "")) == external_id:
                    return True
                if not isinstance(value, (dict, list)) and str(value) == external_id:
                    return True
            if isinstance(value, (dict, list)) and mentions(value, external_id, depth + 1):
                return True
    elif isinstance(payload, list):
        return any(mentions(item, external_id, depth + 1) for item in payload)
    return False


async def retire_deliveries(session: AsyncSession, channel: str, external_id: str) -> int:
    """Drop the payload of the person's deliveries not yet handled and mark them handled; return how many.

    The platform id of each stays, so that a redelivery is still dropped as a duplicate.
    """
    rows = (
        await session.execute(
            select(ProcessedUpdate.update_key, ProcessedUpdate.payload).where(
                ProcessedUpdate.channel == channel, ProcessedUpdate.done.is_(False)
            )
        )
    ).all()
    keys = [key for key, payload in rows if payload is not None and mentions(payload, external_id)]
    for start in range(0, len(keys), 500):
        await session.execute(
            update(ProcessedUpdate)
            .where(ProcessedUpdate.channel == channel, ProcessedUpdate.update_key.in_(keys[start : start + 500]))
            .values(done=True, payload=None)
            .execution_options(synchronize_session=False)
        )
    return len(keys)


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
