"""Conversation state, keyed by (channel, chat, user)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ConversationState

Key = tuple[str, str, str]


async def load_state(session: AsyncSession, key: Key) -> dict[str, Any] | None:
    row = await session.get(ConversationState, key)
    return dict(row.data) if row else None


async def save_state(session: AsyncSession, key: Key, data: dict[str, Any], now: datetime) -> None:
    row = await session.get(ConversationState, key)
    if row is None:
        session.add(ConversationState(channel=key[0], chat_id=key[1], user_id=key[2], data=data, updated_at=now))
    else:
        row.data = data
        row.updated_at = now
    await session.flush()


async def read_state(session: AsyncSession, key: Key) -> dict[str, Any] | None:
    """The state's data in one SELECT, without loading an ORM object (this runs for every message)."""
    stmt = select(ConversationState.data).where(
        ConversationState.channel == key[0], ConversationState.chat_id == key[1], ConversationState.user_id == key[2]
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def write_state(session: AsyncSession, key: Key, data: dict[str, Any], now: datetime) -> None:
    """Insert or replace the state in one statement."""
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(ConversationState).values(channel=key[0], chat_id=key[1], user_id=key[2], data=data, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel", "chat_id", "user_id"], set_={"data": stmt.excluded.data, "updated_at": now}
    )
    await session.execute(stmt)


async def delete_states_of_user(session: AsyncSession, channel: str, user_id: str) -> None:
    await session.execute(
        delete(ConversationState).where(ConversationState.channel == channel, ConversationState.user_id == user_id)
    )


async def rename_chat(session: AsyncSession, channel: str, old_id: str, new_id: str) -> None:
    """Move every state of a chat to its new id (a Telegram group that became a supergroup)."""
    rows = (
        await session.execute(
            select(ConversationState).where(ConversationState.channel == channel, ConversationState.chat_id == old_id)
        )
    ).scalars().all()
    for row in rows:
        session.add(
            ConversationState(channel=channel, chat_id=new_id, user_id=row.user_id, data=row.data, updated_at=row.updated_at)
        )
        await session.delete(row)
    await session.flush()
