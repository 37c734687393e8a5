"""Pre-aggregated statistics: counts kept up to date as rows are logged, and the queries over them.

Why this shape: the officers' pages ask for a month of one commune (or of all) out of millions of
logged rows, and must answer in a fraction of a second on a busy 2-core machine.

- Every count is kept per *scope*: the row's hamlet, its commune ("@" + code) and everything ("*").
  A commune's month is then one scope's rows (30 days x 3 channels x 5 outcomes at most), not a sum
  over its hamlets' rows, and all communes together are one scope too. The commune is the one the
  hamlet belonged to when the row was logged (`rebuild` recomputes with today's registry).
- Counters that add up over days are kept per day (`stat_messages`, `stat_topics`, `stat_stuck`), so
  any period is a sum; `stat_messages_monthly` holds the month totals a per-hamlet table of every
  commune at once needs.
- Distinct people do not add up over days. `stat_seen_monthly` keeps one row per scope, month, action
  and person (pseudonym); the first time a row is inserted, the month's count in `stat_people` goes up
  by one. A month's people, per hamlet, commune or step, is then read, not counted.
  `stat_seen_daily` (one row per hamlet, day, action and person) answers periods that are not one
  calendar month, with a COUNT(DISTINCT) - slower, and only for those.
- Low-confidence questions are counted per day, hamlet and wording (`stat_unanswered`, the wording's
  text once in `question_wordings`), so the unanswered page groups every wording of a period.

The increments of a transaction are collected as rows are logged and written just before it commits,
table by table in a fixed order and sorted within each table, so two transactions touching the same
counters never wait on each other in a cycle.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import Select, bindparam, delete, distinct, event, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage import questions
from storage.models import (
    Hamlet,
    QuestionWording,
    StatMessages,
    StatMessagesMonthly,
    StatPeople,
    StatSeenDaily,
    StatSeenMonthly,
    StatStuck,
    StatTopics,
    StatUnanswered,
)

# Vietnam has kept UTC+7 all year since 1975: a day of statistics is a Vietnamese calendar day.
LOCAL_TZ = timezone(timedelta(hours=7), "ICT")
STUCK_PREFIX = "[g:s:"  # how the log writes a press of "stuck at this step" (the button's payload)
PENDING_KEY = "stats_pending"
QUESTION_OUTCOMES = ("answered", "choices", "asked_back", "unanswered")
LOW_CONFIDENCE_OUTCOMES = ("unanswered", "choices", "asked_back")
ALL = "*"


def commune_scope(commune: str) -> str:
    return "@" + commune


def scope_of(commune: str | None) -> str:
    """The scope holding a commune's counts (None: every commune, and rows without a hamlet)."""
    return commune_scope(commune) if commune else ALL


def local_day(ts: datetime) -> date:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(LOCAL_TZ).date()


def day_start_utc(day: date) -> datetime:
    """The UTC instant a Vietnamese calendar day begins."""
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ).astimezone(timezone.utc)


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def single_month(start: date, end: date) -> date | None:
    """The month when [start, end) is exactly one calendar month."""
    return start if start.day == 1 and end == next_month(start) else None


def wording_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def is_wording(text: str | None) -> bool:
    """Whether a logged text is a question someone typed (not a button press like "[g:n]")."""
    return bool(text) and not text.startswith("[")


@dataclass
class _Pending:
    messages: Counter = field(default_factory=Counter)  # (day, hamlet, channel, outcome)
    topics: Counter = field(default_factory=Counter)  # (day, hamlet, topic), answered questions
    stuck: Counter = field(default_factory=Counter)  # (day, hamlet, step)
    seen: set = field(default_factory=set)  # (what, hamlet, day, channel, ref)
    wordings: dict = field(default_factory=dict)  # (day, hamlet, text) -> [n, last time]

    def clear(self) -> None:
        for part in (self.messages, self.topics, self.stuck, self.seen, self.wordings):
            part.clear()

    def __bool__(self) -> bool:
        return bool(self.messages or self.topics or self.stuck or self.seen or self.wordings)


def _pending(session: AsyncSession | Session) -> _Pending:
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    pending = sync.info.get(PENDING_KEY)
    if pending is None:
        pending = sync.info[PENDING_KEY] = _Pending()
        event.listen(sync, "before_commit", _write_pending)
        event.listen(sync, "after_soft_rollback", functools.partial(_rolled_back, pending))
    return pending


Pending = _Pending


def take_pending(session: AsyncSession) -> _Pending | None:
    """The increments noted in this transaction so far, for the caller to write in its own statement
    (storage/batch.py, on PostgreSQL); they are no longer written at commit. None when there are none."""
    pending: _Pending | None = session.sync_session.info.get(PENDING_KEY)
    if not pending:
        return None
    taken = _Pending(pending.messages.copy(), pending.topics.copy(), pending.stuck.copy(), set(pending.seen), dict(pending.wordings))
    pending.clear()
    return taken


def _rolled_back(pending: _Pending, _session, transaction) -> None:
    # Only the whole transaction's end drops the increments: a savepoint rolled back inside it
    # (a duplicate delivery, say) leaves the outer transaction's rows, and their counts, in place.
    if transaction.parent is None:
        pending.clear()


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)


def note_query(session: AsyncSession, fields: dict) -> None:
    """Count one query-log row (called where the row is added)."""
    pending = _pending(session)
    day = local_day(fields["created_at"])
    hamlet = fields.get("hamlet_code") or ""
    channel = fields["channel"]
    outcome = fields["outcome"]
    pending.messages[(day, hamlet, channel, outcome)] += 1
    if outcome == "answered" and fields.get("topic"):
        pending.topics[(day, hamlet, fields["topic"])] += 1
    if fields.get("user_ref"):
        pending.seen.add(("person", hamlet, day, channel, fields["user_ref"]))
    if fields["chat_type"] == "group" and fields.get("chat_ref"):
        pending.seen.add(("group", hamlet, day, channel, fields["chat_ref"]))
    text = (fields.get("text") or "").strip()
    if text.startswith(STUCK_PREFIX) and text.endswith("]"):
        pending.stuck[(day, hamlet, text[len(STUCK_PREFIX):-1][:40])] += 1
    if outcome in LOW_CONFIDENCE_OUTCOMES and is_wording(text):
        _note_wording(pending, day, hamlet, text, _aware(fields["created_at"]), 1)


def _note_wording(pending: _Pending, day: date, hamlet: str, text: str, at: datetime, n: int) -> None:
    entry = pending.wordings.setdefault((day, hamlet, text), [0, at])
    entry[0] += n
    entry[1] = max(entry[1], at)


def note_guide_event(session: AsyncSession, fields: dict) -> None:
    """Count one guide event (a step reached, or the answer to "did you submit?")."""
    pending = _pending(session)
    day = local_day(fields["created_at"])
    hamlet = fields.get("hamlet_code") or ""
    channel = fields["channel"]
    name = (fields.get("step") if fields["kind"] == "step" else fields.get("value")) or ""
    if fields.get("user_ref"):
        pending.seen.add((f"{fields['kind']}:{name}"[:60], hamlet, day, channel, fields["user_ref"]))
        pending.seen.add(("person", hamlet, day, channel, fields["user_ref"]))


def note_outcome_change(session: AsyncSession, row, new_outcome: str) -> None:
    """A logged query's outcome changed (a choice turned out not to fit): move its count."""
    pending = _pending(session)
    day, hamlet = local_day(row.created_at), row.hamlet_code or ""
    pending.messages[(day, hamlet, row.channel, row.outcome)] -= 1
    pending.messages[(day, hamlet, row.channel, new_outcome)] += 1
    if row.outcome == "answered" and row.topic:
        pending.topics[(day, hamlet, row.topic)] -= 1
    was, now = row.outcome in LOW_CONFIDENCE_OUTCOMES, new_outcome in LOW_CONFIDENCE_OUTCOMES
    if was != now and is_wording(row.text):
        _note_wording(pending, day, hamlet, row.text.strip(), _aware(row.created_at), 1 if now else -1)


async def forget(session: AsyncSession, user_ref: str, asked: list[tuple[datetime, str | None, str]]) -> None:
    """Unlink a person's statistics from their pseudonym, keeping them counted as one person.

    `asked` are the person's low-confidence questions (time, hamlet, text), about to lose their
    text in the log: they leave the unanswered questions' counts too, and a wording nobody else
    asked is deleted."""
    anonymous = "x" + uuid.uuid4().hex
    pending = _pending(session)
    for item in [s for s in pending.seen if s[4] == user_ref]:
        pending.seen.discard(item)
        pending.seen.add((*item[:4], anonymous))
    for model in (StatSeenDaily, StatSeenMonthly):
        await session.execute(update(model).where(model.ref == user_ref).values(ref=anonymous))
    taken: Counter = Counter()
    for at, hamlet, question in asked:
        if is_wording((question or "").strip()):
            taken[(local_day(at), hamlet or "", question.strip())] += 1
    for (day, hamlet, question), n in taken.items():
        pending_entry = pending.wordings.get((day, hamlet, question))
        if pending_entry is not None:  # logged in this very transaction: not written yet
            used = min(n, pending_entry[0])
            pending_entry[0] -= used
            n -= used
        if not n:
            continue
        digest = wording_hash(question)
        await session.execute(
            update(StatUnanswered)
            .where(StatUnanswered.hamlet_code == hamlet, StatUnanswered.day == day, StatUnanswered.text_hash == digest)
            .values(n=StatUnanswered.n - n)
        )
        await session.execute(update(QuestionWording).where(QuestionWording.text_hash == digest).values(n=QuestionWording.n - n))
    if taken:
        await session.execute(delete(StatUnanswered).where(StatUnanswered.n <= 0))
        await session.execute(delete(QuestionWording).where(QuestionWording.n <= 0))
        await questions.retire_empty_groups(session)


async def expire_wordings(session: AsyncSession, before: datetime) -> int:
    """Retention: forget the unanswered questions' counts of days before `before`, and wordings last asked then."""
    await session.execute(delete(StatUnanswered).where(StatUnanswered.day < local_day(before)))
    result = await session.execute(delete(QuestionWording).where(QuestionWording.last_at < before))
    await questions.retire_empty_groups(session)
    return result.rowcount or 0


def _insert(dialect: str):
    return pg_insert if dialect == "postgresql" else sqlite_insert


def _upsert(conn, insert, model, keys: tuple[str, ...], counts: Counter) -> None:
    rows = [dict(zip(keys, k), n=n) for k, n in sorted(counts.items()) if n]
    if rows:
        table = model.__table__
        stmt = insert(table)
        conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_={"n": table.c.n + stmt.excluded.n}), rows)


def _write_pending(sync: Session) -> None:
    pending: _Pending | None = sync.info.get(PENDING_KEY)
    if not pending:
        return
    messages, topics, stuck = pending.messages.copy(), pending.topics.copy(), pending.stuck.copy()
    seen, wordings = sorted(pending.seen), dict(pending.wordings)
    pending.clear()
    # Core statements on the transaction's connection: the ORM's bulk path costs more than the SQL.
    conn = sync.connection()
    insert = _insert(sync.get_bind().dialect.name)
    hamlets = sorted(({k[1] for k in messages} | {k[1] for k in topics} | {k[1] for k in stuck} | {s[1] for s in seen}) - {""})
    communes = dict(conn.execute(select(Hamlet.code, Hamlet.commune_code).where(Hamlet.code.in_(hamlets))).all()) if hamlets else {}

    def scopes(hamlet: str) -> tuple[str, ...]:
        if not hamlet:
            return (ALL,)
        commune = communes.get(hamlet)
        return (hamlet, commune_scope(commune), ALL) if commune else (hamlet, ALL)

    def spread(counts: Counter, monthly: bool = False) -> Counter:
        out: Counter = Counter()
        for (day, hamlet, *rest), n in counts.items():
            for scope in scopes(hamlet):
                out[(scope, month_start(day) if monthly else day, *rest)] += n
        return out

    # Table by table in one fixed order, rows sorted: the lock order every writer follows.
    _upsert(conn, insert, StatMessages, ("scope", "day", "channel", "outcome"), spread(messages))
    by_month: Counter = Counter()
    for (day, hamlet, _, outcome), n in messages.items():
        by_month[(day, hamlet, outcome)] += n
    _upsert(conn, insert, StatMessagesMonthly, ("scope", "month", "outcome"), spread(by_month, monthly=True))
    _upsert(conn, insert, StatTopics, ("scope", "day", "topic"), spread(topics))
    _upsert(conn, insert, StatStuck, ("scope", "day", "step"), spread(stuck))
    if seen:
        s_keys = ("what", "hamlet_code", "day", "channel", "ref")
        conn.execute(insert(StatSeenDaily.__table__).on_conflict_do_nothing(index_elements=list(s_keys)), [dict(zip(s_keys, k)) for k in seen])
        monthly = sorted({(scope, month_start(day), what, channel, ref) for what, hamlet, day, channel, ref in seen for scope in scopes(hamlet)})
        m_keys = ("scope", "month", "what", "channel", "ref")
        table = StatSeenMonthly.__table__
        stmt = insert(table).on_conflict_do_nothing(index_elements=list(m_keys))
        stmt = stmt.returning(table.c.scope, table.c.month, table.c.what, table.c.channel)
        # Only the rows inserted now come back: each is one more person in that month's count.
        new = Counter(tuple(r) for r in conn.execute(stmt, [dict(zip(m_keys, k)) for k in monthly]).all())
        _upsert(conn, insert, StatPeople, ("scope", "month", "what", "channel"), new)
    if wordings:
        totals: dict[str, list] = {}
        for (_, _, question), (n, at) in wordings.items():
            entry = totals.setdefault(question, [0, at])
            entry[0] += n
            entry[1] = max(entry[1], at)
        later = func.max if insert is sqlite_insert else func.greatest
        rows = sorted((wording_hash(q), q, n, at) for q, (n, at) in totals.items() if n)
        if rows:
            table = QuestionWording.__table__
            stmt = insert(table)
            changes = {"n": table.c.n + stmt.excluded.n, "last_at": later(table.c.last_at, stmt.excluded.last_at)}
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["text_hash"], set_=changes),
                [{"text_hash": h, "text": q, "n": n, "last_at": at} for h, q, n, at in rows],
            )
        rows = sorted((h, d, wording_hash(q), n, at) for (d, h, q), (n, at) in wordings.items() if n)
        if rows:
            table = StatUnanswered.__table__
            group = select(QuestionWording.group_id).where(QuestionWording.text_hash == bindparam("t")).scalar_subquery()
            stmt = insert(table).values(
                hamlet_code=bindparam("h"), day=bindparam("d"), text_hash=bindparam("t"), group_id=group, n=bindparam("n"), last_at=bindparam("at")
            )
            changes = {
                "n": table.c.n + stmt.excluded.n,
                "last_at": later(table.c.last_at, stmt.excluded.last_at),
                "group_id": func.coalesce(table.c.group_id, stmt.excluded.group_id),
            }
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["hamlet_code", "day", "text_hash"], set_=changes),
                [{"h": h, "d": d, "t": t, "n": n, "at": at} for h, d, t, n, at in rows],
            )


# --- Building from the log ------------------------------------------------------------------------


def rebuild_statements(dialect: str, seen_daily: bool = True) -> list[str]:
    """SQL that recomputes the statistics tables from query_log and guide_events (and the registry).

    Hamlet-level rows are computed first (with scope '' for rows without a hamlet), then the
    communes' and "*" rows are summed from them, so the big log tables are read once.
    `seen_daily=False` keeps stat_seen_daily as it is (a migration that did not change it)."""
    if dialect == "postgresql":
        day = "(({col}) AT TIME ZONE 'Asia/Ho_Chi_Minh')::date"
        month = "date_trunc('month', {col})::date"
        stuck = "substring(text from 6 for length(text) - 6)"
    else:
        day = "date({col}, '+7 hours')"
        month = "date({col}, 'start of month')"
        stuck = "substr(text, 6, length(text) - 6)"
    qd = day.format(col="created_at")
    name = "CASE WHEN kind = 'step' THEN coalesce(step, '') ELSE coalesce(value, '') END"
    low = ", ".join(f"'{o}'" for o in LOW_CONFIDENCE_OUTCOMES)
    out = [f"DELETE FROM {t}" for t in ("stat_messages", "stat_messages_monthly", "stat_topics", "stat_stuck", "stat_seen_monthly", "stat_people", "stat_unanswered")]
    out.append("UPDATE question_wordings SET n = 0 WHERE n <> 0")

    def spread(table: str, cols: str, time_col: str = "day") -> list[str]:
        """From the hamlet-level rows (scope = hamlet code or ''): the communes' rows, then '*', then drop ''."""
        return [
            f"""INSERT INTO {table} (scope, {time_col}, {cols}, n)
                SELECT '@' || h.commune_code, t.{time_col}, {', '.join('t.' + c.strip() for c in cols.split(','))}, sum(t.n)
                FROM {table} t JOIN hamlets h ON h.code = t.scope GROUP BY 1, 2, {', '.join(str(i + 3) for i in range(len(cols.split(','))))}""",
            f"""INSERT INTO {table} (scope, {time_col}, {cols}, n)
                SELECT '*', {time_col}, {cols}, sum(n) FROM {table} WHERE scope NOT LIKE '@%'
                GROUP BY {time_col}, {cols}""",
            f"DELETE FROM {table} WHERE scope = ''",
        ]

    out.append(
        f"""INSERT INTO stat_messages (scope, day, channel, outcome, n)
            SELECT coalesce(hamlet_code, ''), {qd}, channel, outcome, count(*) FROM query_log GROUP BY 1, 2, 3, 4"""
    )
    out.append(
        f"""INSERT INTO stat_messages_monthly (scope, month, outcome, n)
            SELECT scope, {month.format(col='day')}, outcome, sum(n) FROM stat_messages GROUP BY 1, 2, 3"""
    )
    out += spread("stat_messages", "channel, outcome")
    out += spread("stat_messages_monthly", "outcome", "month")
    out.append(
        f"""INSERT INTO stat_topics (scope, day, topic, n)
            SELECT coalesce(hamlet_code, ''), {qd}, topic, count(*) FROM query_log
            WHERE outcome = 'answered' AND topic IS NOT NULL AND topic <> '' GROUP BY 1, 2, 3"""
    )
    out += spread("stat_topics", "topic")
    out.append(
        f"""INSERT INTO stat_stuck (scope, day, step, n)
            SELECT coalesce(hamlet_code, ''), {qd}, substr({stuck}, 1, 40), count(*) FROM query_log
            WHERE text LIKE '[g:s:%]' GROUP BY 1, 2, 3"""
    )
    out += spread("stat_stuck", "step")
    if seen_daily:
        out += [
            "DELETE FROM stat_seen_daily",
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
    out += [
        f"""INSERT INTO stat_seen_monthly (scope, month, what, channel, ref)
            SELECT DISTINCT hamlet_code, {month.format(col='day')}, what, channel, ref FROM stat_seen_daily""",
        """INSERT INTO stat_seen_monthly (scope, month, what, channel, ref)
            SELECT DISTINCT '@' || h.commune_code, s.month, s.what, s.channel, s.ref
            FROM stat_seen_monthly s JOIN hamlets h ON h.code = s.scope""",
        """INSERT INTO stat_seen_monthly (scope, month, what, channel, ref)
            SELECT DISTINCT '*', month, what, channel, ref FROM stat_seen_monthly WHERE scope NOT LIKE '@%'""",
        "DELETE FROM stat_seen_monthly WHERE scope = ''",
        """INSERT INTO stat_people (scope, month, what, channel, n)
            SELECT scope, month, what, channel, count(*) FROM stat_seen_monthly GROUP BY 1, 2, 3, 4""",
        # Unanswered questions: the wordings still in the log (texts past retention or erased are gone).
        f"""INSERT INTO stat_unanswered (hamlet_code, day, text_hash, group_id, n, last_at)
            SELECT coalesce(q.hamlet_code, ''), {qd.replace('created_at', 'q.created_at')}, w.text_hash, min(w.group_id), count(*), max(q.created_at)
            FROM query_log q JOIN question_wordings w ON w.text = trim(q.text)
            WHERE q.outcome IN ({low}) GROUP BY 1, 2, 3""",
        """UPDATE question_wordings SET n = t.n, last_at = t.last_at
            FROM (SELECT text_hash, sum(n) AS n, max(last_at) AS last_at FROM stat_unanswered GROUP BY text_hash) AS t
            WHERE t.text_hash = question_wordings.text_hash""",
        "DELETE FROM question_wordings WHERE n <= 0",
    ]
    return out


def wording_statement(dialect: str) -> str:
    """SQL adding to question_wordings the low-confidence texts of the log it does not hold yet
    (their hash is filled by `fill_hashes`, in Python, since SQLite has no sha1)."""
    low = ", ".join(f"'{o}'" for o in LOW_CONFIDENCE_OUTCOMES)
    return f"""INSERT INTO question_wordings (text_hash, text, n, last_at)
        SELECT '?' || min(q.id), trim(q.text), 0, max(q.created_at) FROM query_log q
        WHERE q.outcome IN ({low}) AND q.text IS NOT NULL AND trim(q.text) <> '' AND trim(q.text) NOT LIKE '[%'
          AND NOT EXISTS (SELECT 1 FROM question_wordings w WHERE w.text = trim(q.text))
        GROUP BY trim(q.text)"""


async def rebuild(session: AsyncSession, seen_daily: bool = True) -> None:
    """Recompute every statistics table from the log (what the migrations do for data logged before them)."""
    await session.run_sync(lambda sync: rebuild_sync(sync.connection(), seen_daily))


def rebuild_sync(conn, seen_daily: bool = True) -> None:
    """`rebuild` on a synchronous connection (a migration's)."""
    dialect = conn.dialect.name
    conn.execute(text(wording_statement(dialect)))
    fill_hashes(conn)
    for statement in rebuild_statements(dialect, seen_daily):
        conn.execute(text(statement))


def fill_hashes(conn, batch: int = 5000) -> None:
    """Give the wordings `wording_statement` added their real hash (computed here: SQLite has no sha1)."""
    table = QuestionWording.__table__
    while True:
        rows = conn.execute(select(table.c.id, table.c.text).where(table.c.text_hash.like("?%")).limit(batch)).all()
        if not rows:
            return
        stmt = update(table).where(table.c.id == bindparam("wid")).values(text_hash=bindparam("digest"))
        conn.execute(stmt, [{"wid": i, "digest": wording_hash(t)} for i, t in rows])


# --- Reading -------------------------------------------------------------------------------------


def _hamlets(commune: str | None) -> Select:
    query = select(Hamlet.code)
    return query.where(Hamlet.commune_code == commune) if commune else query


def _scoped(query: Select, model, commune: str | None, per_hamlet: bool) -> Select:
    return query.where(model.scope.in_(_hamlets(commune))) if per_hamlet else query.where(model.scope == scope_of(commune))


async def message_counts(session: AsyncSession, start: date, end: date, commune: str | None, by: tuple[str, ...]) -> list[tuple]:
    """Messages of the period summed by the named columns: "day", "channel", "outcome", or "hamlet"
    (one row per hamlet of the commune, or of every commune)."""
    per_hamlet = "hamlet" in by
    month = single_month(start, end)
    model = StatMessagesMonthly if month and per_hamlet and set(by) <= {"hamlet", "outcome"} else StatMessages
    cols = [model.scope if c == "hamlet" else getattr(model, c) for c in by]
    query = select(*cols, func.sum(model.n)).group_by(*cols)
    if model is StatMessagesMonthly:
        query = query.where(model.month == month)
    else:
        query = query.where(model.day >= start, model.day < end)
    rows = await session.execute(_scoped(query, model, commune, per_hamlet))
    return [tuple(r[:-1]) + (int(r[-1] or 0),) for r in rows.all()]


async def topic_counts(session: AsyncSession, start: date, end: date, commune: str | None) -> dict[str, int]:
    """Answered questions of the period per topic."""
    query = select(StatTopics.topic, func.sum(StatTopics.n)).where(StatTopics.day >= start, StatTopics.day < end)
    rows = await session.execute(_scoped(query, StatTopics, commune, False).group_by(StatTopics.topic))
    return {topic: int(n or 0) for topic, n in rows.all() if n}


async def stuck_counts(session: AsyncSession, start: date, end: date, commune: str | None) -> dict[str, int]:
    """Presses of "stuck at this step" in the period per step."""
    query = select(StatStuck.step, func.sum(StatStuck.n)).where(StatStuck.day >= start, StatStuck.day < end)
    rows = await session.execute(_scoped(query, StatStuck, commune, False).group_by(StatStuck.step))
    return {step: int(n or 0) for step, n in rows.all()}


def _what_filter(column, whats: tuple[str, ...]):
    """Exact names, and prefixes written with a trailing ':' ("step:" is every step)."""
    exact = [w for w in whats if not w.endswith(":")]
    conds = [column.in_(exact)] if exact else []
    conds += [column.like(w.replace("%", r"\%").replace("_", r"\_") + "%", escape="\\") for w in whats if w.endswith(":")]
    return or_(*conds)


async def people_counts(
    session: AsyncSession, start: date, end: date, commune: str | None, whats: tuple[str, ...], by: tuple[str, ...] = ("what",)
) -> list[tuple]:
    """Distinct people (pseudonyms) seen doing each `what` in the period, grouped by the named columns:
    "what", "channel", "hamlet" (one row per hamlet of the commune, or of every commune).

    A calendar month is read from stat_people; any other period is counted over stat_seen_daily."""
    per_hamlet = "hamlet" in by
    month = single_month(start, end)
    if month:
        cols = [StatPeople.scope if c == "hamlet" else getattr(StatPeople, c) for c in by]
        query = select(*cols, func.sum(StatPeople.n)).where(StatPeople.month == month, _what_filter(StatPeople.what, whats))
        rows = await session.execute(_scoped(query, StatPeople, commune, per_hamlet).group_by(*cols))
        return [tuple(r[:-1]) + (int(r[-1] or 0),) for r in rows.all()]
    cols = [StatSeenDaily.hamlet_code if c == "hamlet" else getattr(StatSeenDaily, c) for c in by]
    query = select(*cols, func.count(distinct(StatSeenDaily.ref))).where(
        StatSeenDaily.day >= start, StatSeenDaily.day < end, _what_filter(StatSeenDaily.what, whats)
    )
    if commune:
        query = query.where(StatSeenDaily.hamlet_code.in_(_hamlets(commune)))
    elif per_hamlet:
        query = query.where(StatSeenDaily.hamlet_code.in_(_hamlets(None)))
    rows = await session.execute(query.group_by(*cols) if cols else query)
    return [tuple(r[:-1]) + (int(r[-1] or 0),) for r in rows.all()]


def _group_of_row():
    """A stat_unanswered row's group: copied on the row, or (not copied yet) its wording's group, or
    -(the wording's id) when the grouper has not placed the wording yet."""
    wording = (
        select(func.coalesce(QuestionWording.group_id, -QuestionWording.id))
        .where(QuestionWording.text_hash == StatUnanswered.text_hash)
        .scalar_subquery()
    )
    return func.coalesce(StatUnanswered.group_id, wording)


async def unanswered_groups(
    session: AsyncSession, start: date, end: date, commune: str | None, limit: int
) -> list[tuple[int, int, datetime]]:
    """(group, questions, last time) of the period's most asked groups of low-confidence questions.

    Read from stat_unanswered alone (the group is on each row), so the period's rows are summed
    without a look at each wording."""
    group = _group_of_row().label("g")
    query = (
        select(group, func.sum(StatUnanswered.n), func.max(StatUnanswered.last_at))
        .where(StatUnanswered.day >= start, StatUnanswered.day < end)
        .group_by(group)
        .order_by(func.sum(StatUnanswered.n).desc(), group)
        .limit(limit)
    )
    if commune:
        query = query.where(StatUnanswered.hamlet_code.in_(_hamlets(commune)))
    return [(g, int(n), _aware(last)) for g, n, last in (await session.execute(query)).all()]


async def unanswered_wordings(
    session: AsyncSession, start: date, end: date, commune: str | None, groups: list[int]
) -> list[tuple[int, str, str | None, str, int, datetime]]:
    """(group, text, key, hamlet, questions, last time) of the period's wordings in `groups`, per hamlet."""
    if not groups:
        return []
    group = _group_of_row()
    rows = (
        select(group.label("g"), StatUnanswered.text_hash, StatUnanswered.hamlet_code, StatUnanswered.n, StatUnanswered.last_at)
        .where(StatUnanswered.day >= start, StatUnanswered.day < end, group.in_(groups))
    )
    if commune:
        rows = rows.where(StatUnanswered.hamlet_code.in_(_hamlets(commune)))
    rows = rows.subquery()
    # The wordings are read only for the rows of the groups shown.
    query = (
        select(rows.c.g, QuestionWording.text, QuestionWording.key, rows.c.hamlet_code, func.sum(rows.c.n), func.max(rows.c.last_at))
        .join(QuestionWording, QuestionWording.text_hash == rows.c.text_hash)
        .group_by(rows.c.g, QuestionWording.text, QuestionWording.key, rows.c.hamlet_code)
    )
    return [(g, t, k, h, int(n), _aware(last)) for g, t, k, h, n, last in (await session.execute(query)).all()]


async def group_texts(session: AsyncSession, group: int, commune: str | None, limit: int) -> list[tuple[str, str | None]]:
    """(text, key) of a group's wordings asked in the commune (any commune: None), the most asked first.

    `group` as `unanswered_groups` gives it: a group id, or -(wording id) for a wording not grouped yet."""
    wording = QuestionWording.group_id == group if group > 0 else QuestionWording.id == -group
    query = (
        select(QuestionWording.text, QuestionWording.key, func.sum(StatUnanswered.n))
        .join(QuestionWording, QuestionWording.text_hash == StatUnanswered.text_hash)
        .where(wording)
        .group_by(QuestionWording.text, QuestionWording.key)
        .order_by(func.sum(StatUnanswered.n).desc(), QuestionWording.text)
        .limit(limit)
    )
    if commune:
        query = query.where(StatUnanswered.hamlet_code.in_(_hamlets(commune)))
    return [(t, k) for t, k, _ in (await session.execute(query)).all()]


async def total_rows(session: AsyncSession) -> dict[str, int]:
    out = {}
    for table in (StatMessages, StatMessagesMonthly, StatTopics, StatStuck, StatSeenDaily, StatSeenMonthly, StatPeople, StatUnanswered, QuestionWording):
        out[table.__tablename__] = (await session.execute(select(func.count()).select_from(table))).scalar_one()
    return out

