"""Benchmark the broadcast sender against a fake Telegram Bot API over real HTTP (results in BENCHMARKS.md).

    .venv/bin/python bench/broadcast.py                      # 10,000 recipients at the default cap of 25/s
    .venv/bin/python bench/broadcast.py --recipients 1000 --cap 50

10,000 recipients (9,000 private, 1,000 hamlet groups) in 100 hamlets. The fake server (this process)
answers 5% of sendMessage calls with 429 retry_after, 2% with 500, 1% hang past the client's timeout
(and deliver nothing), 1% with 403 (the chat has blocked the bot, for good). The sender runs as a
separate process (`cccd-bot broadcast send --until-done`), is killed with SIGKILL once when about
40% of the recipients have their message, and is restarted at once; the new process takes the lease
over when the dead one's expires. The fake server counts what it accepted independently of our tables.

While the sender runs, this process plays residents writing to the bot (ChatService.handle on the same
database, one message every 200 ms) and measures their reply latency; the baseline is the same probe
before the broadcast starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import statistics
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
from bot.catalog import load_valid_catalog  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.messages import ChatType, Incoming  # noqa: E402
from bot.service import ChatService  # noqa: E402
from storage import broadcasts as repo  # noqa: E402
from storage import registry  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Chat, User  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramAPI  # noqa: E402

PROBE_TEXTS = ["hướng dẫn", "tiếp", "mất căn cước làm lại thế nào", "chào", "làm căn cước cho con dưới 14 tuổi", "menu"]
GROUP_SPACING, PRIVATE_SPACING = 3.0, 1.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def populate(db: Database, recipients: int, groups: int) -> tuple[dict[int, str], int]:
    """100 hamlets in 10 communes; `groups` groups and the rest private subscribers. Returns chat id -> kind."""
    csv = "commune_code,commune_name,hamlet_code,hamlet_name\n" + "".join(
        f"xa{c},Xã {c},xa{c}_t{h},Thôn {h}\n" for c in range(10) for h in range(10)
    )
    hamlets = [f"xa{c}_t{h}" for c in range(10) for h in range(10)]
    now = datetime.now(timezone.utc)
    kinds: dict[int, str] = {}
    async with db.transaction() as session:
        await registry.import_rows(session, registry.parse_csv(csv.encode()))
        for c in range(10):
            # Quiet hours off for the run (they are tested with a fake clock in tests/broadcasts).
            await repo.set_policy(session, f"xa{c}", quiet_start="00:00", quiet_end="00:00")
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
    return kinds, len(hamlets)


async def probe(service: ChatService, stop: asyncio.Event, out: list[float], interval: float = 0.2) -> None:
    """Residents writing to the bot: one message every `interval`, latency of handling each."""
    i = 0
    while not stop.is_set():
        text = PROBE_TEXTS[i % len(PROBE_TEXTS)]
        user = f"resident-{i % 50}"
        msg = Incoming("console", user, ChatType.PRIVATE, user, "Bà Lan", text, datetime.now(timezone.utc))
        started = time.perf_counter()
        await service.handle(msg)
        out.append((time.perf_counter() - started) * 1000)
        if os.environ.get("BENCH_TRACE") and out[-1] > 300:
            print(f"slow reply {out[-1]:.0f}ms at {time.monotonic():.1f} ({text})", flush=True)
        i += 1
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except asyncio.TimeoutError:
            pass


def start_fake_server() -> tuple[FakeTelegramAPI, asyncio.AbstractEventLoop]:
    """The fake Bot API on its own thread and event loop, so the residents' probe cannot delay its answers."""
    loop = asyncio.new_event_loop()
    holder: dict[str, FakeTelegramAPI] = {}
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        holder["fake"] = loop.run_until_complete(FakeTelegramAPI().start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True, name="fake-telegram").start()
    ready.wait(30)
    return holder["fake"], loop


def spawn_sender(env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "broadcast", "send", "--until-done"],
        cwd=ROOT, env=env, stdout=log, stderr=log,
    )


def accepted_sends(fake: FakeTelegramAPI) -> Counter:
    return Counter(c.params.get("chat_id") for c in fake.calls_of("sendMessage") if not getattr(c, "refused", False))


def pause_union(fake: FakeTelegramAPI, retry_after: float) -> float:
    """Seconds covered by the pauses the server demanded (overlapping 429s counted once)."""
    windows = sorted((c.at, c.at + retry_after) for c in fake.calls_of("sendMessage") if getattr(c, "fault", None) == 429)
    total, end = 0.0, float("-inf")
    for start, stop in windows:
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--cap", type=float, default=25.0, help="the sender's Telegram rate (messages/s)")
    parser.add_argument("--kill-at", type=float, default=0.4, help="SIGKILL when this share of recipients got theirs")
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--db-url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight at once (bounds `unknown`)")
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
    kinds, hamlet_count = await populate(db, args.recipients, args.groups)
    officer, approver = Actor("telegram:1", officer=True), Actor("telegram:2", officer=True)
    now = datetime.now(timezone.utc)
    b = await workflow.create(db, officer, "Thông báo: tổ cấp căn cước lưu động đến thôn vào sáng thứ Bảy. Anh/chị mang theo giấy tờ cần thiết.", Audience("all", channels=("telegram",)), now)
    await workflow.submit(db, officer, b.id, now)
    await workflow.approve(db, approver, b.id, now)

    settings = Settings(_env_file=None, database_url=db_url)
    service = ChatService(db, load_valid_catalog(), settings)
    fake, fake_loop = start_fake_server()
    fake.chaos(rate_429=0.05, rate_5xx=0.02, rate_timeout=0.01, rate_403=0.01, retry_after=args.retry_after, hang=4.0, seed=args.seed)

    # Baseline: residents' reply latency with no broadcast running (same process, same database).
    baseline: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(probe(service, stop, baseline))
    await asyncio.sleep(8)
    stop.set()
    await task

    env = {k: v for k, v in os.environ.items() if not k.startswith("CCCD_")}
    env.update(
        CCCD_DATABASE_URL=db_url,
        CCCD_TELEGRAM_TOKEN=fake.token,
        CCCD_TELEGRAM_BASE_URL=fake.base_url,
        CCCD_BROADCAST_TELEGRAM_RATE=str(args.cap),
        CCCD_BROADCAST_LEASE_TTL=str(args.lease_ttl),
        CCCD_BROADCAST_CONCURRENCY=str(args.concurrency),
        CCCD_BROADCAST_READ_TIMEOUT="1.5",
        CCCD_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    log = open(Path(tmp) / "sender.log", "w")
    during: list[float] = []
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(service, stop, during))
    started = time.monotonic()
    print(f"sender started at {started:.1f}", flush=True)
    proc = spawn_sender(env, log)
    killed_at = None
    while proc.poll() is None and killed_at is None:
        await asyncio.sleep(0.2)
        if len(accepted_sends(fake)) >= args.kill_at * args.recipients:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at = time.monotonic() - started
            print(f"killed the sender (SIGKILL) at {killed_at:.1f}s with {len(accepted_sends(fake))} recipients served", flush=True)
            proc = spawn_sender(env, log)
    while proc.poll() is None:
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    stop.set()
    await probing
    log.close()
    if proc.returncode != 0:
        print(f"sender exited with {proc.returncode}; see {tmp}/sender.log", file=sys.stderr)

    # ---- what the fake server saw, independently of our tables
    accepted = accepted_sends(fake)
    calls = fake.calls_of("sendMessage")
    duplicates = sum(n - 1 for n in accepted.values() if n > 1)
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
    active = (stamps[-1] - stamps[0]) - pause_union(fake, args.retry_after) if stamps else 0.0

    # ---- what our tables say
    async with db.transaction() as session:
        rows = await repo.deliveries(session, b.id)
        status = (await repo.get(session, b.id)).status
    totals = Counter(d.status for d in rows)
    settled = {"failed", "blocked", "no_window", "unknown", "opted_out"}
    lost = 0
    unknown_delivered = 0
    for d in rows:
        got = accepted.get(int(d.chat_id), 0)
        if d.status == "sent" and got == 0:
            lost += 1  # we think it went, the server never accepted it
        elif d.status not in settled and d.status != "sent":
            lost += 1  # never settled: skipped
        if d.status == "unknown" and got:
            unknown_delivered += 1
    lost += max(0, args.recipients - len(rows))
    await db.close()
    asyncio.run_coroutine_threadsafe(fake.close(), fake_loop).result(30)
    fake_loop.call_soon_threadsafe(fake_loop.stop)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {db_url.split(':')[0]}")
    print(f"broadcast status={status}; elapsed={elapsed:.1f}s; requests={len(calls)}; 429={sum(1 for c in calls if getattr(c, 'fault', None) == 429)} "
          f"5xx={sum(1 for c in calls if getattr(c, 'fault', None) == 500)} timeouts={sum(1 for c in calls if getattr(c, 'fault', None) == 'timeout')} "
          f"403={sum(1 for c in calls if getattr(c, 'fault', None) == 403)}")
    print(f"demanded pause={pause_union(fake, args.retry_after):.1f}s; max requests in any 1 s window={window_max} (cap {args.cap:g}); "
          f"accepted messages/s over active time={sum(accepted.values()) / active if active else 0:.2f}")
    print(f"unknown rows actually delivered (per the fake server)={unknown_delivered} of {totals.get('unknown', 0)}; policy: not sent again")
    print(f"reply latency baseline (no broadcast) p50={percentile(baseline, 0.5):.1f}ms p99={percentile(baseline, 0.99):.1f}ms n={len(baseline)}; "
          f"during p50={percentile(during, 0.5):.1f}ms p99={percentile(during, 0.99):.1f}ms n={len(during)}; "
          f"ratio p99={percentile(during, 0.99) / percentile(baseline, 0.99):.2f}")
    throughput = len(calls) / active if active else 0.0
    print(
        f"recipients={len(rows)} sent={totals.get('sent', 0)} failed={totals.get('failed', 0)} blocked={totals.get('blocked', 0)} "
        f"unknown={totals.get('unknown', 0)} lost={lost} duplicates={duplicates} throughput={throughput:.2f}/s cap={args.cap:g}/s "
        f"spacing_violations={violations} reply_p99_ms={percentile(during, 0.99):.1f}"
    )
    return 0 if lost == 0 and duplicates == 0 and violations == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
