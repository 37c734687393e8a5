"""Conversation state, keyed by (channel, chat, user)."""

from __future__ import annotations

from datetime import datetime
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, tuple_
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


async def read_states(session: AsyncSession, keys: Sequence[Key]) -> dict[Key, dict[str, Any]]:
    """The states' data in one SELECT, without loading ORM objects (this runs for every message)."""
    if not keys:
        return {}
    table = ConversationState.__table__
    stmt = select(table.c.channel, table.c.chat_id, table.c.user_id, table.c.data).where(
        tuple_(table.c.channel, table.c.chat_id, table.c.user_id).in_(list(keys))
    )
    conn = await session.connection()
    return {(channel, chat, user): data for channel, chat, user, data in (await conn.execute(stmt)).all()}


async def write_states(session: AsyncSession, states: Sequence[tuple[Key, dict[str, Any]]], now: datetime) -> None:
    """Insert or replace states in one statement (in key order, so concurrent writers lock rows alike)."""
    if not states:
        return
    table = ConversationState.__table__
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel", "chat_id", "user_id"], set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at}
    )
    rows = [
        {"channel": key[0], "chat_id": key[1], "user_id": key[2], "data": data, "updated_at": now}
        for key, data in sorted(states, key=lambda item: item[0])
    ]
    conn = await session.connection()
    await conn.execute(stmt, rows)


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
