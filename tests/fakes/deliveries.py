"""Deliveries as a crashed process leaves them: recorded with their payload, never finished."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from storage.models import ProcessedUpdate


async def leave_unfinished(db, channel: str, key: str, payload: dict[str, Any], *, age: timedelta = timedelta(hours=1)) -> None:
    """Insert the row a process that crashed before handling `payload` would have left."""
    async with db.transaction() as session:
        session.add(
            ProcessedUpdate(
                channel=channel,
                update_key=key,
                created_at=datetime.now(timezone.utc) - age,
                payload=payload,
                done=False,
                attempts=0,
            )
        )


async def delivery(db, channel: str, key: str) -> ProcessedUpdate | None:
    """The row of one delivery, or None."""
    async with db.transaction() as session:
        return (
            await session.execute(
                select(ProcessedUpdate).where(ProcessedUpdate.channel == channel, ProcessedUpdate.update_key == key)
            )
        ).scalar_one_or_none()
