"""The query log and guide events: what officers' statistics are computed from."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import stats
from storage.models import GuideEvent, QueryLog

LOW_CONFIDENCE_OUTCOMES = stats.LOW_CONFIDENCE_OUTCOMES


async def add_query(session: AsyncSession, **fields) -> None:
    await add_many(session, queries=[fields])


async def add_guide_event(session: AsyncSession, **fields) -> None:
    await add_many(session, events=[fields])


async def add_many(session: AsyncSession, queries: Sequence[dict] = (), events: Sequence[dict] = ()) -> None:
    """Log queries and guide events (one multi-row INSERT each) and count them in the statistics."""
    conn = await session.connection()
    for model, rows, note in ((QueryLog, queries, stats.note_query), (GuideEvent, events, stats.note_guide_event)):
        if not rows:
            continue
        stmt, defaults = _insert_stmt(model)
        # Every row names every column, so one statement (and one compiled form) serves them all.
        await conn.execute(stmt, [{name: row.get(name, default) for name, default in defaults.items()} for row in rows])
        for row in rows:
            note(session, row)


@functools.cache
def _insert_stmt(model) -> tuple:
    table = model.__table__
    return insert(table), {c.name: c.default.arg if c.default is not None else None for c in table.columns if c.name != "id"}


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


async def last_group_hamlets(session: AsyncSession, user_refs: Sequence[str]) -> dict[str, str]:
    """The hamlet of the group each person last wrote in (to offer it in private), for those who did."""
    if not user_refs:
        return {}
    conn = await session.connection()
    return {ref: hamlet for ref, hamlet in (await conn.execute(_LAST_GROUP_HAMLETS, {"refs": list(user_refs)})).all()}


_LOG = QueryLog.__table__
_LAST_GROUP_HAMLETS = select(_LOG.c.user_ref, _LOG.c.hamlet_code).where(
    _LOG.c.id.in_(
        select(func.max(_LOG.c.id))
        .where(_LOG.c.user_ref.in_(bindparam("refs", expanding=True)), _LOG.c.chat_type == "group", _LOG.c.hamlet_code.is_not(None))
        .group_by(_LOG.c.user_ref)
    )
)
