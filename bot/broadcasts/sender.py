"""The broadcast sender: one per deployment (a lease in the database), claiming due deliveries in batches.

Policy for a delivery in flight when the sender dies (SIGKILL, power cut): its row stays `sending`; the
next holder of the lease marks it `unknown` and does NOT send it again. The platform may or may not
have shown the message, and neither Telegram nor Zalo offers an idempotency key to ask; a second copy
in a hamlet group is seen by everyone and cannot be taken back on Zalo, while a missing one is listed
in the delivery report (status `unknown`) for the team to follow up. At most `concurrency` rows can be
in that state per crash, because a row is marked `sending` (committed) only just before its call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts import jobs
from bot.broadcasts.adapters import NOT_READY_WAIT, Adapter, Result, SendResult, not_ready
from bot.broadcasts.audience import resolve
from bot.broadcasts import images
from bot.broadcasts.model import Audience, Part, messages_for
from bot.broadcasts.pacing import ChannelPacer
from bot.broadcasts.quiet import QuietHours
from storage import broadcasts as repo
from storage import leases, people
from storage.broadcasts import BroadcastStatus, DeliveryStatus
from storage.db import Database
from storage.models import BroadcastDelivery, Chat

log = logging.getLogger(__name__)

LEASE_NAME = "broadcast-sender"
# How long before the end of a pause a delivery may be marked `sending` (about one commit under load).
MARK_LEAD = 0.2


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(value: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; everything is stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass
class _Write:
    kind: str  # "mark" or "settle"
    delivery_id: int
    now: datetime
    values: dict
    also: Callable[[AsyncSession], Awaitable[None]] | None
    future: asyncio.Future


class DeliveryWriter:
    """Record the deliveries' marks (`sending`, just before a call) and outcomes in groups.

    One commit per write would be ~50 commits a second at Telegram's pace; on SQLite (one writer, an
    fsync per commit) that alone keeps the write lock busy most of the time, and replies to residents
    queue behind it. Here, the writes queued while the previous group waited for the lock or was being
    committed go together: one UPDATE … RETURNING for all the marks, one executemany per shape of
    outcome, one commit. A caller returns once its write is committed (a mark before its call is made:
    the at-most-once rule holds). When a group fails, each write is tried again alone, so that one bad
    write fails only its own caller.
    """

    def __init__(self, db: Database, holder: str):
        self.db = db
        self.holder = holder
        self._queue: list[_Write] = []
        self._task: asyncio.Task | None = None
        self.commits = 0  # for tests and reports
        self.writes = 0

    async def mark(self, delivery_id: int, now: datetime) -> bool:
        """Mark a delivery `sending`; False (and the claim given back) if it may no longer be sent."""
        return await self._queue_write("mark", delivery_id, now, {}, None)

    async def settle(
        self, delivery_id: int, now: datetime, values: dict | None = None, also: Callable[[AsyncSession], Awaitable[None]] | None = None
    ) -> None:
        """Write an outcome (and release the claim); `also` makes further changes in the same transaction."""
        await self._queue_write("settle", delivery_id, now, dict(values or {}), also)

    async def _queue_write(self, kind, delivery_id, now, values, also):
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(kind, delivery_id, now, values, also, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="broadcast-writes")
        # The write goes ahead even if the caller is cancelled (a stop): it is already queued.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            batch: list[_Write] = []
            try:
                async with self.db.writing() as session:
                    # Taken once the write lock is ours: everything queued meanwhile joins this commit.
                    batch, self._queue = self._queue, []
                    results = await self._apply(session, batch)
                self.commits += 1
                self.writes += len(batch)
            except Exception as exc:
                if len(batch) <= 1:
                    for w in batch:
                        if not w.future.done():
                            w.future.set_exception(exc)
                    continue
                for w in batch:
                    try:
                        async with self.db.writing() as session:
                            result = (await self._apply(session, [w]))[0]
                        self.commits += 1
                        self.writes += 1
                    except Exception as one:
                        if not w.future.done():
                            w.future.set_exception(one)
                    else:
                        if not w.future.done():
                            w.future.set_result(result)
                continue
            for w, result in zip(batch, results):
                if not w.future.done():
                    w.future.set_result(result)

    async def _apply(self, session: AsyncSession, batch: list[_Write]) -> list:
        marks = [w for w in batch if w.kind == "mark"]
        marked: set[int] = set()
        if marks:
            marked = await repo.mark_sending_many(session, [w.delivery_id for w in marks], self.holder, marks[-1].now)
        settles = [(w.delivery_id, w.now, w.values) for w in batch if w.kind == "settle"]
        # Paused or cancelled since the claim: the row is given back untouched.
        settles += [(w.delivery_id, w.now, {}) for w in marks if w.delivery_id not in marked]
        await repo.settle_many(session, self.holder, settles)
        for w in batch:
            if w.also is not None:
                await w.also(session)
        return [w.delivery_id in marked if w.kind == "mark" else None for w in batch]


@dataclass(frozen=True)
class SenderConfig:
    batch: int = 100
    concurrency: int = 8
    # A dead sender's lease is taken over after this; it must exceed the longest per-chat spacing, so
    # that a successor cannot message a group sooner than the spacing after its predecessor did.
    lease_ttl: float = 10.0
    max_attempts: int = 5  # failed calls (5xx, timeouts) before a delivery is given up
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    idle_poll: float = 1.0
    start_chunk: int = 500  # delivery rows written per transaction when a broadcast starts
    jobs_every: float = 10.0  # seconds between two looks at due reminders, visits and recurring rules
    weekly_summary: bool = False  # CCCD_BROADCAST_WEEKLY_SUMMARY


class Sender:
    def __init__(
        self,
        db: Database,
        adapters: dict[str, Adapter],
        pacers: dict[str, ChannelPacer],
        *,
        config: SenderConfig = SenderConfig(),
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        holder: str | None = None,
    ):
        self.db = db
        self.adapters = adapters
        self.pacers = pacers
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._holding = False
        self._valid_until = 0.0
        self._parts: dict[tuple[int, str], list[Part]] = {}
        self._images: dict[int, images.Image | None] = {}  # broadcast id -> its image
        self._quiet: dict[str | None, QuietHours] = {}
        self._quiet_loaded = clock()
        self._in_flight: set[tuple[str, str]] = set()
        self.recovered_unknown = 0
        self.writer = DeliveryWriter(db, self.holder)
        self._jobs_at: datetime | None = None

    # ---------------------------------------------------------------- lease

    async def hold_lease(self) -> bool:
        """Take or renew the sender lease; on taking it, settle what a previous holder left."""
        started = time.monotonic()
        now = self.clock()
        recent: list[tuple[str, str, datetime]] = []
        async with self.db.writing() as session:
            ok = await leases.acquire(session, LEASE_NAME, self.holder, now, timedelta(seconds=self.config.lease_ttl))
            if ok and not self._holding:
                self.recovered_unknown += await repo.recover(session, now)
                spacing = max((p.rules.spacing(k) for p in self.pacers.values() for k in ("group", "private")), default=0.0)
                recent = await repo.recent_calls(session, now - timedelta(seconds=spacing))
        for channel, chat_id, at in recent:
            # The previous holder (this same process restarted, or one whose lease ran out) may have
            # just messaged these chats: keep their spacing as if this sender had made those calls.
            pacer = self.pacers.get(channel)
            if pacer is not None:
                pacer.note_send(chat_id, ago=max(0.0, (now - aware(at)).total_seconds()))
        if ok:
            # Keep a margin: stop sending well before another process may take over.
            self._valid_until = started + self.config.lease_ttl * 0.6
        self._holding = ok
        return ok

    def lease_valid(self) -> bool:
        return self._holding and time.monotonic() < self._valid_until

    async def release(self) -> None:
        async with self.db.writing() as session:
            await repo.release_claims(session, self.holder, self.clock())
            await leases.release(session, LEASE_NAME, self.holder, self.clock())
        self._holding = False

    # ---------------------------------------------------------------- running

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False) -> None:
        """Send until `stop` is set (or, with `until_idle`, until nothing is left to send).

        Workers take deliveries from a queue that is refilled as it runs low, so one slow call (a
        timeout) holds up one worker, never a whole batch.
        """
        renewer = asyncio.create_task(self._renew(stop))
        queue: asyncio.Queue = asyncio.Queue()
        busy = [0]

        async def worker() -> None:
            while True:
                d = await queue.get()
                busy[0] += 1
                try:
                    await self._deliver(d)
                except Exception:
                    log.exception("broadcast sender: delivery %s", d.id)
                finally:
                    busy[0] -= 1
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(self.config.concurrency)]
        last_finish = 0.0
        try:
            while not stop.is_set():
                if not self.lease_valid() and not await self.hold_lease():
                    await _wait(stop, self.config.lease_ttl / 3)
                    continue
                if queue.qsize() >= self.config.concurrency:
                    await _wait(stop, 0.02)
                    continue
                await self.start_due()
                batch = await self._claim()
                for d in batch:
                    queue.put_nowait(d)
                if time.monotonic() - last_finish > 1.0 or (not batch and not busy[0] and queue.empty()):
                    await self.finish_done()
                    last_finish = time.monotonic()
                    self._forget_quiet_hours_now_and_then()
                if batch:
                    continue
                if not busy[0] and queue.empty():
                    if until_idle and not await self._anything_open():
                        return
                    await _wait(stop, self.config.idle_poll)
                else:
                    await _wait(stop, 0.05)
        finally:
            for task in (renewer, *workers):
                task.cancel()
            await asyncio.gather(renewer, *workers, return_exceptions=True)
            if self._holding:
                await self.release()

    async def _renew(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.config.lease_ttl / 4)
            if self._holding:
                try:
                    await self.hold_lease()
                except Exception:  # a database hiccup: the lease runs out and sending stops by itself
                    log.exception("broadcast sender: could not renew the lease")

    async def _anything_open(self) -> bool:
        async with self.db.transaction() as session:
            if await repo.due_to_start(session, datetime.max.replace(tzinfo=timezone.utc)):
                return True
            for broadcast_id in await repo.sending_broadcast_ids(session):
                if await repo.open_count(session, broadcast_id):
                    return True
        return False

    async def run_once(self) -> int:
        """One pass: start due broadcasts, send one claimed batch, close finished broadcasts. Returns calls made."""
        if not self.lease_valid() and not await self.hold_lease():
            return 0
        await self.start_due()
        batch = await self._claim()
        queue: asyncio.Queue = asyncio.Queue()
        for d in batch:
            queue.put_nowait(d)
        calls = [0]

        async def worker() -> None:
            while not queue.empty():
                d = queue.get_nowait()
                try:
                    made = await self._deliver(d)
                    calls[0] += made
                except Exception:
                    log.exception("broadcast sender: delivery %s", d.id)

        await asyncio.gather(*(worker() for _ in range(min(self.config.concurrency, len(batch)) or 1)))
        async with self.db.writing() as session:
            await repo.release_claims(session, self.holder, self.clock())
        await self.finish_done()
        return calls[0]

    async def _claim(self) -> list[BroadcastDelivery]:
        """Claim a batch of due deliveries; settle at once those whose person has opted out since.

        Only the claim itself holds the write lock; what the batch needs besides (opt-outs, quiet hours,
        the broadcast's text) is read after it.
        """
        now = self.clock()
        async with self.db.writing() as session:
            batch = await repo.claim_due(session, self.holder, now, self.config.batch, skip_locked=not self.db.is_sqlite)
        if not batch:
            return batch
        async with self.db.transaction() as session:
            opted: dict[str, set[str]] = {}
            for channel in {d.channel for d in batch}:
                ids = [d.chat_id for d in batch if d.channel == channel and d.kind == "private"]
                opted[channel] = await repo.is_opted_out(session, channel, ids)
            for commune in {d.commune_code for d in batch} - set(self._quiet):
                self._quiet[commune] = await self._load_quiet_hours(session, commune)
            for broadcast_id in {d.broadcast_id for d in batch}:
                channels = {d.channel for d in batch if d.broadcast_id == broadcast_id}
                if all((broadcast_id, channel) in self._parts for channel in channels):
                    continue
                b = await repo.get(session, broadcast_id)
                image = self._images[broadcast_id] = await images.load(session, b.image if b else None)
                for channel in channels:
                    self._parts[(broadcast_id, channel)] = messages_for(channel, b.text if b else "", image is not None)
        skipped = [d for d in batch if d.kind == "private" and d.chat_id in opted.get(d.channel, ())]
        if skipped:
            await asyncio.gather(*(self.writer.settle(d.id, now, {"status": DeliveryStatus.OPTED_OUT}) for d in skipped))
        return [d for d in batch if d not in skipped]

    @staticmethod
    async def _load_quiet_hours(session, commune: str | None) -> QuietHours:
        p = await repo.policy(session, commune)
        return QuietHours(p.quiet_start, p.quiet_end, p.timezone)

    def _forget_quiet_hours_now_and_then(self) -> None:
        """A commune's quiet hours may have been changed: read them again once a minute."""
        if (self.clock() - self._quiet_loaded).total_seconds() > 60:
            self._quiet.clear()
            self._quiet_loaded = self.clock()

    async def start_due(self) -> None:
        """Scheduled broadcasts whose time has come: one delivery row per recipient, then `sending`.

        The audience is read outside the write lock and its rows are written in chunks, each chunk its own
        short transaction, so that replies to residents are not held up while 10,000 rows are written.
        The rows are staged (claimed by this sender, so nobody sends them) until the last transaction
        checks that every one is there and the broadcast is still scheduled, then frees them and makes
        the broadcast `sending`. A start cut short (a crash) leaves staged rows of a scheduled broadcast:
        the next start deletes them first.
        """
        now = self.clock()
        if self._jobs_at is None or (now - self._jobs_at).total_seconds() >= self.config.jobs_every:
            self._jobs_at = now
            try:
                await jobs.make_due(self.db, now, weekly_summary=self.config.weekly_summary)
            except OperationalError:
                log.warning("broadcast sender: reminders, visits and recurring rules not looked at (database busy)")
        async with self.db.transaction() as session:
            due = [b.id for b in await repo.due_to_start(session, now)]
        for broadcast_id in due:
            async with self.db.transaction() as session:
                b = await repo.get(session, broadcast_id)
                if b is None or b.status != BroadcastStatus.SCHEDULED:
                    continue
                recipients = await resolve(session, Audience.from_dict(b.audience))
            async with self.db.writing() as session:
                await repo.drop_staged(session, broadcast_id)
            for start in range(0, len(recipients), self.config.start_chunk):
                chunk = recipients[start : start + self.config.start_chunk]
                async with self.db.writing() as session:
                    await repo.add_deliveries(session, broadcast_id, chunk, now, staged_by=self.holder)
            async with self.db.writing() as session:
                b = await repo.get(session, broadcast_id, lock=True)
                staged = await repo.staged_count(session, broadcast_id, self.holder)
                if b is None or b.status != BroadcastStatus.SCHEDULED or staged != len(recipients):
                    # Cancelled meanwhile, or another sender (one whose lease had run out) interfered.
                    await repo.drop_staged(session, broadcast_id, only_holder=self.holder)
                    continue
                await repo.unstage(session, broadcast_id, self.holder)
                b.status = BroadcastStatus.SENDING
                b.started_at = b.updated_at = now
            log.info("broadcast %s: started, %d recipient(s)", broadcast_id, len(recipients))

    async def finish_done(self) -> None:
        # Counted outside the write lock (replies to residents wait on it); written only when one is done.
        async with self.db.transaction() as session:
            finished = [b for b in await repo.sending_broadcast_ids(session) if await repo.open_count(session, b) == 0]
        if not finished:
            return
        now = self.clock()
        async with self.db.writing() as session:
            for broadcast_id in finished:
                b = await repo.get(session, broadcast_id, lock=True)
                if b is not None and b.status == BroadcastStatus.SENDING and await repo.open_count(session, broadcast_id) == 0:
                    b.status = BroadcastStatus.DONE
                    b.finished_at = b.updated_at = now
                    log.info("broadcast %s: done", broadcast_id)

    # ---------------------------------------------------------------- one delivery

    async def _defer(self, d: BroadcastDelivery, until: datetime, **values) -> None:
        now = self.clock()
        await self.writer.settle(d.id, now, {"next_attempt_at": until, **values})

    async def _deliver(self, d: BroadcastDelivery) -> int:
        now = self.clock()
        quiet = self._quiet.get(d.commune_code)
        if quiet is None:  # claimed before the cache was last emptied
            async with self.db.transaction() as session:
                quiet = self._quiet[d.commune_code] = await self._load_quiet_hours(session, d.commune_code)
        resume = quiet.resume_at(now)
        if resume is not None:
            await self._defer(d, resume)
            return 0
        pacer = self.pacers[d.channel]
        adapter = self.adapters.get(d.channel)
        if adapter is None:
            error = f"channel {d.channel} is not configured"
            await self.writer.settle(d.id, now, {"status": DeliveryStatus.FAILED, "last_error": error})
            return 0
        if await not_ready(getattr(adapter, "ready", None)) is not None:
            # The channel is still connecting (a server just started): nothing marked, tried again later.
            await self._defer(d, now + timedelta(seconds=NOT_READY_WAIT))
            return 0
        chat = (d.channel, d.chat_id)
        wait = pacer.chat_wait(d.chat_id, d.kind)
        if wait > 0 or chat in self._in_flight:
            await self._defer(d, now + timedelta(seconds=max(wait, pacer.rules.spacing(d.kind))))
            return 0
        self._in_flight.add(chat)
        try:
            # The mark below is committed while a pause's last moments run out (see ChannelPacer.acquire).
            await pacer.acquire(lead=MARK_LEAD)
            if not self.lease_valid():
                # Give the row back; if another sender has taken over, its recovery already has.
                await self._defer(d, now)
                return 0
            try:
                if not await self.writer.mark(d.id, self.clock()):
                    return 0  # paused or cancelled since the claim: the row was given back untouched
            except OperationalError:
                # Nothing was sent and nothing written: try the row again a little later.
                log.warning("broadcast sender: could not mark delivery %s; retrying later", d.id)
                try:
                    await self._defer(d, now + timedelta(seconds=2))
                except OperationalError:
                    pass  # still claimed: released at the next clean stop or by a successor's recovery
                return 0
            parts = self._parts[(d.broadcast_id, d.channel)]
            part = parts[d.parts_sent]
            await pacer.space()
            pacer.note_send(d.chat_id)
            try:
                if part.image:
                    # parts_sent moves past the image once it is accepted: a retry sends the rest, never the image again.
                    outcome = await adapter.send_photo(d.chat_id, d.kind, self._images[d.broadcast_id], part.text)
                else:
                    outcome = await adapter.send_text(d.chat_id, d.kind, part.text)
            except Exception as exc:  # an adapter bug must not leave the row `sending`
                log.exception("broadcast sender: adapter %s", d.channel)
                outcome = SendResult(Result.TRANSIENT, error=f"{type(exc).__name__}: {exc}")
            await self._settle(d, outcome, len(parts))
            return 1
        finally:
            self._in_flight.discard(chat)

    def backoff(self, failures: int) -> float:
        """Exponential backoff with jitter: base * 2^(n-1), capped, times a random 0.5-1.5."""
        delay = min(self.config.backoff_cap, self.config.backoff_base * 2 ** max(0, failures - 1))
        return delay * (0.5 + self.rng.random())

    async def _settle(self, d: BroadcastDelivery, outcome: SendResult, total_parts: int) -> None:
        now = self.clock()
        pacer = self.pacers[d.channel]
        attempts = d.attempts + 1
        values: dict = {"status": DeliveryStatus.PENDING}
        r = outcome.result
        if r is Result.SENT:
            parts_sent = d.parts_sent + 1
            values.update(parts_sent=parts_sent, platform_message_id=outcome.message_id, last_error=None)
            if parts_sent >= total_parts:
                values["status"] = DeliveryStatus.SENT
            else:
                values["next_attempt_at"] = now + timedelta(seconds=pacer.rules.spacing(d.kind))
        elif r is Result.RETRY_AFTER:
            pacer.pause(outcome.retry_after)
            # Flood control is about our pace, not this message: it does not count as a failed attempt.
            values.update(attempts=attempts - 1, next_attempt_at=now + timedelta(seconds=outcome.retry_after), last_error=outcome.error)
        elif r is Result.TRANSIENT:
            failures = attempts - d.parts_sent
            if failures >= self.config.max_attempts:
                values.update(status=DeliveryStatus.FAILED, last_error=f"gave up after {failures} attempts: {outcome.error}")
            else:
                values.update(next_attempt_at=now + timedelta(seconds=self.backoff(failures)), last_error=outcome.error)
        elif r is Result.MIGRATED and outcome.new_chat_id:
            values.update(chat_id=outcome.new_chat_id, attempts=attempts - 1, next_attempt_at=now, last_error=outcome.error)
        elif r in (Result.BLOCKED, Result.NO_WINDOW):
            values.update(status=DeliveryStatus.BLOCKED if r is Result.BLOCKED else DeliveryStatus.NO_WINDOW, last_error=outcome.error)
        elif r is Result.AMBIGUOUS:
            values.update(status=DeliveryStatus.UNKNOWN, last_error=outcome.error)
        else:
            values.update(status=DeliveryStatus.FAILED, last_error=outcome.error)
        for attempt in range(8):
            try:
                await self._write_outcome(d, r, outcome, now, values)
                return
            except OperationalError as exc:
                # The outcome is known: keep trying to record it (SQLite busy, a PostgreSQL failover)
                # rather than leave the row `sending`, which would turn it into an `unknown`.
                log.warning("broadcast sender: recording delivery %s failed (%s); retrying", d.id, exc.__class__.__name__)
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
        log.error("broadcast sender: could not record delivery %s; it will be reported unknown", d.id)

    async def _write_outcome(self, d: BroadcastDelivery, r: Result, outcome: SendResult, now: datetime, values: dict) -> None:
        also = None
        if r in (Result.BLOCKED, Result.NO_WINDOW) or (r is Result.MIGRATED and outcome.new_chat_id):

            async def also(session: AsyncSession) -> None:
                await self._record_chat_change(session, d, r, outcome)

        await self.writer.settle(d.id, now, values, also)

    async def _record_chat_change(self, session, d: BroadcastDelivery, r: Result, outcome: SendResult) -> None:
        if r in (Result.BLOCKED, Result.NO_WINDOW):
            # Skipped next time: the audience leaves inactive chats and people out.
            if d.kind == "group":
                await people.set_chat_active(session, d.channel, d.chat_id, False)
            else:
                await people.set_user_active(session, d.channel, d.chat_id, False)
                await people.set_chat_active(session, d.channel, d.chat_id, False)
        if r is Result.MIGRATED and outcome.new_chat_id:
            await session.execute(
                update(Chat).where(Chat.channel == d.channel, Chat.external_id == d.chat_id).values(external_id=outcome.new_chat_id)
            )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass
