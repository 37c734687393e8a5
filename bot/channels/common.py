"""What the platform channels share: per-chat ordered background work, the delivery ledger, and small parsers.

Platforms redeliver (webhook retries, long polls without offsets) and expect a quick answer, so every
channel records each delivery once in the database and then handles it in the background, behind the
earlier deliveries of the same chat.

The record keeps the delivery's payload until its processing has ended (well or with a handled
error). A delivery whose processing never ended (the process crashed or was killed, or shutdown
cancelled it) is taken again by the recovery loop of some process and queued as if just received:
nothing acknowledged to a platform is lost, and nothing is processed twice in normal operation.
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
    """Start `channel` with the server, show its state under `name` at /healthz, and stop it on shutdown.

    The channel's unfinished deliveries are recovered once it is ready, then every `recover_every`.
    """
    from bot.server import CHANNELS  # late: the command line loads channel modules without the server

    recovery: list[asyncio.Task] = []

    async def on_startup(_app: web.Application) -> None:
        channel.status = _app[CHANNELS].get(name)
        await channel.start()
        recovery.append(asyncio.get_running_loop().create_task(recover_forever(channel), name=f"{name}-recovery"))

    async def on_shutdown(_app: web.Application) -> None:
        # Recovery stops first: nothing is queued again while the channel drains.
        for task in recovery:
            task.cancel()
        await asyncio.gather(*recovery, return_exceptions=True)
        recovery.clear()
        # on_shutdown runs before on_cleanup, where the database is closed: queued deliveries finish first.
        await channel.stop()
        # What shutdown cancelled stays unfinished in the database, for the next start (or another process).
        channel.ledger.forget_pending()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)


async def recover_once(channel: Any) -> int:
    """Queue again the channel's deliveries left unfinished; return how many were queued."""
    ledger: DeliveryLedger = channel.ledger
    queued = 0
    while True:
        taken = await ledger.take_unfinished()
        for key, payload in taken:
            try:
                accepted = bool(await channel.resubmit(key, payload))
            except Exception:
                log.exception("%s: delivery %s cannot be rebuilt from its payload; given up", ledger.channel, key)
                accepted = False
            if accepted:
                queued += 1
                log.warning("%s: delivery %s was not handled before; processing it now", ledger.channel, key)
            else:
                await ledger.finish(key)
        if len(taken) < ledger.batch:
            return queued


async def recover_forever(channel: Any) -> None:
    """Once the channel is ready, recover now and then every `ledger.recover_every` seconds."""
    ledger: DeliveryLedger = channel.ledger
    while not channel.ready.is_set():
        try:
            await asyncio.wait_for(channel.ready.wait(), ledger.recover_every)
        except asyncio.TimeoutError:
            # Deliveries queued here wait for the channel to be ready: keep them ours meanwhile.
            try:
                await ledger.renew()
            except Exception:
                log.exception("%s: renewing queued deliveries failed", ledger.channel)
    while True:
        try:
            await recover_once(channel)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database may be away for a while: try again next time
            log.exception("%s: recovering unfinished deliveries failed", ledger.channel)
        await asyncio.sleep(ledger.recover_every)


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
    """Deliveries taken, in the database, so that each is processed once by any process, even after a crash.

    `claim` records a delivery with its payload; the job built by `finishing` marks it handled when
    its processing ends, but not when it is cancelled. `take_unfinished` hands back the deliveries
    left unfinished for longer than `recover_after`; those still queued in this process are renewed
    first, so that a slow chat is never taken for a lost one (`recover_every` must stay well below
    `recover_after`). A delivery taken `max_attempts` times without ending is given up.
    """

    def __init__(
        self,
        db,
        channel: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        prune_every: timedelta = timedelta(hours=1),
        recover_after: timedelta = timedelta(seconds=120),
        recover_every: float = 60.0,
        max_attempts: int = 3,
        batch: int = 100,
    ):
        self.db = db
        self.channel = channel
        self.clock = clock
        self.prune_every = prune_every
        self.recover_after = recover_after
        self.recover_every = recover_every
        self.max_attempts = max_attempts
        self.batch = batch
        self._last_prune: datetime | None = None
        # Deliveries claimed or taken by this process and not yet finished.
        self._pending: set[str] = set()

    @staticmethod
    def _key(key: str) -> str:
        return key[: deliveries.KEY_LENGTH]

    async def claim(self, key: str, payload: dict[str, Any] | None = None) -> bool:
        """Record delivery `key` with its payload; return False when it was recorded before."""
        now = self.clock()
        async with self.db.transaction() as session:
            fresh = await deliveries.claim(session, self.channel, key, now, payload)
            if fresh and (self._last_prune is None or now - self._last_prune > self.prune_every):
                await deliveries.prune(session, now)
                self._last_prune = now
        if fresh and payload is not None:
            self._pending.add(self._key(key))
        return fresh

    async def finish(self, key: str) -> None:
        """Mark delivery `key` handled (its payload is dropped)."""
        self._pending.discard(self._key(key))
        async with self.db.transaction() as session:
            await deliveries.finish(session, self.channel, key)

    def finishing(self, key: str, job: Job) -> Job:
        """Wrap `job` so that the delivery is finished when the job ends, even on an error, but not when cancelled."""

        async def run() -> None:
            try:
                await job()
            except asyncio.CancelledError:
                # Shutdown, or a worker cancelled: left unfinished, for recovery (here or by another process).
                self._pending.discard(self._key(key))
                raise
            except Exception:
                await self._finish_quietly(key)
                raise
            await self._finish_quietly(key)

        return run

    async def _finish_quietly(self, key: str) -> None:
        try:
            await self.finish(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: cannot mark delivery %s handled; it may be processed again", self.channel, key)

    async def renew(self) -> None:
        """Move the time of the deliveries still queued in this process to now, so no recovery takes them."""
        if self._pending:
            async with self.db.transaction() as session:
                await deliveries.renew(session, self.channel, set(self._pending), self.clock())

    async def take_unfinished(self) -> list[tuple[str, dict[str, Any]]]:
        """Take the deliveries left unfinished (by this process or another) for longer than `recover_after`."""
        now = self.clock()
        async with self.db.transaction() as session:
            # Renewed in the same transaction, what is still queued here is not old enough to be taken.
            if self._pending:
                await deliveries.renew(session, self.channel, set(self._pending), now)
            taken = await deliveries.take_unfinished(
                session,
                self.channel,
                now,
                self.recover_after,
                max_attempts=self.max_attempts,
                limit=self.batch,
            )
        self._pending.update(key for key, _ in taken)
        return taken

    def forget_pending(self) -> None:
        """Stop renewing the deliveries of this process (after shutdown: they are left for recovery)."""
        self._pending.clear()
