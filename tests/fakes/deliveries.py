"""The pipeline's tables as a crashed process leaves them, and how tests read them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from storage import deliveries
from storage.models import InboxEntry, OutboxMessage


async def leave_pending(db, channel: str, chat_id: str, calls: list[dict[str, Any]], *, key: str | None = None) -> None:
    """Commit what a process that crashed after handling (before sending) leaves: the key and the pending calls."""
    now = datetime.now(timezone.utc) - timedelta(seconds=5)
    async with db.transaction() as session:
        if key is not None:
            assert await deliveries.take(session, channel, key, now)
        await deliveries.enqueue(session, channel, chat_id, calls, now)


async def outbox(db, channel: str | None = None) -> list[OutboxMessage]:
    """Every outbox row, oldest first."""
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if channel is not None:
        query = query.where(OutboxMessage.channel == channel)
    async with db.transaction() as session:
        return list((await session.execute(query)).scalars().all())


async def inbox_keys(db, channel: str) -> list[str]:
    async with db.transaction() as session:
        return list((await session.execute(select(InboxEntry.update_key).where(InboxEntry.channel == channel))).scalars().all())
