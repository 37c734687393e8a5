"""Editors' decisions on groups of unanswered questions: handled, or proposed as a topic's examples.

An admin accepts a proposal (its texts become examples of the topic, read by the matcher of every
process: `accepted_examples`), rejects it, or later withdraws an accepted one. Each change of the
accepted set bumps a version in the key-value table, which running processes compare to reload.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import kv
from storage.models import UnansweredMark

STATUSES = ("handled", "proposed", "accepted", "rejected", "withdrawn")
EXAMPLES_VERSION_KEY = "accepted_examples"


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


async def close(session: AsyncSession, mark_id: int, status: str, by: str, now: datetime) -> UnansweredMark | None:
    """Accept or reject a proposal; None when there is no such open proposal."""
    mark = await session.get(UnansweredMark, mark_id)
    if mark is None or mark.status != "proposed" or status not in ("accepted", "rejected"):
        return None
    mark.status = status
    mark.closed_by = by
    if status == "accepted":
        await _bump_version(session, now)
    return mark


async def withdraw(session: AsyncSession, mark_id: int, by: str, now: datetime) -> UnansweredMark | None:
    """Take an accepted proposal's examples out again; None when there is no such accepted proposal."""
    mark = await session.get(UnansweredMark, mark_id)
    if mark is None or mark.status != "accepted":
        return None
    mark.status = "withdrawn"
    mark.closed_by = by
    await _bump_version(session, now)
    return mark


async def accepted_examples(session: AsyncSession) -> dict[str, list[str]]:
    """Topic id -> the texts of its accepted proposals, oldest first."""
    rows = await session.execute(
        select(UnansweredMark.topic, UnansweredMark.texts).where(UnansweredMark.status == "accepted").order_by(UnansweredMark.id)
    )
    out: dict[str, list[str]] = {}
    for topic, texts in rows.all():
        if topic:
            out.setdefault(topic, []).extend(str(t) for t in texts or ())
    return out


async def examples_version(session: AsyncSession) -> int:
    """Changes whenever the accepted examples change (0: never)."""
    found = await kv.get(session, EXAMPLES_VERSION_KEY)
    return found[1] if found else 0


async def _bump_version(session: AsyncSession, now: datetime) -> None:
    for _ in range(3):
        found = await kv.get(session, EXAMPLES_VERSION_KEY)
        if await kv.put_if_version(session, EXAMPLES_VERSION_KEY, {"changed_at": now.isoformat()}, found[1] if found else None, now):
            return
