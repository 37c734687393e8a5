"""Benchmark a broadcast sent by the server against a fake Telegram Bot API over real HTTP (results in BENCHMARKS.md).

    .venv/bin/python bench/broadcast.py                      # 10,000 recipients at the default cap of 25/s
    .venv/bin/python bench/broadcast.py --recipients 2000 --groups 200

What runs is the deployment: `cccd-bot serve` (role `all`) in a process of its own, its Telegram channel
long-polling the fake Bot API, its broadcast sender sending through the channel's client. 10,000
recipients (9,000 private subscribers, 1,000 hamlet groups) in 100 hamlets of 10 communes. The fake server
(a thread of this process) answers 5% of the broadcast's sendMessage calls with 429 retry_after, 2% with
500, 1% hang past the client's timeout (nothing delivered), 1% with 403 (the chat blocks the bot for good).
The server is killed with SIGKILL once, when 40% of the recipients have their message, and started again
at once. The fake server counts what it accepted per chat, independently of our tables.

Residents write to the bot all along (one message every 200 ms, from 50 private chats, through the fake
server's getUpdates, without faults); a reply's latency is the time from the update being available to
the bot to the fake server receiving the reply's sendMessage. Baseline: the same residents for 30 s with
no broadcast running, in the same run. Messages sent while the server is down (from the kill until the
restarted server polls again) wait for the restart, not for the broadcast: they are reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.broadcasts import workflow  # noqa: E402
from bot.broadcasts.model import Audience  # noqa: E402
from bot.broadcasts.workflow import Actor  # noqa: E402
from storage import broadcasts as repo  # noqa: E402
from storage import registry  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Chat, User  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramAPI  # noqa: E402

PROBE_TEXTS = ["hướng dẫn", "tiếp", "mất căn cước làm lại thế nào", "chào", "làm căn cước cho con dưới 14 tuổi", "menu"]
GROUP_SPACING, PRIVATE_SPACING = 3.0, 1.0
RESIDENTS = [900_000_000 + k for k in range(50)]
COMMUNES = [f"xa{c}" for c in range(10)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def populate(db: Database, recipients: int, groups: int) -> dict[int, str]:
    """100 hamlets in 10 communes; `groups` groups and the rest private subscribers. Returns chat id -> kind."""
    csv = "commune_code,commune_name,hamlet_code,hamlet_name\n" + "".join(
        f"xa{c},Xã {c},xa{c}_t{h},Thôn {h}\n" for c in range(10) for h in range(10)
    )
    hamlets = [f"xa{c}_t{h}" for c in range(10) for h in range(10)]
    now = datetime.now(timezone.utc)
    kinds: dict[int, str] = {}
    async with db.transaction() as session:
        await registry.import_rows(session, registry.parse_csv(csv.encode()))
        for commune in COMMUNES:
            # Quiet hours off for the run (they are tested with a fake clock in tests/broadcasts).
            await repo.set_policy(session, commune, quiet_start="00:00", quiet_end="00:00")
        chat_rows, user_rows = [], []
        for i in range(groups):
            cid = -1_000_000_000 - i
            kinds[cid] = "group"
            chat_rows.append(dict(channel="telegram", external_id=str(cid), type="group", title=f"Nhóm {i}",
                                  hamlet_code=hamlets[i % len(hamlets)], active=True, created_at=now, updated_at=now))
        for i in range(recipients - groups):
            uid = 10_000_000 + i
            kinds[uid] = "private"
            user_rows.append(dict(channel="telegram", external_id=str(uid), hamlet_code=hamlets[i % len(hamlets)],
                                  opted_out=False, active=True, created_at=now, last_seen_at=now))
            chat_rows.append(dict(channel="telegram", external_id=str(uid), type="private", title=None,
                                  hamlet_code=None, active=True, created_at=now, updated_at=now))
        for start in range(0, len(chat_rows), 2000):
            await session.execute(Chat.__table__.insert(), chat_rows[start : start + 2000])
        for start in range(0, len(user_rows), 2000):
            await session.execute(User.__table__.insert(), user_rows[start : start + 2000])
    return kinds


class Fake:
    """The fake Bot API on its own thread and event loop, so that this process's work cannot delay its answers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        holder: dict[str, FakeTelegramAPI] = {}
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            holder["api"] = self.loop.run_until_complete(FakeTelegramAPI().start())
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True, name="fake-telegram").start()
        ready.wait(30)
        self.api = holder["api"]

    def push(self, update: dict) -> None:
        asyncio.run_coroutine_threadsafe(self.api.push_update(update), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


class Residents:
    """Residents writing to the bot in private, one message every `interval`; each push is remembered."""

    def __init__(self, fake: Fake, interval: float):
        self.fake = fake
        self.interval = interval
        self.pushed: list[tuple[int, float]] = []  # (chat id, when it was available to the bot)
        self._n = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            chat = RESIDENTS[self._n % len(RESIDENTS)]
            text = PROBE_TEXTS[self._n % len(PROBE_TEXTS)]
            user = {"id": chat, "is_bot": False, "first_name": "Lan"}
            update = {"message": {"message_id": self._n + 1, "date": int(time.time()), "text": text,
                                  "chat": {"id": chat, "type": "private", "first_name": "Lan"}, "from": user}}
            await asyncio.to_thread(self.fake.push, update)
            self.pushed.append((chat, time.monotonic()))
            self._n += 1
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass


def latencies(api: FakeTelegramAPI, pushed: list[tuple[int, float]]) -> list[tuple[float, float | None]]:
    """(pushed at, ms until the first reply to that chat after it), None when no reply came."""
    replies: dict[int, list[float]] = defaultdict(list)
    for c in api.calls_of("sendMessage"):
        if not getattr(c, "refused", False) and c.params.get("chat_id") in RESIDENTS:
            replies[c.params["chat_id"]].append(c.at)
    out = []
    for chat, at in pushed:
        after = [t for t in replies[chat] if t >= at]
        out.append((at, (min(after) - at) * 1000 if after else None))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_server(env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log)


def polls_after(api: FakeTelegramAPI, t: float) -> float | None:
    """When the bot first asked getUpdates after `t` (a restarted server is receiving again)."""
    later = [c.at for c in api.calls_of("getUpdates") if c.at > t]
    return min(later) if later else None


def pause_union(api: FakeTelegramAPI, retry_after: float) -> float:
    """Seconds covered by the pauses the server demanded (overlapping 429s counted once)."""
    windows = sorted((c.at, c.at + retry_after) for c in api.calls_of("sendMessage") if getattr(c, "fault", None) == 429)
    total, end = 0.0, float("-inf")
    for start, stop in windows:
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


async def wait_for(predicate, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--cap", type=float, default=25.0, help="the sender's Telegram rate (messages/s)")
    parser.add_argument("--kill-at", type=float, default=0.4, help="SIGKILL when this share of recipients got theirs (0: never)")
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--db-url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--lease-ttl", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight at once (bounds `unknown`)")
    parser.add_argument("--probe-interval", type=float, default=0.2)
    parser.add_argument("--baseline", type=float, default=30.0, help="seconds of residents' messages before the broadcast")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-broadcast-")
    db_url = args.db_url or f"sqlite+aiosqlite:///{tmp}/bot.sqlite3"
    if db_url.startswith("postgresql"):
        # A bench database of its own, emptied first (never point this at a real one).
        import asyncpg

        conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
        await conn.close()
    db = Database(db_url)
    await db.migrate()
    kinds = await populate(db, args.recipients, args.groups)

    fake = Fake()
    api = fake.api
    api.chaos(rate_429=0.05, rate_5xx=0.02, rate_timeout=0.01, rate_403=0.01, retry_after=args.retry_after,
              hang=4.0, seed=args.seed, chats=set(kinds))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCCD_")}
    env.update(
        CCCD_DATABASE_URL=db_url,
        CCCD_HOST="127.0.0.1",
        CCCD_PORT=str(port),
        CCCD_TELEGRAM_TOKEN=api.token,
        CCCD_TELEGRAM_BASE_URL=api.base_url,
        CCCD_BROADCAST_TELEGRAM_RATE=str(args.cap),
        CCCD_BROADCAST_LEASE_TTL=str(args.lease_ttl),
        CCCD_BROADCAST_CONCURRENCY=str(args.concurrency),
        CCCD_BROADCAST_READ_TIMEOUT="1.5",
        CCCD_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    log = open(Path(tmp) / "server.log", "w")
    server = spawn_server(env, log)
    if not await wait_for(lambda: polls_after(api, 0.0) is not None or server.poll() is not None, 120):
        print(f"the server did not start; see {tmp}/server.log", file=sys.stderr)
        return 2

    # Baseline: residents' reply latency with no broadcast running.
    residents = Residents(fake, args.probe_interval)
    stop = asyncio.Event()
    probing = asyncio.create_task(residents.run(stop))
    await asyncio.sleep(args.baseline)
    stop.set()
    await probing
    await asyncio.sleep(3)  # the last replies
    baseline = [ms for _, ms in latencies(api, residents.pushed)]
    baseline_missing = sum(1 for ms in baseline if ms is None)
    baseline = [ms for ms in baseline if ms is not None]

    # The broadcast, created and approved as the dashboard or the command line would (another process).
    officer, approver = Actor("telegram:1", officer=True), Actor("telegram:2", officer=True)
    now = datetime.now(timezone.utc)
    text = "Thông báo: tổ cấp căn cước lưu động đến thôn vào sáng thứ Bảy. Anh/chị mang theo giấy tờ cần thiết."
    b = await workflow.create(db, officer, text, Audience("communes", tuple(COMMUNES), channels=("telegram",)), now)
    await workflow.submit(db, officer, b.id, now)
    residents = Residents(fake, args.probe_interval)
    stop = asyncio.Event()
    probing = asyncio.create_task(residents.run(stop))
    started = time.monotonic()
    await workflow.approve(db, approver, b.id, now)
    print(f"broadcast {b.id} approved at {started:.1f}", flush=True)

    def accepted() -> Counter:
        return Counter(c.params.get("chat_id") for c in api.calls_of("sendMessage")
                       if not getattr(c, "refused", False) and c.params.get("chat_id") in kinds)

    killed_at = restarted_at = None
    if args.kill_at > 0:
        await wait_for(lambda: len(accepted()) >= args.kill_at * args.recipients or server.poll() is not None, 7200, 0.5)
        server.send_signal(signal.SIGKILL)
        server.wait()
        killed_at = time.monotonic()
        print(f"killed the server (SIGKILL) at {killed_at - started:.1f}s with {len(accepted())} recipients served", flush=True)
        server = spawn_server(env, log)
        await wait_for(lambda: polls_after(api, killed_at) is not None, 120)
        restarted_at = polls_after(api, killed_at)
        print(f"restarted: polling again {restarted_at - killed_at:.1f}s after the kill", flush=True)

    async def open_left() -> bool:
        async with db.transaction() as session:
            status = (await repo.get(session, b.id)).status
        return status in ("scheduled", "sending")

    while await open_left():
        if server.poll() is not None:
            print(f"the server stopped ({server.returncode}); see {tmp}/server.log", file=sys.stderr)
            break
        await asyncio.sleep(1.0)
    elapsed = time.monotonic() - started
    stop.set()
    await probing
    await asyncio.sleep(3)
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()

    # ---- what the fake server saw, independently of our tables
    got = accepted()
    calls = [c for c in api.calls_of("sendMessage") if c.params.get("chat_id") in kinds]
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    violations = 0
    by_chat: dict[int, list[float]] = defaultdict(list)
    for c in calls:
        by_chat[c.params.get("chat_id")].append(c.at)
    for chat, times in by_chat.items():
        spacing = GROUP_SPACING if kinds.get(chat) == "group" else PRIVATE_SPACING
        times.sort()
        violations += sum(1 for a, b2 in zip(times, times[1:]) if b2 - a < spacing)
    stamps = sorted(c.at for c in calls)
    window_max, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] < t - 1.0:
            j += 1
        window_max = max(window_max, i - j + 1)
    demanded = pause_union(api, args.retry_after)
    span = (stamps[-1] - stamps[0]) if stamps else 0.0
    active = span - demanded
    downtime = (restarted_at - killed_at) if killed_at and restarted_at else 0.0

    during_all = latencies(api, residents.pushed)
    # Messages that waited for the restart: unanswered at the kill, sent while the server was down, or
    # queued behind those (until the restarted server had answered all of them).
    down = (0.0, 0.0)
    if killed_at and restarted_at:
        waiting = [at + ms / 1000 for at, ms in during_all if ms is not None and at <= restarted_at and at + ms / 1000 > killed_at]
        down = (min((at for at, ms in during_all if ms is not None and at + ms / 1000 > killed_at), default=killed_at),
                max(waiting, default=restarted_at))
    during = [ms for at, ms in during_all if ms is not None and not (down[0] <= at <= down[1])]
    held = [ms for at, ms in during_all if ms is not None and down[0] <= at <= down[1]]
    missing = sum(1 for _, ms in during_all if ms is None)
    if os.environ.get("BENCH_TRACE"):  # where the time went
        # Where the time went: the wait after each demanded pause before the next request, the gaps of
        # more than 0.2 s outside pauses, and the tail.
        windows = sorted((c.at, c.at + args.retry_after) for c in calls if getattr(c, "fault", None) == 429)
        after_pause = 0.0
        for start, end in windows:
            nxt = next((t for t in stamps if t >= end), None)
            if nxt is not None and not any(s2 <= nxt <= e2 for s2, e2 in windows if s2 > start):
                after_pause += nxt - end
        covered = lambda t: any(s2 <= t <= e2 for s2, e2 in windows)  # noqa: E731
        gaps = [(b2 - a) for a, b2 in zip(stamps, stamps[1:]) if b2 - a > 0.2 and not covered(a) and not covered(b2)]
        print(f"lost after pauses={after_pause:.1f}s; gaps>0.2s outside pauses: n={len(gaps)} total={sum(gaps):.1f}s; "
              f"tail (last 1% of requests)={stamps[-1] - stamps[int(len(stamps) * 0.99)]:.1f}s")
        slow = sorted(((ms, at) for at, ms in during_all if ms is not None and not (down[0] <= at <= down[1])), reverse=True)[:25]
        print("slowest replies (ms, seconds after the start):", ", ".join(f"{ms:.0f}@{at - started:.1f}" for ms, at in slow))
        if killed_at:
            print(f"kill at {killed_at - started:.1f}, polling again at {restarted_at - started:.1f}")

    # ---- what our tables say
    async with db.transaction() as session:
        rows = await repo.deliveries(session, b.id)
        status = (await repo.get(session, b.id)).status
    totals = Counter(d.status for d in rows)
    settled = {"failed", "blocked", "no_window", "unknown", "opted_out"}
    lost = 0
    unknown_delivered = 0
    for d in rows:
        n = got.get(int(d.chat_id), 0)
        if d.status == "sent" and n == 0:
            lost += 1  # we think it went, the server never accepted it
        elif d.status not in settled and d.status != "sent":
            lost += 1  # never settled: skipped
        if d.status == "unknown" and n:
            unknown_delivered += 1
    lost += max(0, args.recipients - len(rows))
    await db.close()
    fake.close()

    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{db_url.split(':')[0]}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"broadcast status={status}; elapsed={elapsed:.1f}s; requests={len(calls)}; "
          f"429={sum(1 for c in calls if getattr(c, 'fault', None) == 429)} 5xx={sum(1 for c in calls if getattr(c, 'fault', None) == 500)} "
          f"timeouts={sum(1 for c in calls if getattr(c, 'fault', None) == 'timeout')} 403={sum(1 for c in calls if getattr(c, 'fault', None) == 403)}")
    print(f"first to last request={span:.1f}s; demanded pause={demanded:.1f}s; server down {downtime:.1f}s (kill to polling again); "
          f"max requests in any 1 s window={window_max} (cap {args.cap:g}); accepted messages/s over active time={sum(got.values()) / active if active else 0:.2f}")
    print(f"unknown rows actually delivered (per the fake server)={unknown_delivered} of {totals.get('unknown', 0)}; policy: not sent again")
    print(f"reply latency baseline (no broadcast) p50={percentile(baseline, 0.5):.1f}ms p99={percentile(baseline, 0.99):.1f}ms "
          f"n={len(baseline)} unanswered={baseline_missing}; during p50={percentile(during, 0.5):.1f}ms p99={percentile(during, 0.99):.1f}ms "
          f"max={max(during, default=float('nan')):.1f}ms n={len(during)} unanswered={missing}; "
          f"ratio p99={percentile(during, 0.99) / percentile(baseline, 0.99):.2f}; "
          f"waited for the restart ({down[1] - down[0]:.1f}s from the first unanswered at the kill to the last of them answered): "
          f"n={len(held)} p50={percentile(held, 0.5):.0f}ms max={max(held, default=float('nan')):.0f}ms")
    throughput = len(calls) / active if active else 0.0
    print(f"throughput={throughput:.2f}/s = {throughput / args.cap:.1%} of the cap")
    print(
        f"recipients={len(rows)} sent={totals.get('sent', 0)} failed={totals.get('failed', 0)} blocked={totals.get('blocked', 0)} "
        f"unknown={totals.get('unknown', 0)} lost={lost} duplicates={duplicates} throughput={throughput:.2f}/s cap={args.cap:g}/s "
        f"spacing_violations={violations} reply_p99_ms={percentile(during, 0.99):.1f}"
    )
    return 0 if lost == 0 and duplicates == 0 and violations == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
