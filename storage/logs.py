"""The query log and guide events: what officers' statistics are computed from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import stats
from storage.models import GuideEvent, QueryLog

LOW_CONFIDENCE_OUTCOMES = stats.LOW_CONFIDENCE_OUTCOMES


async def add_query(session: AsyncSession, **fields) -> None:
    session.add(QueryLog(**fields))
    stats.note_query(session, fields)


async def add_guide_event(session: AsyncSession, **fields) -> None:
    session.add(GuideEvent(**fields))
    stats.note_guide_event(session, fields)


async def mark_unanswered(session: AsyncSession, user_ref: str, text: str) -> None:
    """Turn the person's last low-confidence query with this text into an unanswered one."""
    row = (
        await session.execute(
            select(QueryLog)
            .where(QueryLog.user_ref == user_ref, QueryLog.text == text, QueryLog.outcome.in_(("choices", "asked_back")))
            .order_by(QueryLog.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if row is not None:
        stats.note_outcome_change(session, row, "unanswered")
        row.outcome = "unanswered"


async def forget(session: AsyncSession, user_ref: str, private_chat_ref: str | None = None) -> None:
    """Remove the texts and the pseudonyms of a person, keeping anonymous counts."""
    mine = QueryLog.user_ref == user_ref
    if private_chat_ref:
        mine = mine | ((QueryLog.chat_ref == private_chat_ref) & (QueryLog.chat_type == "private"))
    questions = (
        await session.execute(
            select(QueryLog.created_at, QueryLog.hamlet_code, QueryLog.text).where(
                mine, QueryLog.outcome.in_(LOW_CONFIDENCE_OUTCOMES), QueryLog.text.is_not(None)
            )
        )
    ).all()
    if private_chat_ref:
        # A private chat's pseudonym is as personal as the user's (often the very same value).
        await session.execute(
            update(QueryLog)
            .where(QueryLog.chat_ref == private_chat_ref, QueryLog.chat_type == "private")
            .values(text=None, user_ref=None, chat_ref=None)
        )
    await session.execute(update(QueryLog).where(QueryLog.user_ref == user_ref).values(text=None, user_ref=None))
    await session.execute(update(GuideEvent).where(GuideEvent.user_ref == user_ref).values(user_ref=None))
    await stats.forget(session, user_ref, [tuple(q) for q in questions])


async def low_confidence_texts(session: AsyncSession, since: datetime | None = None) -> list[tuple[str, str]]:
    """Return (text, outcome) of unanswered and low-confidence queries."""
    query = select(QueryLog.text, QueryLog.outcome).where(
        QueryLog.outcome.in_(LOW_CONFIDENCE_OUTCOMES), QueryLog.text.is_not(None)
    )
    if since is not None:
        query = query.where(QueryLog.created_at >= since)
    return [(t, o) for t, o in (await session.execute(query)).all()]


async def count_queries(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(QueryLog))).scalar_one()


async def last_group_hamlet(session: AsyncSession, user_ref: str) -> str | None:
    """Return the hamlet of the group this person last wrote in (to offer it in private), if any."""
    return (
        await session.execute(
            select(QueryLog.hamlet_code)
            .where(QueryLog.user_ref == user_ref, QueryLog.chat_type == "group", QueryLog.hamlet_code.is_not(None))
            .order_by(QueryLog.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
