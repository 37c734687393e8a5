"""The sender: delivers the outbox per chat, in order, through each channel's one platform call.

One process holds the sender lease at a time (a row in `leases`, renewed every third of its time to
live); when it dies, another takes over once the lease expires, and a restarted process with the same
instance name takes it back at once. The holder fetches due rows in batches (oldest first), queues them
per chat, and serves each chat in its own task, one call after another, so a chat's messages keep their
order while chats do not wait for each other. A chat's next call waits until the previous one is recorded as sent;

A call ends only when the platform accepted it (`Sent`) or refused it for good (`Refused`, recorded with
its reason). `Retry` waits as long as the platform asked (429 `retry_after`; a per-app limit pauses the
whole channel) or backs off exponentially with jitter (5xx, timeouts, network), for as long as it takes: a
committed reply is never dropped. A reply in flight when the process is killed is sent again by the next
holder (at-least-once: a platform call cannot be made idempotent).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from aiolimiter import AsyncLimiter

from bot.pipeline.errors import is_unavailable
from storage import deliveries
from storage.deliveries import Outgoing

log = logging.getLogger(__name__)

LEASE = "sender"
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
Sleep = Callable[[float], Awaitable[Any]]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class Sent:
    """The platform accepted the call."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again: after `after` seconds when the platform said so, else after the next back-off step.

    With `channel_wide` the wait applies to every chat of the channel (a per-app rate limit); otherwise
    only this chat waits, so one chat's flood control never holds up the replies to everybody else.
    """

    reason: str = ""
    after: float | None = None
    channel_wide: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """The platform refused for good; with `whole_chat`, nothing more can reach this chat (blocked, gone)."""

    reason: str
    whole_chat: bool = False


@dataclass(frozen=True, slots=True)
class Moved:
    """The chat has a new id (Telegram group → supergroup): the call and the chat's next ones go there."""

    chat_id: str


Result = Sent | Retry | Refused | Moved


class Transport(Protocol):
    """What the sender needs of a channel: make one platform call and say how it ended."""

    async def deliver(self, chat_id: str, call: dict[str, Any]) -> Result: ...


class Pacer:
    """Pacing of one channel: an overall rate (aiolimiter), an optional gap per chat, and 429 pauses."""

    def __init__(
        self,
        rate: float | None = None,
        *,
        per_chat: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.limiter = AsyncLimiter(rate, 1.0) if rate else None
        self.per_chat = per_chat
        self.clock = clock
        self.paused_until = 0.0
        self._last: dict[str, float] = {}

    def pause(self, seconds: float) -> None:
        """The platform asked the whole channel to wait (flood control)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    async def acquire(self, chat_id: str, sleep: Sleep = asyncio.sleep) -> None:
        """Wait for this chat's turn: after a pause the platform asked for, the chat's gap, the overall rate."""
        wait = self.paused_until - self.clock()
        if wait > 0:
            await sleep(wait)
        if self.per_chat:
            last = self._last.get(chat_id)
            if last is not None and (gap := last + self.per_chat - self.clock()) > 0:
                await sleep(gap)
            if len(self._last) > 50_000:
                horizon = self.clock() - self.per_chat
                self._last = {k: v for k, v in self._last.items() if v > horizon}
            self._last[chat_id] = self.clock()
        if self.limiter is not None:
            await self.limiter.acquire()


class Sender:
    """Deliver the outbox (see the module's docstring)."""

    def __init__(
        self,
        db,
        *,
        holder: str,
        lease_ttl: float = 10.0,
        poll: float = 1.0,
        batch: int = 500,
        concurrency: int = 64,
        backoff: tuple[float, ...] = BACKOFF,
        jitter: float = 0.2,
        clock: Callable[[], datetime] = utcnow,
        sleep: Sleep = asyncio.sleep,
        listen: bool = True,
    ):
        self.db = db
        self.holder = holder
        self.lease_ttl = lease_ttl
        self.poll = poll
        self.batch = batch
        self.backoff = backoff or (1.0,)
        self.jitter = jitter
        self.clock = clock
        self.sleep = sleep
        self.listen = listen
        self.coalesce = 0.005
        self.transports: dict[str, Transport] = {}
        self.pacers: dict[str, Pacer] = {}
        self.holding = False
        self.counts: collections.Counter[str] = collections.Counter()
        self.on_result: Callable[[str, str, datetime], None] | None = None  # (channel, outcome, created_at)
        self._renewed_at = float("-inf")
        self._wake = asyncio.Event()
        self._flushing = False
        self._mark_waiters: dict[int, asyncio.Future] = {}
        self._fetch_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(concurrency)
        self._chats: dict[tuple[str, str], collections.deque[Outgoing]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._claimed: set[int] = set()
        # Ids this process ended lately (sent, refused): a row offered behind them may go straight out.
        self._ended: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._to_mark: list[int] = []
        # True while a receiving transaction will record the sent calls with its own (see `take_marks`).
        self.marks_ride: Callable[[], bool] | None = None
        self._background: list[asyncio.Task] = []
        self._housekept = float("-inf")
        self._back: dict[str, asyncio.Event] = {}  # per channel: set when a call goes through (see `_back_off`)

    # -- set-up ------------------------------------------------------------------------------------

    def register(self, channel: str, transport: Transport, pacer: Pacer | None = None) -> None:
        self.transports[channel] = transport
        self.pacers[channel] = pacer or Pacer()

    def wake(self) -> None:
        """New rows were committed: look for them now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._run(), name="sender")]
        if self.listen and not self.db.is_sqlite:
            self._background.append(loop.create_task(self._listen(), name="sender-listen"))

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop fetching, let running chats finish for a while, record what was sent, give the lease up."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        if self._tasks:
            done, pending = await asyncio.wait(list(self._tasks), timeout=drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            await self._flush()
            if self.holding:
                async with self.db.writing() as session:
                    await deliveries.release_lease(session, LEASE, self.holder)
        except Exception as exc:
            log.warning("sender: could not record the last sends or release the lease at shutdown: %s", exc)
        self.holding = False

    @property
    def busy(self) -> int:
        """Chats with calls queued or in flight in this process."""
        return len(self._chats)

    # -- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            more = False
            try:
                if await self.keep_lease():
                    more = await self.dispatch_due() >= self.batch
                    await self._housekeeping()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if is_unavailable(exc):
                    log.warning("sender: database unavailable (%s); retrying", type(exc).__name__)
                else:
                    log.exception("sender: unexpected error; retrying")
                await self.sleep(min(self.poll * failures, 5.0))
            if more:
                continue
            # Wakes that come together (a burst of commits) are served by one scan.
            await asyncio.sleep(self.coalesce)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def keep_lease(self) -> bool:
        """Take or renew the sender lease when due; return whether this process holds it."""
        mono = time.monotonic()
        if self.holding and mono - self._renewed_at < self.lease_ttl / 3:
            return True
        try:
            async with self.db.autocommit() as session:
                held = await deliveries.hold_lease(session, LEASE, self.holder, self.clock(), timedelta(seconds=self.lease_ttl))
        except Exception:
            # Unreachable database: keep sending while our lease is surely still ours.
            if self.holding and mono - self._renewed_at >= self.lease_ttl * 0.9:
                self._lose_lease()
            raise
        if held:
            if not self.holding:
                log.info("sender: lease taken by %s", self.holder)
            self.holding = True
            self._renewed_at = mono
        elif self.holding:
            self._lose_lease()
        return self.holding

    def _lose_lease(self) -> None:
        log.warning("sender: lease lost; another process sends now")
        self.holding = False
        for task in list(self._tasks):
            task.cancel()

    async def dispatch_due(self) -> int:
        """Fetch due rows and queue the new ones behind their chat; return how many rows were due.

        The scan reads ids only; the calls themselves are loaded for the rows not already queued here,
        so a backlog is not decoded again at every wake.
        """
        if self._to_mark and not self._flushing:
            # Calls made but not recorded yet (their chats' tasks were cancelled when the lease was lost
            # while the database was away) are recorded first: else they would be fetched as due and sent twice.
            await self._flush()
        async with self._fetch_lock:
            async with self.db.autocommit() as session:
                keys = await deliveries.due_keys(session, self.clock(), self.batch)
                fresh = [id_ for id_, _channel, _chat in keys if id_ not in self._claimed]
                rows = await deliveries.load(session, fresh) if fresh else []
            for row in rows:
                # An offer may have queued it (or even sent it) while the scan was loading.
                if row.id not in self._claimed and row.id not in self._ended:
                    self._queue(row)
        return len(keys)

    def offer(self, rows: list[Outgoing], earlier: dict[tuple[str, str], list[int]]) -> bool:
        """Take rows committed in this process without scanning for them; False when some must wait for a scan.

        `earlier` holds, per chat, the ids of the rows that were pending when the offered ones were
        added (read under the chat's lock). A chat's rows are taken only when this process holds every
        earlier one (queued, in flight, or ended here), so they go out behind them, in order; otherwise
        the next scan finds them all, in id order.
        """
        if not self.holding:
            return False
        complete = True
        by_chat: dict[tuple[str, str], list[Outgoing]] = {}
        for row in rows:
            by_chat.setdefault((row.channel, row.chat_id), []).append(row)
        for key, chat_rows in by_chat.items():
            known = all(id_ in self._claimed or id_ in self._ended for id_ in earlier.get(key, ()))
            if not known or key[0] not in self.transports:
                complete = False
                continue
            for row in sorted(chat_rows, key=lambda r: r.id):
                # A scan running as the rows were committed may have queued (or even sent) them already.
                if row.id not in self._claimed and row.id not in self._ended:
                    self._queue(row)
        return complete

    def _queue(self, row: Outgoing) -> None:
        """Queue a row behind its chat's others, starting the chat's task when it has none."""
        self._claimed.add(row.id)
        key = (row.channel, row.chat_id)
        queue = self._chats.get(key)
        if queue is None:
            queue = self._chats[key] = collections.deque()
            task = asyncio.get_running_loop().create_task(self._serve(key, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append(row)

    def _end(self, ids) -> None:
        """Rows this process recorded as ended (sent or refused)."""
        for id_ in ids:
            self._claimed.discard(id_)
            self._ended[id_] = None
        # Only rows ended while a receiving transaction ran matter (seconds): the last 10,000 are plenty.
        while len(self._ended) > 10_000:
            self._ended.popitem(last=False)

    async def drain(self) -> None:
        """Deliver everything due now (tests, `idle`): returns when nothing is queued, in flight or unrecorded."""
        while True:
            if not self.holding and not await self.keep_lease():
                return
            before = set(self._claimed)
            await self.dispatch_due()
            new = self._claimed - before
            tasks = list(self._tasks)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await self._flush()
            if not new and not tasks and not self._to_mark:
                return

    # -- one chat ----------------------------------------------------------------------------------

    async def _serve(self, key: tuple[str, str], queue: collections.deque[Outgoing]) -> None:
        try:
            while queue:
                row = queue[0]
                ended_chat = await self._deliver(row)
                queue.popleft()
                if ended_chat:
                    self._end(other.id for other in queue)  # refused with the chat
                    queue.clear()
        finally:
            # Cancelled (shutdown, lease lost): what was queued here is left pending for the next holder.
            for other in queue:
                self._claimed.discard(other.id)
            if self._chats.get(key) is queue:
                del self._chats[key]

    async def _deliver(self, row: Outgoing) -> bool:
        """Make one call until it ends; return True when the chat cannot be reached any more."""
        transport = self.transports.get(row.channel)
        if transport is None:
            log.error("sender: channel %s is not configured here; outbox row %s waits", row.channel, row.id)
            await self._write(deliveries.note_attempt, row.id, row.attempts, self.clock() + timedelta(minutes=1), "channel off")
            self._claimed.discard(row.id)
            return False
        pacer = self.pacers[row.channel]
        attempts = row.attempts
        backoff_step = 0
        while True:
            await pacer.acquire(row.chat_id, self.sleep)
            try:
                # A slot is held for the call only: a chat waiting for its call's record (a commit, which
                # waits for the disk), for a retry or for its pacing must not hold up other chats' first
                # replies (measured at 200 updates/s on PostgreSQL: one slow commit of the records, and 101
                # chats waited up to 184 ms at the same moment for a slot held by chats waiting for them).
                async with self._slots:
                    result = await transport.deliver(row.chat_id, row.call)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in a channel must not lose the reply: retry it later
                log.exception("sender: %s call for outbox row %s raised", row.channel, row.id)
                result = Retry(reason=type(exc).__name__)
            if isinstance(result, Sent):
                self._count(row, "sent")
                self._platform_answers(row.channel)
                # The chat's next call waits until this one is recorded, so a kill can repeat at most the
                # one call in flight; chats recording at the same moment share one statement.
                await self._record_sent(row.id)
                return False
            if isinstance(result, Moved):
                old, row.chat_id = row.chat_id, result.chat_id
                await self._write(deliveries.move_chat, row.channel, old, row.chat_id)
                continue
            if isinstance(result, Refused):
                self._count(row, "refused")
                log.warning("sender: %s chat %s refused outbox row %s: %s", row.channel, row.chat_id, row.id, result.reason)
                if result.whole_chat:
                    await self._write(deliveries.refuse_chat, row.channel, row.chat_id, result.reason, self.clock())
                else:
                    await self._write(deliveries.mark_refused, [row.id], result.reason, self.clock())
                self._end([row.id])
                return result.whole_chat
            attempts += 1
            self._count(row, "retried")
            if result.after is not None and result.channel_wide:
                pacer.pause(result.after)
                delay = 0.0
            elif result.after is not None:
                delay = result.after
            else:
                base = self.backoff[min(backoff_step, len(self.backoff) - 1)]
                backoff_step += 1
                delay = base * (1 - self.jitter * random.random())
            wait = result.after if result.after is not None else delay
            log.warning("sender: %s chat %s: %s; attempt %d, again in %.1f s", row.channel, row.chat_id, result.reason, attempts, wait)
            try:
                await self._write_once(
                    deliveries.note_attempt, row.id, attempts, self.clock() + timedelta(seconds=wait), result.reason
                )
            except Exception:
                pass  # only a record: the retry goes on in memory
            if delay and result.after is None:
                await self._back_off(row.channel, delay)
            elif delay:
                await self.sleep(delay)

    async def _back_off(self, channel: str, delay: float) -> None:
        """Wait `delay` after a server error, a timeout or a network error, or less: until a call of the
        channel goes through (the platform is back), so that every chat caught by an outage does not wait
        out the rest of its back-off step (up to a minute) after it ended. A 429 is never cut short."""
        back = self._back.get(channel)
        if back is None:
            back = self._back[channel] = asyncio.Event()
        sleeping = asyncio.ensure_future(self.sleep(delay))
        recovered = asyncio.ensure_future(back.wait())
        try:
            await asyncio.wait((sleeping, recovered), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            recovered.cancel()

    def _platform_answers(self, channel: str) -> None:
        """A call of `channel` went through: the chats backing off after an error try again now."""
        back = self._back.pop(channel, None)
        if back is not None:
            back.set()

    def _count(self, row: Outgoing, outcome: str) -> None:
        self.counts[outcome] += 1
        if self.on_result is not None:
            self.on_result(row.channel, outcome, row.created_at)

    async def _write_once(self, fn, *args) -> None:
        async with self.db.writing() as session:
            await fn(session, *args)

    async def _write(self, fn, *args) -> None:
        """Write a record the sender must not skip (a refusal, a move), waiting out database outages."""
        for attempt in range(1_000_000):
            try:
                await self._write_once(fn, *args)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sender: cannot record (%s); retrying", type(exc).__name__)
                await self.sleep(min(0.5 * (attempt + 1), 5.0))

    # -- records -----------------------------------------------------------------------------------

    async def _record_sent(self, id_: int) -> None:
        """Record a sent call (group commit: the first waiter writes for everyone waiting, unless a
        receiving transaction records them first, see `take_marks`)."""
        waiter = asyncio.get_running_loop().create_future()
        self._mark_waiters[id_] = waiter
        self._to_mark.append(id_)
        if not self._flushing and not (self.marks_ride is not None and self.marks_ride()):
            await self._flush_all()
        await waiter

    async def _flush_all(self) -> None:
        """Record sent calls until none is left unrecorded, waiting out database outages."""
        self._flushing = True
        try:
            while self._to_mark:
                try:
                    await self._flush()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("sender: cannot record sent messages yet (%s)", type(exc).__name__)
                    await asyncio.sleep(0.5)
        finally:
            self._flushing = False

    async def _flush(self) -> None:
        """Record the sent calls in one statement; fetching waits, so a sent row is never fetched as due.

        The ids are taken once the writing session is open: on SQLite that is after waiting for the
        database's writer, and a receiving transaction that had the writer meanwhile may have recorded
        them already (`take_marks`)."""
        if not self._to_mark:
            return
        async with self._fetch_lock:
            ids: list[int] = []
            try:
                async with self.db.autocommit() as session:
                    ids, self._to_mark = self._to_mark, []
                    if ids:
                        await deliveries.mark_sent(session, ids, self.clock())
            except BaseException:
                self._to_mark = ids + self._to_mark
                raise
            self.marks_recorded(ids)

    def take_marks(self) -> list[int]:
        """The sent calls not yet recorded, for a receiving transaction to record with its own changes (on
        SQLite one commit, and one wait for the disk, instead of two; on PostgreSQL no statement of their
        own). The caller then says how it ended: `marks_recorded` after its commit, `marks_not_recorded`
        when it rolled back."""
        ids, self._to_mark = self._to_mark, []
        return ids

    def marks_recorded(self, ids: list[int]) -> None:
        self._end(ids)
        for id_ in ids:
            waiter = self._mark_waiters.pop(id_, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def marks_not_recorded(self, ids: list[int]) -> None:
        self._to_mark = ids + self._to_mark
        self.flush_soon()

    def flush_soon(self) -> None:
        """Record the sent calls left unrecorded (no receiving transaction is coming to take them)."""
        if self._to_mark and not self._flushing:
            task = asyncio.get_running_loop().create_task(self._flush_all())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _housekeeping(self) -> None:
        mono = time.monotonic()
        if mono - self._housekept < 3600:
            return
        self._housekept = mono
        now = self.clock()
        async with self.db.writing() as session:
            await deliveries.prune_inbox(session, now)
            await deliveries.prune_outbox(session, now)

    def _notified(self, _conn, pid: int, _channel: str, _payload: str) -> None:
        # Commits of this process were offered, or woke the sender, already.
        if pid not in self.db.backend_pids:
            self.wake()

    async def _listen(self) -> None:
        """PostgreSQL: wake on the outbox trigger's NOTIFY (rows committed by other processes)."""
        import asyncpg

        dsn = self.db.url.replace("postgresql+asyncpg://", "postgresql://")
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(dsn, timeout=5)
                await conn.add_listener("cccd_outbox", self._notified)
                while not conn.is_closed():
                    await asyncio.sleep(2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("sender: LISTEN connection failed (%s); polling meanwhile", exc)
            finally:
                if conn is not None and not conn.is_closed():
                    try:
                        await asyncio.wait_for(conn.close(), 2)
                    except BaseException:
                        conn.terminate()
            await asyncio.sleep(2)
