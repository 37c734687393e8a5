"""Receiving: a delivery is taken once and handled in one transaction with everything it changes.

`Pipeline.receive(work)` runs, under the chat's lock (across processes on PostgreSQL, the write lock on
SQLite): record the delivery's key in the inbox (a key seen before ends it: a retry or a duplicate),
apply the channel's own changes, step the core, and add the rendered replies to the outbox — then one
COMMIT. Deliveries of other chats that arrive meanwhile share the next transaction (group commit). A crash before the commit leaves nothing, so the platform's retry (no 2xx answer, or an
unconfirmed long-poll offset) handles it cleanly; a crash after it leaves the replies in the outbox for
the sender, and the key stops the retry. When the database is away the caller answers non-2xx
(`Unavailable`), so the platform retries instead of the person getting an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Incoming, Reply
from bot.pipeline.errors import is_unavailable
from storage import batch as batch_store
from storage import deliveries

if TYPE_CHECKING:
    from bot.pipeline.sending import Sender
    from bot.service import ChatService

log = logging.getLogger(__name__)

Render = Callable[[Sequence[Reply]], list[dict[str, Any]]]


class Unavailable(Exception):
    """The database cannot be reached now: answer so that the platform delivers again later."""


@dataclass
class Work:
    """What a channel made of one delivery, for the pipeline to carry out.

    `incoming` goes to the core; `replies` are sent without it (e.g. "send text, please"); `apply`
    makes the channel's own changes (membership, migration) in the same transaction; `render` turns
    replies into the channel's platform calls, stored in the outbox for `chat_id`.
    """

    channel: str
    key: str
    chat_id: str
    render: Render | None = None
    incoming: Incoming | None = None
    replies: tuple[Reply, ...] = ()
    apply: Callable[[AsyncSession], Awaitable[None]] | None = None
    user_id: str | None = None


@dataclass(eq=False)
class _Item:
    """A delivery waiting to be handled, and the future its receiver awaits."""

    work: Work
    started: float
    done: asyncio.Future[bool]

    @property
    def keys(self) -> set[tuple[str, ...]]:
        """What it must not share a transaction with (a later delivery of its chat, or of its sender)."""
        work = self.work
        keys: set[tuple[str, ...]] = {("chat", work.channel, work.chat_id)}
        if work.incoming is not None:
            keys.add(("person", work.channel, work.incoming.sender_id))
        return keys


class Pipeline:
    """Receive deliveries for every channel and hand their replies to the sender.

    Deliveries that arrive while a transaction is running are handled together in the next one (group
    commit): one transaction, and one statement per kind of row, for all of them. A transaction takes at
    most one delivery of a chat and of a person, so a chat's deliveries are handled one after the other
    in arrival order, each in its own transaction; `batch` caps how many go together and `concurrency`
    how many transactions run at once (PostgreSQL; SQLite has one writer). With more than one, another
    transaction begins beside the running ones only while they hold at most `side_by_side` deliveries:
    under light load a delivery need not wait for the round trips of the transaction before it; under
    heavy load the next batch forms while the database works on this one, one large batch at a time,
    which costs least CPU. One is the default: on a machine whose CPUs are busy, transactions side by
    side measured no better at half the peak (their backends wait for a CPU too, and they meet on the
    statistics' counter rows).
    """

    def __init__(
        self,
        service: ChatService,
        sender: Sender | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        batch: int = 64,
        concurrency: int = 1,
        side_by_side: int = 8,
    ):
        self.service = service
        self.db = service.db
        self.sender = sender
        self.clock = clock or service.clock
        self.error_text = lambda: service.catalog.msg("error")
        self.batch = max(1, batch)
        # SQLite has one writer: a second transaction would only wait for it, holding its batch meanwhile.
        self.concurrency = 1 if self.db.is_sqlite else max(1, concurrency)
        self.side_by_side = side_by_side
        # Hooks for metrics: (channel, outcome, seconds).
        self.on_handled: Callable[[str, str, float], None] | None = None
        self._receiving = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._waiting: list[_Item] = []
        self._busy: set[tuple[str, ...]] = set()
        self._running = 0
        self._in_flight = 0  # deliveries in the running transactions
        self._tasks: set[asyncio.Task] = set()
        if sender is not None:
            # This process's sent calls are recorded by its next receiving transaction, if one is coming.
            sender.marks_ride = lambda: self._running > 0

    async def receive(self, work: Work) -> bool:
        """Handle a delivery once; False when it was taken before. Raises Unavailable when the database is away."""
        return (await self._receive_all([work]))[0]

    async def receive_all(self, works: Iterable[Work]) -> None:
        """Handle a batch (a long poll's updates): each chat's in order, chats side by side."""
        await self._receive_all(list(works))

    async def _receive_all(self, works: list[Work]) -> list[bool]:
        self._receiving += 1
        self._quiet.clear()
        try:
            loop = asyncio.get_running_loop()
            items = [_Item(work, time.perf_counter(), loop.create_future()) for work in works]
            self._waiting.extend(items)
            self._start()
            results = await asyncio.gather(*(item.done for item in items), return_exceptions=True)
        finally:
            self._receiving -= 1
            if not self._receiving:
                self._quiet.set()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)

    # -- transactions ------------------------------------------------------------------------------

    def _start(self) -> None:
        """Start transactions for waiting deliveries while fewer than `concurrency` run and those running
        are small (`side_by_side`): under light load a delivery need not wait for the transaction before
        it, whose time is mostly round trips; under heavy load one large batch at a time costs least."""
        while self._running < self.concurrency and self._waiting:
            if self._running and self._in_flight > self.side_by_side:
                return
            batch = self._take()
            if not batch:
                return
            self._running += 1
            self._in_flight += len(batch)
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Item]:
        """The next deliveries to handle together: in arrival order, none sharing a chat or a person with
        another, or with a transaction running, or with an earlier delivery left waiting."""
        taken: list[_Item] = []
        left: list[_Item] = []
        blocked = set(self._busy)
        for item in self._waiting:
            if item.done.done():  # its receiver gave up (cancelled) before it was handled
                continue
            keys = item.keys
            if len(taken) < self.batch and not keys & blocked:
                taken.append(item)
            else:
                left.append(item)
            blocked |= keys
        self._waiting = left
        for item in taken:
            self._busy |= item.keys
        return taken

    async def _run(self, batch: list[_Item]) -> None:
        try:
            await self._handle(batch)
        except BaseException as exc:  # cancelled at shutdown: the receivers answer non-2xx
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(Unavailable(type(exc).__name__))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._running -= 1
            self._in_flight -= len(batch)
            for item in batch:
                self._busy -= item.keys
            self._start()
            if not self._running and self.sender is not None:
                self.sender.flush_soon()  # the sent calls no transaction is left to record

    async def _handle(self, batch: list[_Item]) -> None:
        for attempt in (1, 2):
            try:
                # The erasure check needs the pseudonym salt: loaded once, outside the transaction.
                await self.service.load_salt()
                fresh, rows, earlier = await self._transaction(batch)
            except Exception as exc:
                if is_unavailable(exc):
                    # A connection the database dropped (restart) is replaced at once: try once more.
                    if attempt == 1:
                        continue
                    for item in batch:
                        self._report(item.work.channel, "unavailable", item.started)
                        self._finish(item, Unavailable(str(exc)[:200]))
                    self._fail_followers(batch, str(exc)[:200])
                    return
                if len(batch) > 1:
                    # One of them is a bug: each alone finds which, and the others are handled all the same.
                    log.warning("handling %d deliveries together failed (%s); one by one now", len(batch), type(exc).__name__)
                    for item in batch:
                        await self._handle([item])
                    return
                log.exception("%s: handling delivery %s failed", batch[0].work.channel, batch[0].work.key)
                break
            # This process's sender takes the new rows as they are; it scans for them only when it must.
            if self.sender is not None and rows and not self.sender.offer(rows, earlier):
                self.sender.wake()
            if self.db.reply_before_flush:
                # Committed and visible: the replies go out and the chats' next deliveries may be handled,
                # but the platform hears "taken" only once the commit is on disk (`Database.flushed`).
                task = asyncio.get_running_loop().create_task(self._acknowledge(batch, fresh))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            self._acknowledged(batch, fresh)
            return
        # A bug, not an outage: a retry would fail the same way. Take the delivery and say sorry once.
        item = batch[0]
        try:
            self._finish(item, await self._apologise(item.work))
            self._report(item.work.channel, "error", item.started)
        except Exception as exc:
            self._finish(item, Unavailable(str(exc)[:200]) if is_unavailable(exc) else exc)

    async def _acknowledge(self, batch: list[_Item], fresh: set[_Item]) -> None:
        try:
            await self.db.flushed()
        except BaseException as exc:
            # Perhaps on disk, perhaps not: the platform delivers again, and the key tells which.
            for item in batch:
                self._report(item.work.channel, "unavailable", item.started)
                self._finish(item, Unavailable(str(exc)[:200] or type(exc).__name__))
            if not isinstance(exc, Exception):
                raise
            return
        self._acknowledged(batch, fresh)

    def _acknowledged(self, batch: list[_Item], fresh: set[_Item]) -> None:
        for item in batch:
            self._report(item.work.channel, "handled" if item in fresh else "duplicate", item.started)
            self._finish(item, item in fresh)

    async def _transaction(
        self, batch: list[_Item]
    ) -> tuple[set[_Item], list[deliveries.Outgoing], dict[tuple[str, str], list[int]]]:
        """One transaction for the batch: take the keys, apply the channels' changes, step the core, queue
        the replies. Returns the deliveries handled, the outbox rows added, and (for the sender, when this
        process sends) the rows of their chats that were pending before."""
        now = self.clock()
        for item in batch:
            if item.work.incoming is not None:
                self.service.prematch(item.work.incoming)  # the slow part, before the write lock (bot/service.py)
        chats = [f"{item.work.channel}:{item.work.chat_id}" for item in batch]
        marks: list[int] = []
        try:
            async with self.db.locked_many(chats, by_first_statement=True) as session:
                fresh, rows, earlier = await self._steps(session, batch, chats, now, marks)
        except BaseException:
            if marks:
                self.sender.marks_not_recorded(marks)
            raise
        if marks:
            self.sender.marks_recorded(marks)
        return fresh, rows, earlier

    async def _steps(
        self, session: AsyncSession, batch: list[_Item], chats: list[str], now: datetime, marks: list[int]
    ) -> tuple[set[_Item], list[deliveries.Outgoing], dict[tuple[str, str], list[int]]]:
        """The batch's statements, in the transaction holding its chats' locks (see `_transaction`); the
        sent calls it records for the sender are added to `marks`."""
        # On PostgreSQL the chats' locks are taken by the same statement, before it records the keys.
        locks = () if self.db.is_sqlite else self.db.advisory_keys(chats)
        taken = await deliveries.take_many(
            session, [(item.work.channel, item.work.key) for item in batch], now, locks=locks, flush_later=self.db.reply_before_flush
        )
        fresh: list[_Item] = []
        for item in batch:
            key = (item.work.channel, item.work.key[: deliveries.KEY_LENGTH])
            if key in taken:
                taken.discard(key)  # the same key twice in a batch: the second is a duplicate
                fresh.append(item)
        for item in fresh:
            if item.work.apply is not None:
                await item.work.apply(session)
        asking = [item for item in fresh if item.work.incoming is not None]
        # The rows the core's step produced are written with the outbox rows (one statement on PostgreSQL).
        writes = batch_store.Writes()
        answers = await self.service.handle_many(
            session, [item.work.incoming for item in asking], [item.started for item in asking], leave=writes
        )
        replies = dict(zip(asking, answers, strict=True))
        calls = []
        for item in fresh:
            work = item.work
            said = list(work.replies) + replies.get(item, [])
            if said and work.render is not None:
                calls.append((work.channel, work.chat_id, work.render(said), work.user_id))
        # For this process's sender: the rows of these chats that were pending before (read in the same go).
        holding = bool(calls) and self.sender is not None and self.sender.holding
        if self.sender is not None:
            # The calls this process sent and has not recorded yet are recorded with this batch: on SQLite
            # one commit (one wait for the disk) instead of two, on PostgreSQL no statement of their own.
            marks.extend(self.sender.take_marks())
        rows, earlier = await batch_store.write(session, writes, calls, now, pending_before=holding, sent=marks)
        return set(fresh), rows, earlier

    async def _apologise(self, work: Work) -> bool:
        """Take a delivery whose handling failed and queue the generic error reply once."""
        async with self.db.locked(f"{work.channel}:{work.chat_id}") as session:
            if not await deliveries.take(session, work.channel, work.key, self.clock()):
                return False
            if work.render is not None and work.incoming is not None:
                calls = work.render([Reply(self.error_text())])
                await deliveries.enqueue(session, work.channel, work.chat_id, calls, self.clock(), user_id=work.user_id)
        if self.sender is not None:
            self.sender.wake()
        return True

    def _fail_followers(self, failed: list[_Item], reason: str) -> None:
        """Deliveries waiting behind failed ones of their chat fail too: handling them first would break
        the chat's order when the platform delivers the failed ones again."""
        keys: set[tuple[str, ...]] = set().union(*(item.keys for item in failed))
        left: list[_Item] = []
        for item in self._waiting:
            if item.keys & keys:
                keys |= item.keys
                self._report(item.work.channel, "unavailable", item.started)
                self._finish(item, Unavailable(reason))
            else:
                left.append(item)
        self._waiting = left

    @staticmethod
    def _finish(item: _Item, result: bool | BaseException) -> None:
        if item.done.done():
            return
        if isinstance(result, BaseException):
            item.done.set_exception(result)
        else:
            item.done.set_result(result)

    async def enqueue(
        self, channel: str, chat_id: str, calls: list[dict[str, Any]], *, user_id: str | None = None, kind: str = "reply"
    ) -> None:
        """Queue calls that answer no delivery (an announcement, a broadcast) behind the chat's others."""
        async with self.db.locked(f"{channel}:{chat_id}") as session:
            await deliveries.enqueue(session, channel, chat_id, calls, self.clock(), user_id=user_id, kind=kind)
        if self.sender is not None:
            self.sender.wake()

    def _report(self, channel: str, outcome: str, started: float) -> None:
        if self.on_handled is not None:
            self.on_handled(channel, outcome, time.perf_counter() - started)

    async def idle(self) -> None:
        """Wait until deliveries being received are handled and the sender has delivered what is due."""
        await self._quiet.wait()
        if self.sender is not None:
            await self.sender.drain()
