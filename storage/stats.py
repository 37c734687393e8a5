"""Pre-aggregated statistics: daily counts kept up to date as rows are logged, and the queries over them.

Why this shape: the officers' pages ask for a month of one commune out of millions of logged rows.
Counters (messages, guide events) add up across days, so one row per day, hamlet, channel and
outcome/topic/step holds them (`stat_query_daily`, `stat_event_daily`). Distinct people do not add up
across days, so `stat_seen_daily` keeps one row per person (pseudonym), day, hamlet and what they did
(wrote, reached a step, answered the outcome question): a month's distinct count is a COUNT(DISTINCT)
over those rows, a small fraction of the log because a person's many messages of a day are one row.

The increments of a transaction are collected as rows are logged and written just before it commits,
in a fixed order, so two transactions touching the same counters never wait on each other in a cycle.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import Select, distinct, event, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import Hamlet, StatEventDaily, StatQueryDaily, StatSeenDaily

# Vietnam has kept UTC+7 all year since 1975: a day of statistics is a Vietnamese calendar day.
LOCAL_TZ = timezone(timedelta(hours=7), "ICT")
STUCK_PREFIX = "[g:s:"  # how the log writes a press of "stuck at this step" (the button's payload)
PENDING_KEY = "stats_pending"
QUESTION_OUTCOMES = ("answered", "choices", "asked_back", "unanswered")


def local_day(ts: datetime) -> date:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(LOCAL_TZ).date()


def day_start_utc(day: date) -> datetime:
    """The UTC instant a Vietnamese calendar day begins."""
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ).astimezone(timezone.utc)


@dataclass
class _Pending:
    queries: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    seen: set = field(default_factory=set)

    def clear(self) -> None:
        self.queries.clear()
        self.events.clear()
        self.seen.clear()


def _pending(session: AsyncSession | Session) -> _Pending:
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    pending = sync.info.get(PENDING_KEY)
    if pending is None:
        pending = sync.info[PENDING_KEY] = _Pending()
        event.listen(sync, "before_commit", _write_pending)
        event.listen(sync, "after_soft_rollback", functools.partial(_rolled_back, pending))
    return pending


def _rolled_back(pending: _Pending, _session, transaction) -> None:
    # Only the whole transaction's end drops the increments: a savepoint rolled back inside it
    # (a duplicate delivery, say) leaves the outer transaction's rows, and their counts, in place.
    if transaction.parent is None:
        pending.clear()


def note_query(session: AsyncSession, fields: dict) -> None:
    """Count one query-log row (called where the row is added)."""
    pending = _pending(session)
    day = local_day(fields["created_at"])
    hamlet = fields.get("hamlet_code") or ""
    channel = fields["channel"]
    pending.queries[(day, hamlet, channel, fields["chat_type"], fields["outcome"], fields.get("topic") or "")] += 1
    if fields.get("user_ref"):
        pending.seen.add(("person", hamlet, day, channel, fields["user_ref"]))
    if fields["chat_type"] == "group" and fields.get("chat_ref"):
        pending.seen.add(("group", hamlet, day, channel, fields["chat_ref"]))
    text = fields.get("text") or ""
    if text.startswith(STUCK_PREFIX) and text.endswith("]"):
        pending.events[(day, hamlet, channel, "stuck", text[len(STUCK_PREFIX):-1][:40])] += 1


def note_guide_event(session: AsyncSession, fields: dict) -> None:
    """Count one guide event (a step reached, or the answer to "did you submit?")."""
    pending = _pending(session)
    day = local_day(fields["created_at"])
    hamlet = fields.get("hamlet_code") or ""
    channel = fields["channel"]
    name = (fields.get("step") if fields["kind"] == "step" else fields.get("value")) or ""
    pending.events[(day, hamlet, channel, fields["kind"], name[:40])] += 1
    if fields.get("user_ref"):
        pending.seen.add((f"{fields['kind']}:{name}"[:60], hamlet, day, channel, fields["user_ref"]))
        pending.seen.add(("person", hamlet, day, channel, fields["user_ref"]))


def note_outcome_change(session: AsyncSession, row, new_outcome: str) -> None:
    """A logged query's outcome changed (a choice turned out not to fit): move its count."""
    pending = _pending(session)
    base = (local_day(row.created_at), row.hamlet_code or "", row.channel, row.chat_type)
    pending.queries[(*base, row.outcome, row.topic or "")] -= 1
    pending.queries[(*base, new_outcome, row.topic or "")] += 1


async def forget(session: AsyncSession, user_ref: str) -> None:
    """Unlink a person's statistics from their pseudonym, keeping them counted as one person."""
    anonymous = "x" + uuid.uuid4().hex
    pending = _pending(session)
    for item in [s for s in pending.seen if s[4] == user_ref]:
        pending.seen.discard(item)
        pending.seen.add((*item[:4], anonymous))
    await session.execute(update(StatSeenDaily).where(StatSeenDaily.ref == user_ref).values(ref=anonymous))


def _insert(dialect: str):
    return pg_insert if dialect == "postgresql" else sqlite_insert


def _write_pending(sync: Session) -> None:
    pending: _Pending | None = sync.info.get(PENDING_KEY)
    if pending is None or not (pending.queries or pending.events or pending.seen):
        return
    insert = _insert(sync.get_bind().dialect.name)
    q_keys = ("day", "hamlet_code", "channel", "chat_type", "outcome", "topic")
    e_keys = ("day", "hamlet_code", "channel", "kind", "name")
    s_keys = ("what", "hamlet_code", "day", "channel", "ref")
    # Sorted, so concurrent transactions take the row locks in the same order.
    queries = [dict(zip(q_keys, k), n=n) for k, n in sorted(pending.queries.items()) if n]
    events = [dict(zip(e_keys, k), n=n) for k, n in sorted(pending.events.items()) if n]
    seen = [dict(zip(s_keys, k)) for k in sorted(pending.seen)]
    pending.clear()
    # Core statements on the transaction's connection: the ORM's bulk path costs more than the SQL.
    conn = sync.connection()
    for model, keys, rows in ((StatQueryDaily, q_keys, queries), (StatEventDaily, e_keys, events)):
        if rows:
            table = model.__table__
            stmt = insert(table)
            stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={"n": table.c.n + stmt.excluded.n})
            conn.execute(stmt, rows)
    if seen:
        conn.execute(insert(StatSeenDaily.__table__).on_conflict_do_nothing(index_elements=list(s_keys)), seen)


def rebuild_statements(dialect: str) -> list[str]:
    """SQL that recomputes every statistics table from query_log and guide_events."""
    if dialect == "postgresql":
        day = "(({col}) AT TIME ZONE 'Asia/Ho_Chi_Minh')::date"
        stuck = "substring(text from 6 for length(text) - 6)"
    else:
        day = "date({col}, '+7 hours')"
        stuck = "substr(text, 6, length(text) - 6)"
    qd = day.format(col="created_at")
    name = "CASE WHEN kind = 'step' THEN coalesce(step, '') ELSE coalesce(value, '') END"
    return [
        "DELETE FROM stat_query_daily",
        "DELETE FROM stat_event_daily",
        "DELETE FROM stat_seen_daily",
        f"""INSERT INTO stat_query_daily (day, hamlet_code, channel, chat_type, outcome, topic, n)
            SELECT {qd}, coalesce(hamlet_code, ''), channel, chat_type, outcome, coalesce(topic, ''), count(*)
            FROM query_log GROUP BY 1, 2, 3, 4, 5, 6""",
        f"""INSERT INTO stat_event_daily (day, hamlet_code, channel, kind, name, n)
            SELECT d, h, c, k, nm, count(*) FROM (
              SELECT {qd} AS d, coalesce(hamlet_code, '') AS h, channel AS c, kind AS k, substr({name}, 1, 40) AS nm
              FROM guide_events
              UNION ALL
              SELECT {qd}, coalesce(hamlet_code, ''), channel, 'stuck', substr({stuck}, 1, 40)
              FROM query_log WHERE text LIKE '[g:s:%]'
            ) AS e GROUP BY 1, 2, 3, 4, 5""",
        f"""INSERT INTO stat_seen_daily (what, hamlet_code, day, channel, ref)
            SELECT DISTINCT w, h, d, c, r FROM (
              SELECT 'person' AS w, coalesce(hamlet_code, '') AS h, {qd} AS d, channel AS c, user_ref AS r
              FROM query_log WHERE user_ref IS NOT NULL
              UNION ALL
              SELECT 'group', coalesce(hamlet_code, ''), {qd}, channel, chat_ref
              FROM query_log WHERE chat_type = 'group' AND chat_ref IS NOT NULL
              UNION ALL
              SELECT 'person', coalesce(hamlet_code, ''), {qd}, channel, user_ref
              FROM guide_events WHERE user_ref IS NOT NULL
              UNION ALL
              SELECT substr(kind || ':' || {name}, 1, 60), coalesce(hamlet_code, ''), {qd}, channel, user_ref
              FROM guide_events WHERE user_ref IS NOT NULL
            ) AS s""",
    ]


async def rebuild(session: AsyncSession) -> None:
    for statement in rebuild_statements(session.bind.dialect.name):
        await session.execute(text(statement))


# --- Reading -------------------------------------------------------------------------------------


def _scoped(query: Select, table, start: date, end: date, commune: str | None) -> Select:
    query = query.where(table.day >= start, table.day < end)
    if commune:
        query = query.where(table.hamlet_code.in_(select(Hamlet.code).where(Hamlet.commune_code == commune)))
    return query


async def query_counts(session: AsyncSession, start: date, end: date, commune: str | None, by: tuple[str, ...]) -> list[tuple]:
    """Sum of messages grouped by the named columns of stat_query_daily, e.g. ("channel", "outcome")."""
    cols = [getattr(StatQueryDaily, c) for c in by]
    query = _scoped(select(*cols, func.sum(StatQueryDaily.n)), StatQueryDaily, start, end, commune).group_by(*cols)
    return [tuple(r[:-1]) + (int(r[-1] or 0),) for r in (await session.execute(query)).all()]


async def event_counts(session: AsyncSession, start: date, end: date, commune: str | None, kind: str, by: tuple[str, ...] = ("name",)) -> list[tuple]:
    cols = [getattr(StatEventDaily, c) for c in by]
    query = _scoped(select(*cols, func.sum(StatEventDaily.n)), StatEventDaily, start, end, commune)
    query = query.where(StatEventDaily.kind == kind).group_by(*cols)
    return [tuple(r[:-1]) + (int(r[-1] or 0),) for r in (await session.execute(query)).all()]


async def distinct_counts(
    session: AsyncSession, start: date, end: date, commune: str | None, what: str, by: tuple[str, ...] = (), prefix: bool = False
) -> list[tuple]:
    """Distinct pseudonyms seen doing `what` (or any `what` starting with it) in the period, grouped."""
    cols = [getattr(StatSeenDaily, c) for c in by]
    query = _scoped(select(*cols, func.count(distinct(StatSeenDaily.ref))), StatSeenDaily, start, end, commune)
    cond = StatSeenDaily.what.like(what.replace("%", r"\%") + "%", escape="\\") if prefix else StatSeenDaily.what == what
    query = query.where(cond)
    if cols:
        query = query.group_by(*cols)
    return [tuple(r) for r in (await session.execute(query)).all()]


async def total_rows(session: AsyncSession) -> dict[str, int]:
    out = {}
    for table in (StatQueryDaily, StatEventDaily, StatSeenDaily):
        out[table.__tablename__] = (await session.execute(select(func.count()).select_from(table))).scalar_one()
    return out

