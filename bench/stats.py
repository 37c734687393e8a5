"""Benchmark of the officers' dashboard on a large history (issue 12).

Generates query-log rows and guide events over 12 months (1 commune of 30 hamlets, the one measured,
plus 500 other communes of 10 hamlets), builds the daily statistics from them, then measures the p95
of every dashboard page and of the monthly export over HTTP, beside the time of a plain
`SELECT count(*) FROM query_log` in the same run (the baseline: the machine is shared and noisy).
It also measures what keeping the statistics costs when a message is logged.

    .venv/bin/python bench/stats.py --backend postgresql --rows 10000000 --events 2000000
    .venv/bin/python bench/stats.py --backend sqlite --rows 1000000 --events 200000

PostgreSQL: a database (CCCD_BENCH_PG_DB, default `cccd_bench_stats`) is (re)created at
CCCD_BENCH_POSTGRES_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres).
--reuse measures again on the data an earlier run generated: the migrations bring its schema up to date
(building any new statistics tables from the log), and the grouper groups any wording not grouped yet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from bot.catalog import load_valid_catalog  # noqa: E402
from bot.unanswered import Grouper  # noqa: E402
from storage import accounts, logs, registry, stats  # noqa: E402
from storage.db import Database  # noqa: E402

MAIN = "bench_main"
MAIN_HAMLETS = 30
OTHER_COMMUNES = 500
OTHER_HAMLETS = 10
MAIN_USERS = 20_000
OTHER_USERS = 400_000
MONTH = "2026-11"  # the last of the 12 generated months, Dec 2025 - Nov 2026
WORDS = (
    "lam can cuoc o dau bao nhieu tien mat the cap lai doi sai ten ngay sinh con nho tuoi may gio "
    "xa phuong vneid dang nhap khong duoc ma otp het han tai khoan muc 2 anh chup mo"
).split()
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "benchmark password 1"
PG_DB = os.environ.get("CCCD_BENCH_PG_DB", "cccd_bench_stats")


def registry_rows() -> list[registry.Row]:
    rows = [registry.Row(MAIN, "Xã Thử Nghiệm", f"bm_h{i:02d}", f"Thôn {i}") for i in range(1, MAIN_HAMLETS + 1)]
    for c in range(OTHER_COMMUNES):
        for k in range(OTHER_HAMLETS):
            rows.append(registry.Row(f"c{c}", f"Xã {c}", f"c{c}_h{k}", f"Thôn {k + 1}"))
    return rows


def generate_sql(dialect: str, rows: int, events: int, topics: list[str], steps: list[str]) -> list[str]:
    """INSERT ... SELECT statements generating the history inside the database (fast on 2 cores)."""
    n_other = OTHER_COMMUNES * OTHER_HAMLETS
    if dialect == "postgresql":
        rnd = "random()"
        pick = lambda arr, r: f"(ARRAY[{', '.join(repr(a) for a in arr)}])[1 + floor({r} * {len(arr)})::int]"  # noqa: E731
        series = "generate_series(1, {n}) AS i"
        ts = "timestamptz '2025-12-01 00:00:00+07' + (random() * interval '365 days')"
        num = lambda n: f"floor(random() * {n})::int"  # noqa: E731
        cat = "||"
        pad = lambda x: f"lpad(({x})::text, 2, '0')"  # noqa: E731
        txt = lambda x: f"({x})::text"  # noqa: E731
    else:
        rnd = "(abs(random()) % 1000000) / 1000000.0"
        pick = lambda arr, r: f"json_extract('{json.dumps(list(arr))}', '$[' || cast({r} * {len(arr)} as int) || ']')"  # noqa: E731
        series = "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s)"
        ts = "datetime('2025-11-30 17:00:00', '+' || (abs(random()) % 31536000) || ' seconds') || '.000000'"
        num = lambda n: f"(abs(random()) % {n})"  # noqa: E731
        cat = "||"
        pad = lambda x: f"substr('0' || ({x}), -2, 2)"  # noqa: E731
        txt = lambda x: f"cast({x} as text)"  # noqa: E731
    hamlet = (
        f"CASE WHEN main = 1 THEN 'bm_h' {cat} {pad('u % ' + str(MAIN_HAMLETS) + ' + 1')} "
        f"ELSE 'c' {cat} {txt(f'(u % {n_other}) / {OTHER_HAMLETS}')} {cat} '_h' {cat} {txt(f'u % {OTHER_HAMLETS}')} END"
    )
    user = f"CASE WHEN main = 1 THEN 'm' ELSE 'o' END {cat} {txt('u')}"
    words = " || ' ' || ".join(pick(WORDS, rnd) for _ in range(4))
    base = (
        f"SELECT i, CASE WHEN i % 10 = 0 THEN 1 ELSE 0 END AS main, "
        f"CASE WHEN i % 10 = 0 THEN {num(MAIN_USERS)} ELSE {num(OTHER_USERS)} END AS u, "
        f"{rnd} AS r1, {rnd} AS r2, {rnd} AS r3 FROM {series}"
    )
    queries = f"""
        INSERT INTO query_log (created_at, channel, chat_type, chat_ref, hamlet_code, user_ref, text, topic, score, outcome, handling_ms)
        SELECT {ts},
               CASE WHEN r1 < 0.6 THEN 'telegram' WHEN r1 < 0.9 THEN 'zalo_bot' ELSE 'zalo_oa' END,
               CASE WHEN r2 < 0.8 THEN 'private' ELSE 'group' END,
               CASE WHEN r2 < 0.8 THEN {user} ELSE 'g' {cat} {txt('u % 3000')} END,
               {hamlet}, {user},
               CASE WHEN r3 < 0.45 THEN 'lệ phí bao nhiêu' WHEN r3 < 0.70 THEN {words}
                    WHEN r3 < 0.73 THEN '[g:s:' {cat} {pick(steps, rnd)} {cat} ']' ELSE '[g:n]' END,
               CASE WHEN r3 < 0.55 THEN {pick(topics, rnd)} ELSE NULL END,
               0.5,
               CASE WHEN r3 < 0.45 THEN 'answered' WHEN r3 < 0.55 THEN 'choices' WHEN r3 < 0.60 THEN 'asked_back'
                    WHEN r3 < 0.70 THEN 'unanswered' ELSE 'command' END,
               1.0
        FROM ({base.format(n=rows)}) AS g"""
    # Fewer people reach each later step: the step index is skewed towards the first steps.
    step_pick = pick(steps, f"({rnd}) * ({rnd})")
    guide = f"""
        INSERT INTO guide_events (created_at, channel, hamlet_code, user_ref, kind, step, value)
        SELECT {ts}, CASE WHEN r1 < 0.6 THEN 'telegram' ELSE 'zalo_bot' END, {hamlet}, {user},
               CASE WHEN r2 < 0.9 THEN 'step' ELSE 'outcome' END,
               CASE WHEN r2 < 0.9 THEN {step_pick} ELSE NULL END,
               CASE WHEN r2 < 0.9 THEN NULL WHEN r3 < 0.5 THEN 'yes' WHEN r3 < 0.8 THEN 'not_yet' ELSE 'problem' END
        FROM ({base.format(n=events)}) AS g"""
    return [queries, guide]


async def pg_database(reuse: bool) -> str:
    import asyncpg

    admin = os.environ.get("CCCD_BENCH_POSTGRES_URL", PG_DEFAULT)
    conn = await asyncpg.connect(admin.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB)
        if exists and not reuse:
            await conn.execute(f'DROP DATABASE "{PG_DB}"')
        if not exists or not reuse:
            await conn.execute(f'CREATE DATABASE "{PG_DB}"')
    finally:
        await conn.close()
    return admin.rpartition("/")[0] + "/" + PG_DB


async def secondary_indexes(session, backend: str) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the log tables' indexes other than the primary keys."""
    if backend == "postgresql":
        rows = await session.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('query_log', 'guide_events') AND indexname NOT LIKE '%_pkey'"
        ))
    else:
        rows = await session.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('query_log', 'guide_events') AND sql IS NOT NULL"
        ))
    return [(name, ddl) for name, ddl in rows.all()]


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


async def timed(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), p95(samples)


async def measure_logging_cost(db: Database, n: int) -> tuple[float, float]:
    """ms per logged message (one transaction each), with the statistics kept, and with a plain insert."""
    from storage.models import QueryLog

    def fields(i):
        return dict(
            created_at=datetime.now(timezone.utc), channel="telegram", chat_type="private", chat_ref=f"w{i}",
            hamlet_code=f"bm_h{i % 30 + 1:02d}", user_ref=f"w{i % 500}", text="câu hỏi", topic="le_phi", score=0.9,
            outcome="answered", handling_ms=1.0,
        )

    t = time.perf_counter()
    for i in range(n):
        async with db.transaction() as s:
            await logs.add_query(s, **fields(i))
    with_stats = (time.perf_counter() - t) * 1000 / n
    t = time.perf_counter()
    for i in range(n):
        async with db.transaction() as s:
            s.add(QueryLog(**fields(i)))
    plain = (time.perf_counter() - t) * 1000 / n
    return with_stats, plain


async def run(backend: str, rows: int, events: int, repeat: int, reuse: bool) -> dict:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from bot.config import Settings
    from bot.web.app import PREFIX, DashboardConfig, create_dashboard

    catalog = load_valid_catalog()
    if backend == "postgresql":
        url = await pg_database(reuse)
    else:
        folder = Path(os.environ.get("CCCD_BENCH_DIR", tempfile.gettempdir()))
        path = folder / "cccd_bench_stats.sqlite3"
        if not reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{path}"
    db = Database(url)
    t = time.perf_counter()
    await db.migrate()
    result: dict = {"backend": backend, "rows": rows, "events": events, "migrate_s": round(time.perf_counter() - t, 1)}
    print(f"migrated in {result['migrate_s']} s", flush=True)
    async with db.transaction() as s:
        have = (await s.execute(text("SELECT count(*) FROM query_log"))).scalar_one()
    if not (reuse and have >= rows):
        async with db.transaction() as s:
            await registry.import_rows(s, registry_rows())
        topic_ids = sorted(catalog.topics)
        steps = [st.slug for st in catalog.steps]
        t = time.perf_counter()
        # A bulk load: the secondary indexes are built once afterwards instead of row by row.
        async with db.transaction() as s:
            indexes = await secondary_indexes(s, backend)
            for name, _ in indexes:
                await s.execute(text(f"DROP INDEX {name}"))
        for statement in generate_sql(backend, rows, events, topic_ids, steps):
            async with db.transaction() as s:
                if backend == "postgresql":
                    await s.execute(text("SET LOCAL synchronous_commit = off"))
                await s.execute(text(statement))
        print(f"rows inserted in {time.perf_counter() - t:.0f} s", flush=True)
        for name, ddl in indexes:
            async with db.transaction() as s:
                if backend == "postgresql":
                    await s.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
                await s.execute(text(ddl))
        result["generate_s"] = round(time.perf_counter() - t, 1)
        print(f"generated in {result['generate_s']} s", flush=True)
        t = time.perf_counter()
        async with db.transaction() as s:
            await stats.rebuild(s)
        result["rebuild_s"] = round(time.perf_counter() - t, 1)
        print(f"statistics built in {result['rebuild_s']} s", flush=True)
        async with db.transaction() as s:
            await accounts.add(s, "bench", PASSWORD, "admin", None, datetime.now(timezone.utc))
    # What the server does at start and every minute: every wording of an unanswered question in its group.
    t = time.perf_counter()
    grouped = await Grouper().catch_up(db, batch=20_000)
    result["grouping_s"], result["grouped_wordings"] = round(time.perf_counter() - t, 1), grouped
    print(f"grouped {grouped} wordings in {result['grouping_s']} s", flush=True)
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        # After a bulk load or a migration, as autovacuum would do in time: statistics for the planner,
        # and the visibility map, without which index-only scans read every heap page.
        await conn.execute(text("VACUUM (ANALYZE)" if backend == "postgresql" else "ANALYZE"))
    async with db.transaction() as s:
        result["query_log_rows"] = (await s.execute(text("SELECT count(*) FROM query_log"))).scalar_one()
        result["guide_event_rows"] = (await s.execute(text("SELECT count(*) FROM guide_events"))).scalar_one()
        result["stat_rows"] = await stats.total_rows(s)
    print(json.dumps(result), flush=True)

    async def baseline():
        async with db.transaction() as s:
            await s.execute(text("SELECT count(*) FROM query_log"))

    top_id = result["query_log_rows"]

    async def lookup():
        async with db.transaction() as s:
            await s.execute(text("SELECT * FROM query_log WHERE id = :id"), {"id": random.randint(1, top_id)})

    cfg = DashboardConfig(db=db, settings=Settings(_env_file=None, database_url=url), catalog=lambda: catalog)
    app = web.Application()
    app.add_subapp(PREFIX, create_dashboard(cfg))
    pages = {
        "Tổng quan (1 xã)": f"/?month={MONTH}&commune={MAIN}",
        "Tổng quan (tất cả 501 xã)": f"/?month={MONTH}",
        "Thôn (1 xã)": f"/hamlets?month={MONTH}&commune={MAIN}",
        "Hành trình 9 bước (1 xã)": f"/funnel?month={MONTH}&commune={MAIN}",
        "Câu hỏi (1 xã)": f"/topics?month={MONTH}&commune={MAIN}",
        "Chưa trả lời được (1 xã)": f"/unanswered?month={MONTH}&commune={MAIN}",
        "Nội dung": f"/content?commune={MAIN}",
        "Thôn và nhóm (1 xã)": f"/registry?commune={MAIN}",
        "Xuất Excel tháng (1 xã)": f"/export/report.xlsx?month={MONTH}&commune={MAIN}",
        "Xuất Excel tháng (tất cả 501 xã)": f"/export/report.xlsx?month={MONTH}",
    }
    timings = {}
    async with TestClient(TestServer(app)) as client:
        import re

        page = await (await client.get(f"{PREFIX}/login")).text()
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        resp = await client.post(f"{PREFIX}/login", data={"username": "bench", "password": PASSWORD, "csrf": token})
        assert resp.status == 200, resp.status
        await baseline()
        result["load_before"] = os.getloadavg()
        timings["Baseline: SELECT count(*) FROM query_log"] = await timed(baseline, repeat)
        timings["Baseline: one query_log row by id"] = await timed(lookup, repeat)
        for name, path in pages.items():

            async def get(path=path):
                resp = await client.get(PREFIX + path)
                assert resp.status == 200, (path, resp.status)
                await resp.read()

            await get()  # warm: the first request also compiles the templates
            n = max(5, repeat // 4) if "Excel" in name else repeat
            timings[name] = await timed(get, n)
            print(f"{name}: p50 {timings[name][0]:.0f} ms, p95 {timings[name][1]:.0f} ms", flush=True)
        timings["Baseline (again, after the pages)"] = await timed(baseline, repeat)
        timings["Baseline: one row by id (again)"] = await timed(lookup, repeat)
        result["load_after"] = os.getloadavg()
    result["timings_ms"] = {k: [round(v[0], 1), round(v[1], 1)] for k, v in timings.items()}
    with_stats, plain = await measure_logging_cost(db, 300)
    result["log_ms_per_message"] = {"with_statistics": round(with_stats, 2), "plain_insert": round(plain, 2)}
    await db.close()
    return result


def report(result: dict) -> str:
    base = result["timings_ms"]["Baseline: SELECT count(*) FROM query_log"][1]
    load = lambda key: ", ".join(f"{x:.1f}" for x in result.get(key, ()))  # noqa: E731
    lines = [
        f"{result['backend']}: {result['query_log_rows']:,} query-log rows, {result['guide_event_rows']:,} guide events; "
        f"statistics rows {result['stat_rows']}",
        f"load average (1, 5, 15 min) before the pages: {load('load_before')}; after: {load('load_after')}",
        "",
        "| view | p50 ms | p95 ms | p95 / baseline p95 |",
        "|---|---:|---:|---:|",
    ]
    for name, (p50, p95_) in result["timings_ms"].items():
        lines.append(f"| {name} | {p50:.0f} | {p95_:.0f} | {p95_ / base:.2f} |")
    cost = result["log_ms_per_message"]
    lines.append("")
    lines.append(f"Logging one message (own transaction): {cost['with_statistics']} ms with statistics, {cost['plain_insert']} ms plain insert.")
    if "generate_s" in result:
        lines.append(f"Generating the rows took {result['generate_s']} s; building the statistics from them {result['rebuild_s']} s.")
    lines.append(
        f"Migrations {result['migrate_s']} s; grouping {result['grouped_wordings']:,} wordings not grouped yet {result['grouping_s']} s."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="keep the data generated by an earlier run")
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}", flush=True)
    result = asyncio.run(run(args.backend, args.rows, args.events, args.repeat, args.reuse))
    print(json.dumps(result, ensure_ascii=False))
    print(report(result))


if __name__ == "__main__":
    main()
