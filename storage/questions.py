"""Wordings of low-confidence questions and their groups of near-duplicates (filled by bot/unanswered.py).

The wordings and their counts are written with the statistics (storage/stats.py); this module holds
what the grouper reads and writes: the wordings not grouped yet, the groups' keys, the assignments.
Group ids are given by the grouper itself (the largest plus one) while it holds the grouping lock,
so a batch of new groups is one insert. A group none of whose wordings is left is retired (its key,
a question's text, is deleted) but its row stays, so an id is never given twice.
"""

from __future__ import annotations

from sqlalchemy import bindparam, exists, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import advisory_key
from storage.models import QuestionGroup, QuestionWording, StatUnanswered

LOCK = "question-grouping"


async def try_lock(session: AsyncSession) -> bool:
    """Take the grouping lock for this transaction, without waiting (PostgreSQL; SQLite has one writer)."""
    if session.bind.dialect.name != "postgresql":
        await session.execute(text("UPDATE question_groups SET key = key WHERE 0 = 1"))  # takes SQLite's write lock now
        return True
    return bool((await session.execute(select(func.pg_try_advisory_xact_lock(advisory_key(LOCK))))).scalar_one())


async def ungrouped(session: AsyncSession, limit: int) -> list[tuple[int, str, str]]:
    """(id, text hash, text) of wordings not in a group yet, the most asked first."""
    query = select(QuestionWording.id, QuestionWording.text_hash, QuestionWording.text).where(QuestionWording.group_id.is_(None))
    return [tuple(r) for r in (await session.execute(query.order_by(QuestionWording.n.desc(), QuestionWording.id).limit(limit))).all()]


async def any_ungrouped(session: AsyncSession) -> bool:
    """Whether a wording waits for its group, or a count row for its wording's group (two index probes:
    the usual answer is no)."""
    for query in (
        select(QuestionWording.id).where(QuestionWording.group_id.is_(None)).limit(1),
        select(StatUnanswered.text_hash).where(StatUnanswered.group_id.is_(None)).limit(1),
    ):
        if (await session.execute(query)).first() is not None:
            return True
    return False


async def copy_groups(session: AsyncSession) -> None:
    """Copy each wording's group onto its count rows that do not have it yet (rows written while the
    wording was being grouped; the grouper copies the others as it places a wording)."""
    grouped = (
        select(QuestionWording.group_id)
        .where(QuestionWording.text_hash == StatUnanswered.text_hash, QuestionWording.group_id.is_not(None))
        .scalar_subquery()
    )
    await session.execute(
        update(StatUnanswered)
        .where(StatUnanswered.group_id.is_(None), exists().where(QuestionWording.text_hash == StatUnanswered.text_hash, QuestionWording.group_id.is_not(None)))
        .values(group_id=grouped)
        .execution_options(synchronize_session=False)
    )


async def groups_state(session: AsyncSession) -> tuple[int, int]:
    """(largest group id, live groups): whether a process's copy of the groups is still whole."""
    query = select(func.coalesce(func.max(QuestionGroup.id), 0), func.count(QuestionGroup.key)).select_from(QuestionGroup)
    row = (await session.execute(query)).one()
    return int(row[0]), int(row[1])


async def groups_after(session: AsyncSession, after: int) -> list[tuple[int, str]]:
    """(id, key) of the live groups with an id above `after`."""
    query = select(QuestionGroup.id, QuestionGroup.key).where(QuestionGroup.id > after, QuestionGroup.key.is_not(None))
    return [tuple(r) for r in (await session.execute(query.order_by(QuestionGroup.id))).all()]


async def save(session: AsyncSession, new_groups: list[tuple[int, str]], assigned: list[tuple[int, str, str, int]]) -> None:
    """Add groups (id, key) and put wordings (id, text hash, key, group id) in their groups, their count rows too."""
    if new_groups:
        await session.execute(insert(QuestionGroup), [{"id": i, "key": k} for i, k in new_groups])
    if assigned:
        await session.execute(update(QuestionWording), [{"id": i, "key": k, "group_id": g} for i, _, k, g in assigned])
        table = StatUnanswered.__table__
        stmt = update(table).where(table.c.text_hash == bindparam("h"), table.c.group_id.is_(None)).values(group_id=bindparam("g"))
        await session.execute(stmt, [{"h": h, "g": g} for _, h, _, g in assigned])


async def retire_empty_groups(session: AsyncSession) -> None:
    """Retire groups none of whose wordings is left (erased, or past retention): their key is a question's text."""
    used = exists().where(QuestionWording.group_id == QuestionGroup.id)
    await session.execute(update(QuestionGroup).where(QuestionGroup.key.is_not(None), ~used).values(key=None))
