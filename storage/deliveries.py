"""Deliveries already processed, so that platform retries are handled once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ProcessedUpdate


async def claim(session: AsyncSession, channel: str, update_key: str, now: datetime) -> bool:
    """Record a delivery; return False when it was already recorded (by any process)."""
    try:
        async with session.begin_nested():
            session.add(ProcessedUpdate(channel=channel, update_key=update_key[:128], created_at=now))
            await session.flush()
    except IntegrityError:
        return False
    return True


async def prune(session: AsyncSession, now: datetime, keep: timedelta = timedelta(days=7)) -> None:
    await session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.created_at < now - keep))
