"""Editors' decisions on groups of unanswered questions: handled, or proposed as a topic's examples."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import UnansweredMark

STATUSES = ("handled", "proposed", "accepted", "rejected")


async def add(
    session: AsyncSession, *, key: str, commune: str | None, status: str, topic: str | None, texts: list[str], by: str, now: datetime
) -> UnansweredMark:
    mark = UnansweredMark(
        group_key=key[:255], commune_code=commune, status=status, topic=topic, texts=texts[:50], created_by=by, created_at=now
    )
    session.add(mark)
    await session.flush()
    return mark


async def in_scope(session: AsyncSession, commune: str | None, statuses: tuple[str, ...] = STATUSES) -> list[UnansweredMark]:
    query = select(UnansweredMark).where(UnansweredMark.status.in_(statuses)).order_by(UnansweredMark.id.desc())
    if commune:
        query = query.where((UnansweredMark.commune_code == commune) | UnansweredMark.commune_code.is_(None))
    return list((await session.execute(query)).scalars())


async def close(session: AsyncSession, mark_id: int, status: str, by: str) -> UnansweredMark | None:
    mark = await session.get(UnansweredMark, mark_id)
    if mark is None or mark.status != "proposed":
        return None
    mark.status = status
    mark.closed_by = by
    return mark
