"""Conversation state, keyed by (channel, chat, user)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_
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
    conn = await session.connection()
    rows = (await conn.execute(_READ_STATES, {"keys": list(keys)})).all()
    return {(channel, chat, user): data for channel, chat, user, data in rows}


async def write_states(session: AsyncSession, states: Sequence[tuple[Key, dict[str, Any]]], now: datetime) -> None:
    """Insert or replace states in one statement (in key order, so concurrent writers lock rows alike)."""
    if not states:
        return
    rows = [
        {"channel": key[0], "chat_id": key[1], "user_id": key[2], "data": data, "updated_at": now}
        for key, data in sorted(states, key=lambda item: item[0])
    ]
    conn = await session.connection()
    await conn.execute(_write_states_stmt(conn.dialect.name), rows)


_STATES = ConversationState.__table__
_READ_STATES = select(_STATES.c.channel, _STATES.c.chat_id, _STATES.c.user_id, _STATES.c.data).where(
    tuple_(_STATES.c.channel, _STATES.c.chat_id, _STATES.c.user_id).in_(bindparam("keys", expanding=True))
)


@functools.cache
def _write_states_stmt(dialect: str):
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_STATES)
    return stmt.on_conflict_do_update(
        index_elements=["channel", "chat_id", "user_id"], set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at}
    )


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
