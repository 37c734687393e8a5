"""Load benchmark of the message pipeline against the reference ceiling (issue 11).

This process is the platform: it posts Telegram-shaped webhook updates (loopback only) and runs the fake
Bot API that the targets send their replies to, so an update counts as handled when its first reply
arrives ("end to end": POST to reply received). Targets run in their own processes:
  ceiling  ../shared/bench/ceiling.py (bare aiohttp + one transaction + one sendMessage)
  bot      `cccd-bot serve` (one or more processes; this process balances round-robin)
Ceiling and bot alternate on the same database kind (ceiling, bot, ceiling, bot, ...); the figure that
holds on a noisy machine is the median of the per-pair ratios.

The mix: 5,000 private users each walking a session (/start, the nine-step guide by button presses,
FAQ questions typed, /menu) and 100 hamlet groups asking with /cauhoi; one update outstanding per chat,
as people wait for the answer. The ceiling cannot read button presses: it gets them as text messages.

Closed loop (`--conc` workers, like wrk -c) gives the peak; `--open-rate` posts at a fixed arrival rate
(open loop, e.g. half the peak) and reports latency there; `--soak` samples the bot's RSS.

usage:
  python bench/load.py --db sqlite --procs 1 --pairs 3 --duration 15
  python bench/load.py --db postgresql --procs 2 --pairs 3 --duration 15
  python bench/load.py --db postgresql --target bot --open-rate 150 --duration 30
  python bench/load.py --db sqlite --target bot --open-rate 100 --soak 600
  python bench/load.py --db sqlite --target bot --duration 20 --profile py-spy
  python bench/load.py --db postgresql --target bot --open-rate 50 --duration 180 --soak --memprobe /tmp/mem
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.bot_process import HOOK_PATH, SECRET, TOKEN, bot_env  # noqa: E402  (the same processes as the fault tests)

FAULTS = ("kill", "pg-restart", "pg-unreachable", "api-429", "api-5xx", "api-timeout", "twins")  # bench/load_faults.py
CEILING = ROOT.parent.parent / "shared" / "bench" / "ceiling.py"
if not CEILING.exists():
    CEILING = Path("/work/shared/bench/ceiling.py")
BOT_USER = {"id": 123, "is_bot": True, "first_name": "Trợ lý", "username": "cccd_bench_bot"}
PG_ADMIN = os.environ.get("CCCD_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("CCCD_BENCH_PG_DB", "cccd_bench_pipeline")
PORT_BASE = int(os.environ.get("CCCD_BENCH_PORT_BASE", "6000"))
USERS, GROUPS = 5000, 100
GENERATOR = psutil.Process()


# -- the platform: the fake Bot API -----------------------------------------------------------------


class FakeBotApi:
    """Answers every Bot API method; notes when each chat's reply arrives."""

    def __init__(self, fail_rate: float = 0.0) -> None:
        self.waiters: dict[int, asyncio.Future] = {}
        self.replies = 0
        self.methods: collections.Counter[str] = collections.Counter()
        self.message_id = itertools.count(1)
        self.fail_rate = fail_rate

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.methods[method] += 1
        if method == "getMe":
            return web.json_response({"ok": True, "result": BOT_USER})
        if method in ("sendMessage", "sendPhoto"):
            body = await request.read()
            params = json.loads(body) if body[:1] == b"{" else dict((await request.post()).items())
            if self.fail_rate and random.random() < self.fail_rate:
                return web.json_response({"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}, status=429)
            chat_id = int(params.get("chat_id"))
            self.replies += 1
            waiter = self.waiters.pop(chat_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(time.perf_counter())
            chat = {"id": chat_id, "type": "private" if chat_id > 0 else "group", "first_name": "Lan", "title": "Thôn"}
            return web.json_response(
                {"ok": True, "result": {"message_id": next(self.message_id), "date": int(time.time()), "chat": chat, "from": BOT_USER, "text": "ok"}}
            )
        if method == "getChatMember":
            return web.json_response({"ok": True, "result": {"status": "member", "user": {"id": 1, "is_bot": False, "first_name": "A"}}})
        return web.json_response({"ok": True, "result": True})

    async def start(self, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner


# -- the people: a realistic mix --------------------------------------------------------------------


def faq_questions() -> list[str]:
    out = []
    for name in ("faq_card.yaml", "faq_procedure.yaml"):
        data = yaml.safe_load((ROOT / "bot" / "content" / name).read_text(encoding="utf-8"))
        for topic in data.get("topics", []):
            out.extend(str(e) for e in topic.get("examples", [])[:6])
    random.Random(7).shuffle(out)
    return out


SESSION = ["/start", "cb:m", "/huongdan", "cb:g:n", "cb:g:n", "faq", "cb:g:n", "cb:g:n", "faq", "/menu", "faq", "cb:g:n"]


@dataclass
class People:
    questions: list[str]
    cursor: dict[int, int] = field(default_factory=dict)
    update_id: itertools.count = field(default_factory=lambda: itertools.count(1_000_000 + random.randrange(10**9)))
    message_id: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        users = [100_000 + i for i in range(USERS)]
        groups = [-1_000_000 - i for i in range(GROUPS)]
        # About one update in seven comes from a group.
        self.actors = users + groups * 7
        random.Random(11).shuffle(self.actors)
        self.busy: set[int] = set()
        self._next = itertools.cycle(self.actors)
        # People are at every point of their session from the start, so that each trial (a few thousand
        # updates, less than one per person) gets the whole mix, not the next step of everybody's session.
        rng = random.Random(13)
        self.cursor = {user: rng.randrange(len(SESSION)) for user in users}

    def next_chat(self) -> int | None:
        for _ in range(len(self.actors)):
            chat = next(self._next)
            if chat not in self.busy:
                return chat
        return None

    def update(self, chat: int, for_ceiling: bool) -> dict:
        now = int(time.time())
        if chat < 0:
            user = {"id": 100_000 + random.randrange(USERS), "is_bot": False, "first_name": "Lan"}
            text = "/cauhoi " + random.choice(self.questions)
            msg = {"message_id": next(self.message_id), "date": now, "chat": {"id": chat, "type": "group", "title": "Thôn"}, "from": user, "text": text,
                   "entities": [{"type": "bot_command", "offset": 0, "length": 7}]}
            return {"update_id": next(self.update_id), "message": msg}
        step = self.cursor.get(chat, 0)
        self.cursor[chat] = (step + 1) % len(SESSION)
        what = SESSION[step]
        user = {"id": chat, "is_bot": False, "first_name": "Lan"}
        private = {"id": chat, "type": "private", "first_name": "Lan"}
        if what.startswith("cb:") and not for_ceiling:
            shown = {"message_id": next(self.message_id), "date": now, "chat": private, "from": BOT_USER, "text": "…"}
            return {"update_id": next(self.update_id), "callback_query": {"id": str(next(self.update_id)), "from": user, "chat_instance": "c", "message": shown, "data": what[3:]}}
        text = random.choice(self.questions) if what == "faq" else ("/menu" if what.startswith("cb:") else what)
        msg = {"message_id": next(self.message_id), "date": now, "chat": private, "from": user, "text": text}
        if text.startswith("/"):
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return {"update_id": next(self.update_id), "message": msg}


# -- targets ----------------------------------------------------------------------------------------


def reset_database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        path = workdir / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return f"sqlite+aiosqlite:///{path}"

    async def reset() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB):
                await conn.execute(f'CREATE DATABASE "{PG_DB}"')
        finally:
            await conn.close()
        base = PG_ADMIN.rsplit("/", 1)[0]
        conn = await asyncpg.connect(f"{base}/{PG_DB}")
        try:
            await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
        finally:
            await conn.close()

    asyncio.run(reset())
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{PG_DB}"


class Target:
    """One or more server processes under load."""

    def __init__(self, kind: str, procs: list[subprocess.Popen], ports: list[int]):
        self.kind = kind
        self.procs = procs
        self.ports = ports
        self.urls = [f"http://127.0.0.1:{p}{HOOK_PATH}" for p in ports]
        self.ps = [psutil.Process(p.pid) for p in procs]

    def cpu(self) -> list[float]:
        """CPU seconds (user + system) of each process so far, and last this load generator's own."""
        out = []
        for p in (*self.ps, GENERATOR):
            try:
                t = p.cpu_times()
                out.append(t.user + t.system)
            except psutil.NoSuchProcess:
                out.append(0.0)
        return out

    def run_queue_wait(self) -> list[float]:
        """Seconds each process's threads spent runnable but waiting for a CPU so far (/proc/<pid>/task/*/schedstat):
        how much of the latency is queueing for a saturated CPU rather than work or I/O."""
        out = []
        for p in self.ps:
            total = 0
            try:
                for task in os.listdir(f"/proc/{p.pid}/task"):
                    try:
                        with open(f"/proc/{p.pid}/task/{task}/schedstat") as f:
                            total += int(f.read().split()[1])
                    except (OSError, IndexError, ValueError):
                        pass
            except OSError:
                pass
            out.append(total / 1e9)
        return out

    def rss_mb(self) -> list[float]:
        out = []
        for p in self.ps:
            try:
                out.append(p.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                out.append(0.0)
        return out

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_ceiling(db_url: str, api_port: int, port: int, log) -> Target:
    cmd = [sys.executable, str(CEILING), "--port", str(port), "--db", db_url, "--sink", f"http://127.0.0.1:{api_port}/bot{TOKEN}"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    return Target("ceiling", [proc], [port])


def with_root(env: dict[str, str]) -> dict[str, str]:
    """The bot's code from this checkout: `.venv/bin/cccd-bot` imports `bot` from wherever the venv was
    installed from (an editable install of another worktree), not from its working directory."""
    paths = [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


def start_bot(db_url: str, api_port: int, ports: list[int], log, env_extra: dict | None = None, wrap: list[str] | None = None) -> Target:
    exe = str(ROOT / ".venv" / "bin" / "cccd-bot")
    procs = []
    for i, port in enumerate(ports):
        cmd = (wrap or []) + [exe, "serve", "--port", str(port)]
        env = bot_env(db_url, f"http://127.0.0.1:{api_port}/bot", port, f"bench-{i}", extra=env_extra)
        procs.append(subprocess.Popen(cmd, env=with_root(env), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
    return Target("bot", procs, ports)


async def wait_ready(target: Target, api: FakeBotApi, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        for port in target.ports:
            path = "/readyz" if target.kind == "bot" else "/healthz"
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{target.kind} on {port} not ready")
                try:
                    async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
    if target.kind == "bot":
        while api.methods["setWebhook"] < len(target.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the bot never set its webhook")
            await asyncio.sleep(0.1)


async def wal_stats() -> tuple[float, float] | None:
    """PostgreSQL's WAL written so far (bytes, full-page images), the whole cluster's: what each COMMIT waits to
    flush. Other databases on the cluster add theirs; with nothing else writing, it is the target's."""
    if not os.environ.get("BENCH_DB_IS_PG"):
        return None
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        row = await conn.fetchrow("SELECT wal_bytes, wal_fpi FROM pg_stat_wal")
        return float(row["wal_bytes"]), float(row["wal_fpi"])
    finally:
        await conn.close()


async def db_counts(target: Target) -> tuple[float, float]:
    """Statements and transactions the bot processes sent so far (from /metrics)."""
    if target.kind != "bot":
        return 0.0, 0.0
    statements = transactions = 0.0
    async with aiohttp.ClientSession() as http:
        for port in target.ports:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                body = await r.text()
            statements += float(re.search(r"^cccd_db_statements_total (\S+)", body, re.M).group(1))
            transactions += float(re.search(r"^cccd_db_transactions_total (\S+)", body, re.M).group(1))
    return statements, transactions


# -- driving load -----------------------------------------------------------------------------------


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    webhook: list[float] = field(default_factory=list)
    errors: collections.Counter = field(default_factory=collections.Counter)
    done: int = 0
    # (arrival in seconds since the window opened, end to end seconds) of each update handled: where the tail sits
    timeline: list[tuple[float, float]] = field(default_factory=list)
    opened: float = field(default_factory=time.perf_counter)


async def one_update(http, target: Target, api: FakeBotApi, people: People, chat: int, win: Window | None, rr: itertools.cycle, t0: float | None = None) -> None:
    people.busy.add(chat)
    try:
        update = people.update(chat, for_ceiling=target.kind == "ceiling")
        waiter = asyncio.get_running_loop().create_future()
        api.waiters[chat] = waiter
        t0 = t0 if t0 is not None else time.perf_counter()
        try:
            async with http.post(next(rr), json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as resp:
                await resp.read()
                status = resp.status
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        if win is not None:
            win.webhook.append(time.perf_counter() - t0)
        if status != 200:
            api.waiters.pop(chat, None)
            if win is not None:
                win.errors[str(status)] += 1
            return
        try:
            t1 = await asyncio.wait_for(waiter, 10)
        except asyncio.TimeoutError:
            api.waiters.pop(chat, None)
            if win is not None:
                win.errors["no reply in 10 s"] += 1
            return
        if win is not None:
            win.latencies.append(t1 - t0)
            win.timeline.append((t0 - win.opened, t1 - t0))
            win.done += 1
    finally:
        people.busy.discard(chat)


async def closed_loop(target: Target, api: FakeBotApi, people: People, conc: int, warmup: float, duration: float) -> dict:
    rr = itertools.cycle(target.urls)
    state = {"win": None}
    stop_at = time.perf_counter() + warmup + duration

    async def worker(http) -> None:
        while time.perf_counter() < stop_at:
            chat = people.next_chat()
            if chat is None:
                await asyncio.sleep(0.001)
                continue
            await one_update(http, target, api, people, chat, state["win"], rr)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        workers = [asyncio.create_task(worker(http)) for _ in range(conc)]
        await asyncio.sleep(warmup)
        win = state["win"] = Window()
        cpu0, (st0, tx0), t_start, rq0 = target.cpu(), await db_counts(target), time.perf_counter(), target.run_queue_wait()
        await asyncio.sleep(duration)
        cpu1, (st1, tx1), elapsed, rq1 = target.cpu(), await db_counts(target), time.perf_counter() - t_start, target.run_queue_wait()
        state["win"] = None
        await asyncio.gather(*workers)
    return summarize(target, win, elapsed, [b - a for a, b in zip(cpu0, cpu1)], st1 - st0, tx1 - tx0, [b - a for a, b in zip(rq0, rq1)])


async def open_loop(target: Target, api: FakeBotApi, people: People, rate: float, warmup: float, duration: float, soak_every: float = 0.0,
                    timeline: Path | None = None) -> dict:
    rr = itertools.cycle(target.urls)
    tasks: set[asyncio.Task] = set()
    rss_samples: list[tuple[float, list[float]]] = []
    lags: list[float] = []
    probe = asyncio.create_task(loop_lag(lags))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        start = time.perf_counter()
        win: Window | None = None
        cpu0: list[float] = []
        st0 = tx0 = 0.0
        wal0 = None
        n = 0
        next_rss = start
        while True:
            now = time.perf_counter()
            if win is None and now - start >= warmup:
                win = Window()
                cpu0, (st0, tx0), t_start, rq0 = target.cpu(), await db_counts(target), time.perf_counter(), target.run_queue_wait()
                wal0 = await wal_stats()
            if now - start >= warmup + duration:
                break
            if soak_every and now >= next_rss:
                rss_samples.append((round(now - start, 1), [round(x, 1) for x in target.rss_mb()]))
                next_rss += soak_every
            due = start + n / rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            n += 1
            chat = people.next_chat()
            if chat is None:
                if win is not None:
                    win.errors["no idle chat"] += 1
                continue
            task = asyncio.create_task(one_update(http, target, api, people, chat, win, rr, t0=due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elapsed = time.perf_counter() - t_start
        cpu1, (st1, tx1), rq1 = target.cpu(), await db_counts(target), target.run_queue_wait()
        wal1 = await wal_stats()
        probe.cancel()
        await asyncio.gather(*tasks)
    result = summarize(target, win, elapsed, [b - a for a, b in zip(cpu0, cpu1)], st1 - st0, tx1 - tx0, [b - a for a, b in zip(rq0, rq1)])
    result["offered_per_s"] = rate
    # This process's own event loop: how late a 5 ms sleep woke (posts and the fake Bot API's replies wait as long).
    result["generator_lag_p50_p99_max_ms"] = [round(pct(lags, 50) * 1000, 1), round(pct(lags, 99) * 1000, 1), round(max(lags, default=0) * 1000, 1)]
    result["tail"] = tail_shape(win)
    if wal0 and wal1:
        result["wal_bytes_fpi_per_update_cluster"] = [round((wal1[0] - wal0[0]) / max(win.done, 1)), round((wal1[1] - wal0[1]) / max(win.done, 1), 2)]
    if rss_samples:
        result["rss_samples"] = rss_samples
    if timeline is not None:
        timeline.parent.mkdir(parents=True, exist_ok=True)
        timeline.write_text(json.dumps({"lags": lags, "timeline": win.timeline, "opened": win.opened}))
    return result


async def loop_lag(out: list[float], every: float = 0.005) -> None:
    while True:
        t = time.perf_counter()
        await asyncio.sleep(every)
        out.append(time.perf_counter() - t - every)


def tail_shape(win: Window, bucket: float = 0.1) -> dict:
    """Stalls or queueing? The updates over the p99, by the 100 ms of arrival they fall in: a few buckets holding
    most of them is a stall hitting everything in flight; many buckets with one or two each is queueing."""
    if not win.timeline:
        return {}
    p99 = pct([lat for _, lat in win.timeline], 99)
    slow = collections.Counter(int(t / bucket) for t, lat in win.timeline if lat >= p99)
    n = sum(slow.values())
    top = slow.most_common(5)
    return {
        "over_p99": n,
        "buckets_holding_them": len(slow),
        "share_in_top5_buckets": round(sum(c for _, c in top) / max(n, 1), 2),
        "top5_at_s": [(round(b * bucket, 1), c) for b, c in top],
    }


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summarize(target: Target, win: Window, elapsed: float, cpus: list[float], statements: float, transactions: float, waits: list[float] = ()) -> dict:
    done = max(win.done, 1)
    cpus, generator = cpus[:-1], cpus[-1]
    cpu = sum(cpus)
    out = {
        "target": target.kind,
        "procs": len(target.procs),
        "updates_per_s": round(win.done / elapsed, 1),
        "p50_ms": round(pct(win.latencies, 50) * 1000, 1),
        "p99_ms": round(pct(win.latencies, 99) * 1000, 1),
        "webhook_p50_ms": round(pct(win.webhook, 50) * 1000, 1),
        "cpu_ms_per_update": round(cpu / done * 1000, 2),
        "cpu_share_by_proc": [round(c / elapsed, 2) for c in cpus],  # CPU seconds per second, each process
        "generator_cpu_share": round(generator / elapsed, 2),  # this process: the platform (webhook posts, fake Bot API)
        # Seconds per second each process's threads waited for a CPU while runnable (0.5: half a thread queued all along).
        "run_queue_wait_share_by_proc": [round(w / elapsed, 2) for w in waits],
        "errors": dict(win.errors),
        "rss_mb": [round(x, 1) for x in target.rss_mb()],
    }
    if target.kind == "bot":
        out["statements_per_update"] = round(statements / done, 2)
        out["round_trips_per_update"] = round((statements + 2 * transactions) / done, 2)
    return out


# -- profiling --------------------------------------------------------------------------------------

CATEGORIES = (
    ("sqlalchemy", ("sqlalchemy/",)),
    ("asyncpg/aiosqlite driver", ("asyncpg/", "aiosqlite/", "sqlite3/")),
    ("PTB + httpx", ("telegram/", "httpx/", "httpcore/")),
    ("aiohttp server", ("aiohttp/web_",)),
    ("aiohttp client", ("aiohttp/client", "aiohttp/connector")),
    ("matcher (FAQ)", ("bot/matcher.py", "rapidfuzz", "bm25s", "bot/normalize.py")),
    ("json", ("json/",)),
    # Where in the bot (SQLAlchemy's greenlet stacks lose their callers: its share is counted above).
    ("webhook handler", ("handle_webhook (",)),
    ("receiving transaction", ("Pipeline._transaction (",)),
    ("core step", ("step (bot/engine.py",)),
    ("sending a call", ("Sender._deliver (",)),
    ("sender scan and marks", ("Sender.dispatch_due (", "Sender._flush (")),
)


def profile_summary(raw: Path) -> dict:
    """Inclusive share of samples per library, from py-spy's collapsed stacks."""
    totals: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        samples += n
        for name, needles in CATEGORIES:
            if any(needle in stack for needle in needles):
                totals[name] += n
    return {name: f"{100 * totals[name] / max(samples, 1):.0f}%" for name, _ in CATEGORIES} | {"samples": samples}


# -- main -------------------------------------------------------------------------------------------


async def trial(kind: str, args, db_url: str, api: FakeBotApi, people: People, log, profile_dir: Path | None) -> dict:
    ports = [PORT_BASE + 10 + i for i in range(args.procs)] if kind == "bot" else [PORT_BASE + 5]
    extra = dict(item.split("=", 1) for item in args.bot_env)
    if args.memprobe and kind == "bot":
        # bench/memprobe/sitecustomize.py, loaded by the bot's interpreters only: what its memory is made of.
        Path(args.memprobe).mkdir(parents=True, exist_ok=True)
        paths = [str(ROOT / "bench" / "memprobe"), *filter(None, [os.environ.get("PYTHONPATH")])]
        extra.update(PYTHONPATH=os.pathsep.join(paths), BENCH_MEMPROBE_DIR=str(Path(args.memprobe).resolve()))
    target = start_ceiling(db_url, PORT_BASE + 1, ports[0], log) if kind == "ceiling" else start_bot(db_url, PORT_BASE + 1, ports, log, extra)
    spy = None
    try:
        await wait_ready(target, api)
        if profile_dir is not None and kind == "bot":
            raw = profile_dir / f"py-spy-{args.db}.txt"
            spy = subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / "py-spy"), "record", "--pid", str(target.procs[0].pid), "--format", "raw", "-o", str(raw),
                 "--duration", str(int(args.warmup + args.duration)), "--rate", "200", "--nonblocking", "--gil"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        if args.open_rate:
            result = await open_loop(target, api, people, args.open_rate, args.warmup, args.duration, soak_every=10.0 if args.soak else 0.0,
                                     timeline=Path(args.timeline) / f"{kind}-{time.strftime('%H%M%S')}.json" if args.timeline else None)
        else:
            result = await closed_loop(target, api, people, args.conc, args.warmup, args.duration)
        if spy is not None:
            spy.wait(60)
            result["profile"] = profile_summary(raw)
        return result
    finally:
        target.stop()


async def fault_run(args) -> None:
    from bench import load_faults

    workdir = Path(tempfile.mkdtemp(prefix="cccd-fault-"))
    try:
        own_cluster = args.fault in ("pg-restart", "pg-unreachable")
        db_url = None if own_cluster else await asyncio.to_thread(reset_database, args.db, workdir)
        result = await load_faults.run(args.fault, "postgresql" if own_cluster else args.db, db_url, workdir,
                                       chats=args.fault_chats, rate=args.fault_rate, procs=args.procs)
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(result, ensure_ascii=False), flush=True)
        print(load_faults.summary_line(result), file=sys.stderr)
    finally:
        if args.keep_logs:
            print(f"server logs: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def main_async(args) -> None:
    random.seed(args.seed)
    if args.db == "postgresql":
        os.environ["BENCH_DB_IS_PG"] = "1"
    if args.fault:
        await fault_run(args)
        return
    workdir = Path(tempfile.mkdtemp(prefix="cccd-load-"))
    log = open(workdir / "servers.log", "w")
    api = FakeBotApi()
    runner = await api.start(PORT_BASE + 1)
    people = People(faq_questions())
    results: list[dict] = []
    try:
        db_url = await asyncio.to_thread(reset_database, args.db, workdir)
        if args.target == "bot":
            # the bot's schema and hamlets once; the run then measures handling only
            env = bot_env(db_url, f"http://127.0.0.1:{PORT_BASE + 1}/bot", PORT_BASE + 10, "bench-0")
            subprocess.run([str(ROOT / ".venv" / "bin" / "cccd-bot"), "hamlets", "import", str(ROOT / "bot" / "content" / "hamlets_example.csv")],
                           env=with_root(env), check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        if args.half_peak:
            # "Half the bot's own peak", measured in this run: a closed-loop trial of the bot first.
            peak = await trial("bot", argparse.Namespace(**{**vars(args), "open_rate": 0.0, "soak": False}), db_url, api, people, log, None)
            peak.update(db=args.db, role="peak (closed loop)", load_average=[round(x, 2) for x in os.getloadavg()])
            print(json.dumps(peak, ensure_ascii=False), flush=True)
            args.open_rate = round(peak["updates_per_s"] / 2, 1)
        kinds = ["ceiling", "bot"] * args.pairs if args.target == "both" else [args.target] * args.pairs
        if args.target == "both":
            env = bot_env(db_url, f"http://127.0.0.1:{PORT_BASE + 1}/bot", PORT_BASE + 10, "bench-0")
            subprocess.run([str(ROOT / ".venv" / "bin" / "cccd-bot"), "hamlets", "import", str(ROOT / "bot" / "content" / "hamlets_example.csv")],
                           env=with_root(env), check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        for i, kind in enumerate(kinds):
            profile_dir = workdir if (args.profile and i == len(kinds) - 1) else None
            result = await trial(kind, args, db_url, api, people, log, profile_dir)
            result["db"] = args.db
            result["load_average"] = [round(x, 2) for x in os.getloadavg()]
            results.append(result)
            print(json.dumps(result, ensure_ascii=False), flush=True)
    finally:
        await runner.cleanup()
        log.close()
    if args.target == "both":
        ceilings = [r for r in results if r["target"] == "ceiling"]
        bots = [r for r in results if r["target"] == "bot"]
        ratios = [b["updates_per_s"] / c["updates_per_s"] for c, b in zip(ceilings, bots) if c["updates_per_s"]]
        summary = {
            "db": args.db,
            "bot_procs": args.procs,
            "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
            "ratios": [round(r, 3) for r in ratios],
            "bot_updates_per_s_median": statistics.median(b["updates_per_s"] for b in bots),
            "ceiling_updates_per_s_median": statistics.median(c["updates_per_s"] for c in ceilings),
        }
        if args.open_rate:
            summary.update(
                offered_per_s=args.open_rate,
                bot_p50_p99_ms=[(b["p50_ms"], b["p99_ms"]) for b in bots],
                ceiling_p50_p99_ms=[(c["p50_ms"], c["p99_ms"]) for c in ceilings],
                p99_ratio_median=round(statistics.median(b["p99_ms"] / c["p99_ms"] for c, b in zip(ceilings, bots)), 2),
            )
        print(json.dumps({"summary": summary}), flush=True)
    if args.keep_logs:
        print(f"server logs: {workdir / 'servers.log'}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--procs", type=int, default=1, help="bot processes (PostgreSQL only for more than one)")
    parser.add_argument("--target", choices=("both", "bot", "ceiling"), default="both")
    parser.add_argument("--pairs", type=int, default=3, help="trials of each target, alternating")
    parser.add_argument("--conc", type=int, default=32, help="closed loop: concurrent updates in flight")
    parser.add_argument("--open-rate", type=float, default=0.0, help="open loop: updates per second offered")
    parser.add_argument("--half-peak", action="store_true", help="open loop at half the bot's peak, measured first in this run (closed loop)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--soak", action="store_true", help="sample RSS every 10 s (use with --open-rate and a long --duration)")
    parser.add_argument("--profile", choices=("py-spy",), help="profile the last bot trial (py-spy, raw stacks)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bot-env", action="append", default=[], metavar="CCCD_X=VALUE", help="a setting for the bot processes")
    parser.add_argument("--memprobe", metavar="DIR", help="the bot processes write what their memory is made of to DIR every 30 s "
                        "(bench/memprobe/sitecustomize.py; BENCH_MEMPROBE_EVERY, BENCH_MEMPROBE_TRACE=frames through --bot-env; not CCCD_ variables: the bot refuses unknown ones)")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--timeline", metavar="DIR", help="write each open-loop trial's (arrival s, end to end s) per update to DIR")
    parser.add_argument("--fault", choices=FAULTS, help="a fault run instead (bench/load_faults.py): the guide walked by --fault-chats chats while it happens")
    parser.add_argument("--fault-chats", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=100.0, help="fault run: updates per second offered in all")
    args = parser.parse_args()
    if args.procs > 1 and args.db == "sqlite":
        parser.error("several bot processes need --db postgresql")
    if args.fault == "twins" and args.db == "sqlite":
        parser.error("--fault twins needs --db postgresql")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
