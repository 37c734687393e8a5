"""What the platform channels share: per-chat ordered background work, the delivery ledger, and small parsers.

Platforms redeliver (webhook retries, long polls without offsets) and expect a quick answer, so every
channel records each delivery once in the database and then handles it in the background, behind the
earlier deliveries of the same chat.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from storage import deliveries

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


def utcnow() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(timezone.utc)


def announce(text: str) -> None:
    """Say at start what a channel does (`cccd-bot serve` prints its channels the same way)."""
    log.info("%s", text)
    print(text, flush=True)


def secret_matches(given: str | None, expected: str) -> bool:
    """Compare a webhook secret header in constant time; a missing or undecodable header never matches."""
    if not given or not expected:
        return False
    # aiohttp keeps undecodable header bytes as surrogates: encode them back rather than fail with a 500.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def epoch_time(value: Any, default: Callable[[], datetime] = utcnow) -> datetime:
    """Read a platform timestamp (seconds or milliseconds since 1970, number or digits) as a UTC datetime."""
    if isinstance(value, bool):
        return default()
    try:
        number = float(str(value))
    except (TypeError, ValueError):
        return default()
    if not number > 0:
        return default()
    try:
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return default()


def remove_mention(text: str, names: Sequence[str]) -> str | None:
    """Return `text` without every "@<name>" (any case), or None when it mentions none of the names."""
    out, found = text, False
    for name in names:
        if not name:
            continue
        pattern = re.compile(re.escape(f"@{name}") + r"[,:]?", re.IGNORECASE)
        out, count = pattern.subn(" ", out)
        found = found or count > 0
    if not found:
        return None
    return re.sub(r"[ \t]{2,}", " ", out).strip(" \t,:")


def run_with_server(app: web.Application, name: str, channel: Any) -> None:
    """Start `channel` with the server, show its state under `name` at /healthz, and stop it on shutdown."""
    from bot.server import CHANNELS  # late: the command line loads channel modules without the server

    async def on_startup(_app: web.Application) -> None:
        channel.status = _app[CHANNELS].get(name)
        await channel.start()

    async def on_shutdown(_app: web.Application) -> None:
        # on_shutdown runs before on_cleanup, where the database is closed: queued deliveries finish first.
        await channel.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)


class OrderedWork:
    """Run jobs one after another per key (a chat), concurrently across keys, in background tasks."""

    def __init__(self, name: str, gate: asyncio.Event | None = None) -> None:
        self.name = name
        # Jobs wait for the gate (the channel knowing who it is) before they run.
        self.gate = gate
        self._queues: dict[str, collections.deque[Job]] = {}
        self._tasks: set[asyncio.Task] = set()

    @property
    def busy(self) -> int:
        """Return how many chats have jobs queued or running."""
        return len(self._queues)

    def submit(self, key: str, job: Job) -> None:
        """Queue `job` behind the earlier jobs of `key`."""
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        queue = collections.deque([job])
        self._queues[key] = queue
        task = asyncio.get_running_loop().create_task(self._run(key, queue), name=f"{self.name}-chat-{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: str, queue: collections.deque[Job]) -> None:
        try:
            if self.gate is not None:
                await self.gate.wait()
            while queue:
                job = queue.popleft()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: a job of chat %s failed", self.name, key)
        finally:
            # Whatever ended the worker, the chat must not keep a queue no task serves.
            if self._queues.get(key) is queue:
                del self._queues[key]

    async def drain(self) -> None:
        """Wait until every submitted job has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, timeout: float = 10.0) -> None:
        """Let queued jobs finish for up to `timeout` seconds, then cancel the rest."""
        try:
            await asyncio.wait_for(self.drain(), timeout)
        except asyncio.TimeoutError:
            left = sum(len(q) for q in self._queues.values())
            log.warning("%s: %d chat(s) still busy at shutdown; %d queued job(s) dropped", self.name, self.busy, left)
            pending = list(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class DeliveryLedger:
    """Deliveries already taken, in the database, so retries and duplicates are processed once by any process."""

    def __init__(
        self,
        db,
        channel: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        prune_every: timedelta = timedelta(hours=1),
    ):
        self.db = db
        self.channel = channel
        self.clock = clock
        self.prune_every = prune_every
        self._last_prune: datetime | None = None

    async def claim(self, key: str) -> bool:
        """Record delivery `key`; return False when it was recorded before."""
        now = self.clock()
        async with self.db.transaction() as session:
            fresh = await deliveries.claim(session, self.channel, key, now)
            if fresh and (self._last_prune is None or now - self._last_prune > self.prune_every):
                await deliveries.prune(session, now)
                self._last_prune = now
        return fresh
