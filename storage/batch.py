"""A receiving batch's reads and writes, each one statement on PostgreSQL.

A receiving transaction (bot/pipeline/receiving.py) handles the messages of distinct chats and people
together: it reads what the core needs of each (erasure, state, user, chat, the last group's hamlet),
steps the core, and writes what came of it (log rows, states, the outbox rows, the statistics' counters).

- `read`: on PostgreSQL one statement — the erasure check, the states, the user and chat upserts (first
  contact creates them, else they are marked seen now; not for a message sent before its sender's erasure)
  and the last group hamlets of people without one. The statement runs after the one that took the chats'
  locks, so its snapshot sees what the transactions before it committed.
- `write`: on PostgreSQL one statement with data-modifying CTEs — the query log, the guide events, the
  states, the statistics' counters (table by table in the order `storage.stats` writes them, each table's
  rows in key order, as before; the hamlets' communes looked up in the same statement), the ids of the
  calls of these chats still pending before (for the sender, see `Sender.offer`) and the outbox rows,
  whose ids come back in the order given.

Both are fixed texts over arrays (`unnest`), so one prepared statement serves every batch size; the write
has one text per set of kinds of rows present (a handful), because an INSERT of no rows would still fire
the outbox's NOTIFY trigger. On SQLite the same reads and writes are the per-kind statements of
`storage.conversations`, `storage.people`, `storage.logs` and `storage.deliveries` (in-process, they cost
no round trip), and the statistics are written at commit (`storage.stats`).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from storage import conversations, deliveries, erasure, logs, people, stats
from storage.deliveries import Outgoing
from storage.models import GuideEvent, QueryLog

Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Message:
    """What the reads need of one message."""

    channel: str
    chat_id: str
    chat_type: str
    sender_id: str
    erasure_ref: str  # bot.privacy.erasure_ref of the sender
    person_ref: str  # the sender's pseudonym (the query log's user_ref)
    sent: datetime

    @property
    def key(self) -> Key:
        return (self.channel, self.chat_id, self.sender_id)


@dataclass
class Reads:
    """What a batch's messages need, read (and the users and chats upserted) in one go."""

    erased: set[int] = field(default_factory=set)  # positions of messages sent before their sender's erasure
    states: dict[Key, dict[str, Any]] = field(default_factory=dict)
    users: dict[tuple[str, str], tuple[str | None, bool]] = field(default_factory=dict)  # hamlet, opted out
    chats: dict[tuple[str, str], str | None] = field(default_factory=dict)  # hamlet
    last_group: dict[str, str] = field(default_factory=dict)  # person ref -> hamlet of their last group


@dataclass
class Writes:
    """Rows a batch's handling produced, written in one go (`write`)."""

    queries: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    states: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.queries or self.events or self.states)


Calls = Sequence[tuple[str, str, Sequence[dict[str, Any]], str | None]]  # (channel, chat_id, calls, user_id)


# On PostgreSQL, one statement each (False: the per-kind statements, as on SQLite; the tests compare them).
ONE_STATEMENT = True


def _is_pg(session: AsyncSession) -> bool:
    return ONE_STATEMENT and session.bind.dialect.name == "postgresql"


# -- reads ------------------------------------------------------------------------------------------


async def read(session: AsyncSession, msgs: Sequence[Message], now: datetime) -> Reads:
    """Read what the messages need; create or touch their users and chats (not those of erased senders).

    The messages must be of distinct chats and senders (a transaction's batch), under their chats' locks."""
    if not msgs:
        return Reads()
    if _is_pg(session):
        return await _read_pg(session, msgs, now)
    erased_at = await erasure.erased_at_many(session, sorted({m.erasure_ref for m in msgs}))
    out = Reads()
    out.erased = {
        i for i, m in enumerate(msgs) if m.erasure_ref in erased_at and erasure.aware(m.sent) < erased_at[m.erasure_ref]
    }
    live = [m for i, m in enumerate(msgs) if i not in out.erased]
    if not live:
        return out
    out.states = await conversations.read_states(session, [m.key for m in live])
    out.users = await people.seen_users(session, [(m.channel, m.sender_id) for m in live], now)
    out.chats = await people.seen_chats(session, [(m.channel, m.chat_id, m.chat_type) for m in live], now)
    homeless = sorted({m.person_ref for m in live if m.chat_type == "private" and out.users[(m.channel, m.sender_id)][0] is None})
    out.last_group = await logs.last_group_hamlets(session, homeless)
    return out


# Rows are upserted in key order (COLLATE "C": the order Python sorts strings in, as people.seen_users
# does), so that two transactions touching the same users lock them alike.
_READ = text(
    """
WITH m AS (
  SELECT * FROM unnest(CAST(:channel AS VARCHAR[]), CAST(:chat AS VARCHAR[]), CAST(:chat_type AS VARCHAR[]),
                       CAST(:sender AS VARCHAR[]), CAST(:erasure_ref AS VARCHAR[]), CAST(:person AS VARCHAR[]),
                       CAST(:sent AS TIMESTAMPTZ[]))
    WITH ORDINALITY AS t(channel, chat_id, chat_type, sender_id, erasure_ref, person, sent, i)
), erased AS (
  SELECT m.i FROM m JOIN erasures e ON e.person_ref = m.erasure_ref WHERE e.erased_at > m.sent
), live AS (
  SELECT * FROM m WHERE m.i NOT IN (SELECT i FROM erased)
), u AS (
  INSERT INTO users AS x (channel, external_id, hamlet_code, opted_out, active, created_at, last_seen_at)
  SELECT d.channel, d.sender_id, NULL, false, true, :now, :now
  FROM (SELECT DISTINCT channel, sender_id FROM live) AS d
  ORDER BY d.channel COLLATE "C", d.sender_id COLLATE "C"
  ON CONFLICT (channel, external_id) DO UPDATE SET last_seen_at = excluded.last_seen_at, active = true
  RETURNING x.channel, x.external_id, x.hamlet_code, x.opted_out
), c AS (
  INSERT INTO chats AS x (channel, external_id, type, title, hamlet_code, active, created_at, updated_at)
  SELECT d.channel, d.chat_id, d.chat_type, NULL, NULL, true, :now, :now
  FROM (SELECT DISTINCT ON (channel, chat_id) channel, chat_id, chat_type FROM live ORDER BY channel, chat_id, i DESC) AS d
  ORDER BY d.channel COLLATE "C", d.chat_id COLLATE "C"
  ON CONFLICT (channel, external_id) DO UPDATE SET updated_at = excluded.updated_at
  RETURNING x.channel, x.external_id, x.hamlet_code
), s AS (
  SELECT channel, chat_id, user_id, data FROM conversation_states
  WHERE (channel, chat_id, user_id) IN (SELECT channel, chat_id, sender_id FROM live)
), lg AS (
  SELECT q.user_ref, q.hamlet_code FROM query_log q
  WHERE q.id IN (
    SELECT max(id) FROM query_log
    WHERE chat_type = 'group' AND hamlet_code IS NOT NULL AND user_ref IN (
      SELECT live.person FROM live JOIN u ON u.channel = live.channel AND u.external_id = live.sender_id
      WHERE live.chat_type = 'private' AND u.hamlet_code IS NULL)
    GROUP BY user_ref)
)
SELECT m.i, m.i IN (SELECT i FROM erased), CAST(s.data AS TEXT), u.hamlet_code, u.opted_out, c.hamlet_code, lg.hamlet_code
FROM m
LEFT JOIN s ON s.channel = m.channel AND s.chat_id = m.chat_id AND s.user_id = m.sender_id
LEFT JOIN u ON u.channel = m.channel AND u.external_id = m.sender_id
LEFT JOIN c ON c.channel = m.channel AND c.external_id = m.chat_id
LEFT JOIN lg ON lg.user_ref = m.person
ORDER BY m.i
"""
)


async def _read_pg(session: AsyncSession, msgs: Sequence[Message], now: datetime) -> Reads:
    params = {
        "channel": [m.channel for m in msgs],
        "chat": [m.chat_id for m in msgs],
        "chat_type": [m.chat_type for m in msgs],
        "sender": [m.sender_id for m in msgs],
        "erasure_ref": [m.erasure_ref for m in msgs],
        "person": [m.person_ref for m in msgs],
        "sent": [erasure.aware(m.sent) for m in msgs],
        "now": now,
    }
    conn = await session.connection()
    out = Reads()
    for i, erased, data, user_hamlet, opted_out, chat_hamlet, last_group in (await conn.execute(_READ, params)).all():
        m = msgs[i - 1]
        if erased:
            out.erased.add(i - 1)
            continue
        if data is not None:
            out.states[m.key] = json.loads(data)
        out.users[(m.channel, m.sender_id)] = (user_hamlet, bool(opted_out))
        out.chats[(m.channel, m.chat_id)] = chat_hamlet
        if last_group is not None and m.chat_type == "private" and user_hamlet is None:
            out.last_group[m.person_ref] = last_group
    return out


# -- writes -----------------------------------------------------------------------------------------


async def write(
    session: AsyncSession,
    writes: Writes,
    calls: Calls,
    now: datetime,
    *,
    pending_before: bool = False,
    kind: str = "reply",
    sent: Sequence[int] = (),
) -> tuple[list[Outgoing], dict[tuple[str, str], list[int]]]:
    """Write a batch's log rows, states and outbox rows (`calls`, ids in the order given), the calls the
    sender made (`sent`, `deliveries.mark_sent`), and on PostgreSQL the statistics' counters noted in this
    transaction so far.

    With `pending_before`, also returns the ids of the calls of `calls`' chats that were pending before
    these were added (per chat, for `Sender.offer`). Returns the outbox rows as the sender holds them."""
    rows = [(channel, chat_id, call, user_id) for channel, chat_id, chat_calls, user_id in calls for call in chat_calls]
    chats = sorted({(channel, chat_id) for channel, chat_id, _call, _user in rows}) if pending_before else []
    if not _is_pg(session):
        await logs.add_many(session, queries=writes.queries, events=writes.events)
        await conversations.write_states(session, writes.states, now)
        earlier = await deliveries.pending_of(session, chats) if chats else {}
        if sent:
            await deliveries.mark_sent(session, sent, now)
        return await deliveries.enqueue_many(session, calls, now, kind=kind), earlier
    for row in writes.queries:
        stats.note_query(session, row)
    for row in writes.events:
        stats.note_guide_event(session, row)
    counters = stats.take_pending(session)
    parts: list[str] = []
    params: dict[str, Any] = {"now": now}
    if sent:
        parts.append("sent")
        params["sent"] = sorted(set(sent))
    if writes.queries:
        parts.append("query_log")
        params.update(_columns("q", _log_rows(QueryLog, writes.queries)))
    if writes.events:
        parts.append("guide_events")
        params.update(_columns("g", _log_rows(GuideEvent, writes.events)))
    if writes.states:
        parts.append("states")
        ordered = sorted(writes.states, key=lambda item: item[0])
        params.update(
            s_channel=[k[0] for k, _ in ordered],
            s_chat=[k[1] for k, _ in ordered],
            s_user=[k[2] for k, _ in ordered],
            s_data=[json.dumps(data) for _, data in ordered],
        )
    if counters:
        parts += _stats_params(counters, params)
    if chats:
        parts.append("pending")
        params.update(p_channel=[c for c, _ in chats], p_chat=[c for _, c in chats])
    if rows:
        parts.append("outbox")
        params.update(
            o_channel=[r[0] for r in rows],
            o_chat=[r[1] for r in rows],
            o_user=[r[3] for r in rows],
            o_call=[json.dumps(r[2]) for r in rows],
            o_kind=kind,
        )
    if not parts:
        return [], {}
    conn = await session.connection()
    result = (await conn.execute(_write_statement(tuple(parts)), params)).all()
    ids = sorted(id_ for what, _c, _chat, id_ in result if what == "o")
    earlier: dict[tuple[str, str], list[int]] = {}
    for what, channel, chat_id, id_ in sorted(result, key=lambda r: r[3]):
        if what == "p":
            earlier.setdefault((channel, chat_id), []).append(id_)
    outgoing = [
        Outgoing(id_, channel, chat_id, call, 0, now) for id_, (channel, chat_id, call, _user) in zip(ids, rows, strict=True)
    ]
    return outgoing, earlier


@functools.cache
def _log_columns(model) -> dict[str, tuple[str, Any]]:
    """The log table's columns but the id: name -> (SQL array type, default)."""
    types = {"DateTime": "TIMESTAMPTZ", "String": "VARCHAR", "Text": "TEXT", "Float": "FLOAT8", "Integer": "INTEGER"}
    return {
        c.name: (types[type(c.type).__name__], c.default.arg if c.default is not None else None)
        for c in model.__table__.columns
        if c.name != "id"
    }


def _log_rows(model, rows: Sequence[dict]) -> dict[str, list]:
    return {name: [row.get(name, default) for row in rows] for name, (_type, default) in _log_columns(model).items()}


def _columns(prefix: str, columns: dict[str, list]) -> dict[str, list]:
    return {f"{prefix}_{name}": values for name, values in columns.items()}


def _insert_log(name: str, model, prefix: str) -> str:
    cols = _log_columns(model)
    arrays = ", ".join(f"CAST(:{prefix}_{c} AS {t}[])" for c, (t, _d) in cols.items())
    names = ", ".join(cols)
    # Ids in the order given, as the multi-row INSERT gives them.
    return (
        f"{name} AS (INSERT INTO {model.__tablename__} ({names}) SELECT {names} FROM unnest({arrays}) "
        f"WITH ORDINALITY AS t({names}, ord) ORDER BY t.ord RETURNING 1)"
    )


def _stats_params(p: stats.Pending, params: dict[str, Any]) -> list[str]:
    """The hamlet-level counters of `p` as arrays (the statement spreads them over the scopes)."""
    parts: list[str] = []
    hamlets = sorted(({k[1] for k in p.messages} | {k[1] for k in p.topics} | {k[1] for k in p.stuck} | {s[1] for s in p.seen}) - {""})
    params["hamlets"] = hamlets
    messages = [(k, n) for k, n in p.messages.items() if n]
    if messages:
        parts.append("stat_messages")
        params.update(
            m_day=[k[0] for k, _ in messages], m_hamlet=[k[1] for k, _ in messages],
            m_channel=[k[2] for k, _ in messages], m_outcome=[k[3] for k, _ in messages], m_n=[n for _, n in messages],
        )
        by_month: Counter = Counter()
        for (day, hamlet, _channel, outcome), n in messages:
            by_month[(stats.month_start(day), hamlet, outcome)] += n
        monthly = [(k, n) for k, n in by_month.items() if n]
        if monthly:
            parts.append("stat_messages_monthly")
            params.update(
                mm_month=[k[0] for k, _ in monthly], mm_hamlet=[k[1] for k, _ in monthly],
                mm_outcome=[k[2] for k, _ in monthly], mm_n=[n for _, n in monthly],
            )
    for name, prefix, column, counts in (("stat_topics", "t", "topic", p.topics), ("stat_stuck", "k", "step", p.stuck)):
        items = [(k, n) for k, n in counts.items() if n]
        if items:
            parts.append(name)
            params.update(
                {f"{prefix}_day": [k[0] for k, _ in items], f"{prefix}_hamlet": [k[1] for k, _ in items],
                 f"{prefix}_{column}": [k[2] for k, _ in items], f"{prefix}_n": [n for _, n in items]}
            )
    if p.seen:
        seen = sorted(p.seen)
        parts.append("stat_seen")
        params.update(
            v_what=[s[0] for s in seen], v_hamlet=[s[1] for s in seen], v_day=[s[2] for s in seen],
            v_month=[stats.month_start(s[2]) for s in seen], v_channel=[s[3] for s in seen], v_ref=[s[4] for s in seen],
        )
    if p.wordings:
        totals: dict[str, list] = {}
        for (_day, _hamlet, question), (n, at) in p.wordings.items():
            entry = totals.setdefault(question, [0, at])
            entry[0] += n
            entry[1] = max(entry[1], at)
        wordings = sorted((stats.wording_hash(q), q, n, at) for q, (n, at) in totals.items() if n)
        unanswered = sorted((h, d, stats.wording_hash(q), n, at) for (d, h, q), (n, at) in p.wordings.items() if n)
        if wordings:
            parts.append("question_wordings")
            params.update(
                w_hash=[w[0] for w in wordings], w_text=[w[1] for w in wordings],
                w_n=[w[2] for w in wordings], w_at=[w[3] for w in wordings],
            )
        if unanswered:
            parts.append("stat_unanswered")
            params.update(
                u_hamlet=[u[0] for u in unanswered], u_day=[u[1] for u in unanswered], u_hash=[u[2] for u in unanswered],
                u_n=[u[3] for u in unanswered], u_at=[u[4] for u in unanswered],
            )
    return parts


# The scopes a hamlet-level counter counts in (storage.stats): its hamlet, its commune, and "*".
_SCOPES = (
    "LEFT JOIN h ON h.code = t.hamlet "
    "CROSS JOIN LATERAL (VALUES (NULLIF(t.hamlet, '')), ('@' || NULLIF(h.commune_code, '')), ('*')) AS sc(scope)"
)


def _counter(name: str, table: str, prefix: str, cols: list[tuple[str, str]], gate: str) -> str:
    """An upsert adding the spread of hamlet-level counts to a counter table. `cols` are the key's columns
    besides the scope, (name, SQL type), given as arrays `:{prefix}_{name}` beside `:{prefix}_hamlet` and
    `:{prefix}_n`. Rows go in key order (text COLLATE "C": the order Python sorts them in, storage.stats)."""
    names = [c for c, _t in cols]
    arrays = ", ".join([f"CAST(:{prefix}_{c} AS {t}[])" for c, t in cols] + [f"CAST(:{prefix}_hamlet AS VARCHAR[])", f"CAST(:{prefix}_n AS INTEGER[])"])
    t_cols = ", ".join(f"t.{c}" for c in names)
    order = ", ".join(['sc.scope COLLATE "C"'] + [f"t.{c}" + (' COLLATE "C"' if t == "VARCHAR" else "") for c, t in cols])
    return (
        f"{name} AS (INSERT INTO {table} AS x (scope, {', '.join(names)}, n) "
        f"SELECT sc.scope, {t_cols}, sum(t.n) FROM unnest({arrays}) AS t({', '.join(names)}, hamlet, n) {_SCOPES} "
        f"WHERE sc.scope IS NOT NULL{gate} GROUP BY sc.scope, {t_cols} HAVING sum(t.n) <> 0 ORDER BY {order} "
        f"ON CONFLICT (scope, {', '.join(names)}) DO UPDATE SET n = x.n + excluded.n RETURNING 1)"
    )


# The statistics' tables in the order storage.stats writes them (the lock order every writer follows).
_STATS_ORDER = ("stat_messages", "stat_messages_monthly", "stat_topics", "stat_stuck", "stat_seen", "question_wordings", "stat_unanswered")


@functools.cache
def _write_statement(parts: tuple[str, ...]):
    """The write statement for a set of kinds of rows (one text, hence one prepared statement, per set)."""
    ctes: list[str] = []
    before: str | None = None  # the CTE the next counter waits for (an InitPlan: it runs to its end first)
    if "sent" in parts:
        # First, before any counter row is locked (as the sender's own UPDATE would, holding nothing else).
        ctes.append(
            "mk AS (UPDATE outbox SET status = 'sent', ended_at = CAST(:now AS TIMESTAMPTZ), call = NULL "
            "WHERE id = ANY(CAST(:sent AS BIGINT[])) AND status = 'pending' RETURNING 1)"
        )
        before = "mk"
    if "query_log" in parts:
        ctes.append(_insert_log("ql", QueryLog, "q"))
    if "guide_events" in parts:
        ctes.append(_insert_log("ge", GuideEvent, "g"))
    if "states" in parts:
        ctes.append(
            "st AS (INSERT INTO conversation_states AS x (channel, chat_id, user_id, data, updated_at) "
            "SELECT t.channel, t.chat_id, t.user_id, CAST(t.data AS JSON), CAST(:now AS TIMESTAMPTZ) "
            "FROM unnest(CAST(:s_channel AS VARCHAR[]), CAST(:s_chat AS VARCHAR[]), CAST(:s_user AS VARCHAR[]), CAST(:s_data AS TEXT[])) "
            "WITH ORDINALITY AS t(channel, chat_id, user_id, data, ord) ORDER BY t.ord "
            "ON CONFLICT (channel, chat_id, user_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at RETURNING 1)"
        )
    counted = [p for p in _STATS_ORDER if p in parts]
    if any(p in parts for p in ("stat_messages", "stat_messages_monthly", "stat_topics", "stat_stuck", "stat_seen")):
        ctes.append("h AS (SELECT code, commune_code FROM hamlets WHERE code = ANY(CAST(:hamlets AS VARCHAR[])))")

    def gate() -> str:
        return f" AND (SELECT count(*) FROM {before}) >= 0" if before else ""

    for part in counted:
        if part == "stat_messages":
            ctes.append(_counter("sm", "stat_messages", "m", [("day", "DATE"), ("channel", "VARCHAR"), ("outcome", "VARCHAR")], gate()))
            before = "sm"
        elif part == "stat_messages_monthly":
            ctes.append(_counter("smm", "stat_messages_monthly", "mm", [("month", "DATE"), ("outcome", "VARCHAR")], gate()))
            before = "smm"
        elif part == "stat_topics":
            ctes.append(_counter("stp", "stat_topics", "t", [("day", "DATE"), ("topic", "VARCHAR")], gate()))
            before = "stp"
        elif part == "stat_stuck":
            ctes.append(_counter("sst", "stat_stuck", "k", [("day", "DATE"), ("step", "VARCHAR")], gate()))
            before = "sst"
        elif part == "stat_seen":
            ctes.append(
                "sd AS (INSERT INTO stat_seen_daily (what, hamlet_code, day, channel, ref) "
                "SELECT t.what, t.hamlet, t.day, t.channel, t.ref FROM unnest(CAST(:v_what AS VARCHAR[]), "
                "CAST(:v_hamlet AS VARCHAR[]), CAST(:v_day AS DATE[]), CAST(:v_channel AS VARCHAR[]), CAST(:v_ref AS VARCHAR[])) "
                f"WITH ORDINALITY AS t(what, hamlet, day, channel, ref, ord) WHERE true{gate()} ORDER BY t.ord "
                "ON CONFLICT (what, hamlet_code, day, channel, ref) DO NOTHING RETURNING 1)"
            )
            before = "sd"
            # Only the rows inserted now come back: each is one more person in that month's count.
            ctes.append(
                "smo AS (INSERT INTO stat_seen_monthly (scope, month, what, channel, ref) "
                "SELECT sc.scope, t.month, t.what, t.channel, t.ref FROM unnest(CAST(:v_what AS VARCHAR[]), "
                "CAST(:v_hamlet AS VARCHAR[]), CAST(:v_month AS DATE[]), CAST(:v_channel AS VARCHAR[]), CAST(:v_ref AS VARCHAR[])) "
                f"AS t(what, hamlet, month, channel, ref) {_SCOPES} WHERE sc.scope IS NOT NULL{gate()} "
                "GROUP BY sc.scope, t.month, t.what, t.channel, t.ref "
                'ORDER BY sc.scope COLLATE "C", t.month, t.what COLLATE "C", t.channel COLLATE "C", t.ref COLLATE "C" '
                "ON CONFLICT (scope, month, what, channel, ref) DO NOTHING RETURNING scope, month, what, channel)"
            )
            ctes.append(
                "sp AS (INSERT INTO stat_people AS x (scope, month, what, channel, n) "
                "SELECT scope, month, what, channel, count(*) FROM smo GROUP BY scope, month, what, channel "
                'ORDER BY scope COLLATE "C", month, what COLLATE "C", channel COLLATE "C" '
                "ON CONFLICT (scope, month, what, channel) DO UPDATE SET n = x.n + excluded.n RETURNING 1)"
            )
            before = "sp"
        elif part == "question_wordings":
            ctes.append(
                "qw AS (INSERT INTO question_wordings AS x (text_hash, text, n, last_at) "
                "SELECT t.hash, t.question, t.n, t.at FROM unnest(CAST(:w_hash AS VARCHAR[]), CAST(:w_text AS TEXT[]), "
                "CAST(:w_n AS INTEGER[]), CAST(:w_at AS TIMESTAMPTZ[])) WITH ORDINALITY AS t(hash, question, n, at, ord) "
                f"WHERE true{gate()} ORDER BY t.ord "
                "ON CONFLICT (text_hash) DO UPDATE SET n = x.n + excluded.n, last_at = greatest(x.last_at, excluded.last_at) RETURNING 1)"
            )
            before = "qw"
        elif part == "stat_unanswered":
            ctes.append(
                "su AS (INSERT INTO stat_unanswered AS x (hamlet_code, day, text_hash, group_id, n, last_at) "
                "SELECT t.hamlet, t.day, t.hash, (SELECT w.group_id FROM question_wordings w WHERE w.text_hash = t.hash), t.n, t.at "
                "FROM unnest(CAST(:u_hamlet AS VARCHAR[]), CAST(:u_day AS DATE[]), CAST(:u_hash AS VARCHAR[]), "
                "CAST(:u_n AS INTEGER[]), CAST(:u_at AS TIMESTAMPTZ[])) WITH ORDINALITY AS t(hamlet, day, hash, n, at, ord) "
                f"WHERE true{gate()} ORDER BY t.ord "
                "ON CONFLICT (hamlet_code, day, text_hash) DO UPDATE SET n = x.n + excluded.n, "
                "last_at = greatest(x.last_at, excluded.last_at), group_id = coalesce(x.group_id, excluded.group_id) RETURNING 1)"
            )
            before = "su"
    selects: list[str] = []
    if "pending" in parts:
        # The same snapshot as the insert below: the rows pending before it.
        ctes.append(
            "pe AS (SELECT o.channel, o.chat_id, o.id FROM outbox o WHERE o.status = 'pending' AND (o.channel, o.chat_id) IN "
            "(SELECT * FROM unnest(CAST(:p_channel AS VARCHAR[]), CAST(:p_chat AS VARCHAR[]))))"
        )
        selects.append("SELECT CAST('p' AS TEXT), CAST(channel AS VARCHAR), CAST(chat_id AS VARCHAR), CAST(id AS BIGINT) FROM pe")
    if "outbox" in parts:
        # Ids are drawn in the ORDER BY's order (as SQLAlchemy's INSERT..SELECT..ORDER BY relies on).
        ctes.append(
            "ob AS (INSERT INTO outbox (channel, chat_id, user_id, kind, call, status, attempts, next_attempt_at, created_at) "
            "SELECT t.channel, t.chat_id, t.user_id, CAST(:o_kind AS VARCHAR), CAST(t.call AS JSON), 'pending', 0, "
            "CAST(:now AS TIMESTAMPTZ), CAST(:now AS TIMESTAMPTZ) "
            "FROM unnest(CAST(:o_channel AS VARCHAR[]), CAST(:o_chat AS VARCHAR[]), CAST(:o_user AS VARCHAR[]), CAST(:o_call AS TEXT[])) "
            "WITH ORDINALITY AS t(channel, chat_id, user_id, call, ord) ORDER BY t.ord RETURNING id)"
        )
        selects.append("SELECT CAST('o' AS TEXT), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(id AS BIGINT) FROM ob")
    if not selects:
        selects.append("SELECT CAST('-' AS TEXT), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS BIGINT) WHERE false")
    return text("WITH " + ",\n".join(ctes) + "\n" + " UNION ALL ".join(selects))
