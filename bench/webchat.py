"""Web chat: what the HTTP channel adds to the core's own time per message.

Runs `cccd-bot serve`'s application with the web chat on, on 127.0.0.1 (a port in 6300-6399), and
plays the same conversations twice in the same run:
  - through the web chat's HTTP API (cookie, limits, JSON, rendering), with aiohttp's client;
  - straight into the core (`ChatService.handle`), the baseline;
each with VISITORS conversations at once, each conversation one message after another. Prints p50 /
p95 per message, messages per second, and the ratio of the two.

    .venv/bin/python bench/webchat.py [--visitors 20] [--messages 30] [--database-url URL]
"""

from __future__ import annotations

import argparse
import collections
import asyncio
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.catalog import load_valid_catalog  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.messages import ChatType, Incoming  # noqa: E402
from bot.server import SERVICE, create_app  # noqa: E402
from storage import registry  # noqa: E402
from storage.db import Database  # noqa: E402

EXAMPLE_CSV = Path(__file__).resolve().parent.parent / "bot" / "content" / "hamlets_example.csv"
# A conversation: the hamlet from the link, the guide, a few steps, questions typed as people type them.
SCRIPT = [
    ("start", {"h": "ngoctrao_tdp02"}),
    ("message", {"payload": "g"}),
    ("message", {"text": "tiếp"}),
    ("message", {"text": "lam can cuoc het bao nhieu tien"}),
    ("message", {"text": "tiếp"}),
    ("message", {"text": "ko nhan dc ma otp"}),
    ("message", {"text": "quay lại"}),
    ("message", {"text": "mất căn cước thì làm lại thế nào"}),
    ("message", {"text": "tiếp"}),
    ("message", {"text": "menu"}),
]


CATALOG = load_valid_catalog()
ERROR = CATALOG.msg("error")
# Messages answered with the core's "something went wrong" (e.g. SQLite's write lock timed out).
FAILED: collections.Counter = collections.Counter()


def _port() -> int:
    for port in range(6300, 6400):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port in 6300-6399")


def _steps(messages: int):
    return [SCRIPT[0]] + [SCRIPT[1 + i % (len(SCRIPT) - 1)] for i in range(messages - 1)]


async def _http(base: str, visitors: int, messages: int) -> list[float]:
    async def visitor() -> list[float]:
        times = []
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            for path, body in _steps(messages):
                t = time.perf_counter()
                async with session.post(f"{base}/chat/api/{path}", json=body) as resp:
                    answer = await resp.json()
                    if resp.status != 200:
                        raise SystemExit(f"{path} answered {resp.status}")
                times.append(time.perf_counter() - t)
                if any(ERROR in text for reply in answer["replies"] for text in reply["texts"]):
                    FAILED["web chat over HTTP"] += 1
        return times

    return [t for times in await asyncio.gather(*(visitor() for _ in range(visitors))) for t in times]


async def _direct(service, visitors: int, messages: int) -> list[float]:
    async def visitor(n: int) -> list[float]:
        times = []
        for path, body in _steps(messages):
            text = f"/start h_{body['h']}" if path == "start" else body.get("text", "")
            msg = Incoming("web", f"direct-{n}", ChatType.PRIVATE, f"direct-{n}", "", text, service.clock(), payload=body.get("payload"))
            t = time.perf_counter()
            replies = await service.handle(msg)
            times.append(time.perf_counter() - t)
            if any(ERROR in reply.text for reply in replies):
                FAILED["core directly (baseline)"] += 1
        return times

    return [t for times in await asyncio.gather(*(visitor(n) for n in range(visitors))) for t in times]


def _row(name: str, times: list[float], wall: float) -> tuple[str, float, float, float]:
    p95 = statistics.quantiles(times, n=20)[18]
    return name, statistics.median(times) * 1000, p95 * 1000, len(times) / wall


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=8)
    parser.add_argument("--messages", type=int, default=30, help="messages per visitor")
    parser.add_argument("--database-url", help="default: a new SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        db = Database(url)
        await db.migrate()
        async with db.transaction() as session:
            await registry.import_rows(session, registry.parse_csv(EXAMPLE_CSV.read_bytes()))
        settings = Settings(_env_file=None, database_url=url, web_chat=True, web_chat_rate=600)
        app = create_app(settings, CATALOG, db)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            service = app[SERVICE]
            # Warm up both paths (matcher caches, connection pool) before measuring.
            await _http(f"http://127.0.0.1:{port}", 2, 5)
            await _direct(service, 2, 5)
            rows = []
            for name, run in (
                ("core directly (baseline)", lambda: _direct(service, args.visitors, args.messages)),
                ("web chat over HTTP", lambda: _http(f"http://127.0.0.1:{port}", args.visitors, args.messages)),
            ):
                t = time.perf_counter()
                times = await run()
                rows.append(_row(name, times, time.perf_counter() - t))
        finally:
            await runner.cleanup()
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, Python {platform.python_version()}, {url.split(':')[0]}")
    print(f"{args.visitors} visitors at once x {args.messages} messages each")
    print(f"{'path':28} {'p50 ms':>8} {'p95 ms':>8} {'msg/s':>8} {'errors':>7}")
    for name, p50, p95, rate in rows:
        print(f"{name:28} {p50:8.1f} {p95:8.1f} {rate:8.1f} {FAILED[name]:7d}")
    base, web_row = rows
    print(f"ratio web/core: p50 {web_row[1] / base[1]:.2f}, p95 {web_row[2] / base[2]:.2f}, throughput {web_row[3] / base[3]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
