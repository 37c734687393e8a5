"""Users and chats as the platforms know them, with their hamlets."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.masking import mask
from storage.models import Chat, User

TITLE_LENGTH = 255


def clean_title(title: str | None) -> str | None:
    """A group's title as stored: masked (people put phone numbers in titles) and within the column."""
    if not title:
        return None
    cleaned = mask(title.replace("\x00", ""))[:TITLE_LENGTH]
    return cleaned or None


async def touch_user(session: AsyncSession, channel: str, external_id: str, now: datetime) -> User:
    """Return the user, creating it on first contact; marks it active and seen now."""
    user = (
        await session.execute(select(User).where(User.channel == channel, User.external_id == external_id))
    ).scalar_one_or_none()
    if user is None:
        user = User(channel=channel, external_id=external_id, created_at=now, last_seen_at=now, active=True, opted_out=False)
        session.add(user)
    else:
        user.last_seen_at = now
        user.active = True
    await session.flush()
    return user


async def touch_chat(
    session: AsyncSession, channel: str, external_id: str, chat_type: str, now: datetime, title: str | None = None
) -> Chat:
    """Return the chat, creating it on first contact."""
    title = clean_title(title)
    chat = await get_chat(session, channel, external_id)
    if chat is None:
        chat = Chat(
            channel=channel, external_id=external_id, type=chat_type, title=title, active=True, created_at=now, updated_at=now
        )
        session.add(chat)
    else:
        chat.updated_at = now
        if title:
            chat.title = title
    await session.flush()
    return chat


async def get_chat(session: AsyncSession, channel: str, external_id: str) -> Chat | None:
    return (
        await session.execute(select(Chat).where(Chat.channel == channel, Chat.external_id == external_id))
    ).scalar_one_or_none()


async def set_chat_active(session: AsyncSession, channel: str, external_id: str, active: bool) -> None:
    await session.execute(
        update(Chat).where(Chat.channel == channel, Chat.external_id == external_id).values(active=active)
    )


async def set_user_active(session: AsyncSession, channel: str, external_id: str, active: bool) -> None:
    await session.execute(
        update(User).where(User.channel == channel, User.external_id == external_id).values(active=active)
    )


async def delete_user(session: AsyncSession, channel: str, external_id: str) -> None:
    user = (
        await session.execute(select(User).where(User.channel == channel, User.external_id == external_id))
    ).scalar_one_or_none()
    if user is not None:
        await session.delete(user)
        await session.flush()


async def delete_chat(session: AsyncSession, channel: str, external_id: str) -> None:
    chat = await get_chat(session, channel, external_id)
    if chat is not None:
        await session.delete(chat)
        await session.flush()


# -- one statement for all the messages handled together (see bot/service.py) -----------------------


async def seen_users(
    session: AsyncSession, users: Sequence[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], tuple[str | None, bool]]:
    """Create each (channel, external id) on first contact, else mark them active and seen now, in one
    statement; return their hamlet and opt-out. Rows go in key order, so concurrent writers lock alike."""
    rows = [
        {"channel": channel, "external_id": external_id, "hamlet_code": None, "opted_out": False, "active": True,
         "created_at": now, "last_seen_at": now}
        for channel, external_id in sorted(set(users))
    ]
    if not rows:
        return {}
    conn = await session.connection()
    result = await conn.execute(_seen_users_stmt(conn.dialect.name), rows)
    return {(channel, external_id): (hamlet, bool(opted_out)) for channel, external_id, hamlet, opted_out in result.all()}


async def seen_chats(
    session: AsyncSession, chats: Sequence[tuple[str, str, str]], now: datetime
) -> dict[tuple[str, str], str | None]:
    """Create each (channel, external id, type) on first contact, else note it was active now, in one
    statement; return their hamlets."""
    rows = [
        {"channel": channel, "external_id": external_id, "type": chat_type, "title": None, "hamlet_code": None,
         "active": True, "created_at": now, "updated_at": now}
        for (channel, external_id), chat_type in sorted({(c, e): t for c, e, t in chats}.items())
    ]
    if not rows:
        return {}
    conn = await session.connection()
    result = await conn.execute(_seen_chats_stmt(conn.dialect.name), rows)
    return {(channel, external_id): hamlet for channel, external_id, hamlet in result.all()}


@functools.cache
def _seen_users_stmt(dialect: str):
    table = User.__table__
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return stmt.on_conflict_do_update(
        index_elements=["channel", "external_id"], set_={"last_seen_at": stmt.excluded.last_seen_at, "active": True}
    ).returning(table.c.channel, table.c.external_id, table.c.hamlet_code, table.c.opted_out)


@functools.cache
def _seen_chats_stmt(dialect: str):
    table = Chat.__table__
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return stmt.on_conflict_do_update(
        index_elements=["channel", "external_id"], set_={"updated_at": stmt.excluded.updated_at}
    ).returning(table.c.channel, table.c.external_id, table.c.hamlet_code)


async def set_user_hamlet(session: AsyncSession, channel: str, external_id: str, hamlet: str | None) -> None:
    await session.execute(
        update(User).where(User.channel == channel, User.external_id == external_id).values(hamlet_code=hamlet)
    )


async def set_chat_hamlet(session: AsyncSession, channel: str, external_id: str, hamlet: str | None) -> None:
    await session.execute(
        update(Chat).where(Chat.channel == channel, Chat.external_id == external_id).values(hamlet_code=hamlet)
    )


async def set_user_opted_out(session: AsyncSession, channel: str, external_id: str, opted_out: bool) -> None:
    await session.execute(
        update(User).where(User.channel == channel, User.external_id == external_id).values(opted_out=opted_out)
    )
