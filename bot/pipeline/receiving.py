"""Receiving: a delivery is taken once and handled in one transaction with everything it changes.

`Pipeline.receive(work)` runs, under the chat's lock (in this process and, on PostgreSQL, across
processes): record the delivery's key in the inbox (a key seen before ends it: a retry or a duplicate),
apply the channel's own changes, step the core, and add the rendered replies to the outbox — then one
COMMIT. A crash before the commit leaves nothing, so the platform's retry (no 2xx answer, or an
unconfirmed long-poll offset) handles it cleanly; a crash after it leaves the replies in the outbox for
the sender, and the key stops the retry. When the database is away the caller answers non-2xx
(`Unavailable`), so the platform retries instead of the person getting an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Incoming, Reply
from bot.pipeline.errors import is_unavailable
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


class Pipeline:
    """Receive deliveries for every channel and hand their replies to the sender."""

    def __init__(self, service: ChatService, sender: Sender | None = None, *, clock: Callable[[], datetime] | None = None):
        self.service = service
        self.db = service.db
        self.sender = sender
        self.clock = clock or service.clock
        self.error_text = lambda: service.catalog.msg("error")
        # Hooks for metrics: (channel, outcome, seconds).
        self.on_handled: Callable[[str, str, float], None] | None = None
        self._receiving = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    async def receive(self, work: Work) -> bool:
        """Handle a delivery once; False when it was taken before. Raises Unavailable when the database is away."""
        started = time.perf_counter()
        self._receiving += 1
        self._quiet.clear()
        try:
            fresh = await self._receive(work, started)
        finally:
            self._receiving -= 1
            if not self._receiving:
                self._quiet.set()
        if fresh and self.sender is not None:
            self.sender.wake()
        return fresh

    async def _receive(self, work: Work, started: float) -> bool:
        for attempt in (1, 2):
            try:
                # The erasure check needs the pseudonym salt: loaded once, outside the chat's lock.
                await self.service.load_salt()
                return await self._transaction(work, started)
            except Exception as exc:
                if is_unavailable(exc):
                    # A connection the database dropped (restart) is replaced at once: try once more.
                    if attempt == 1:
                        continue
                    self._report(work.channel, "unavailable", started)
                    raise Unavailable(str(exc)[:200]) from exc
                log.exception("%s: handling delivery %s failed", work.channel, work.key)
                break
        # A bug, not an outage: a retry would fail the same way. Take the delivery and say sorry once.
        try:
            async with self.db.locked(f"{work.channel}:{work.chat_id}") as session:
                if not await deliveries.take(session, work.channel, work.key, self.clock()):
                    return False
                if work.render is not None and work.incoming is not None:
                    calls = work.render([Reply(self.error_text())])
                    await deliveries.enqueue(session, work.channel, work.chat_id, calls, self.clock(), user_id=work.user_id)
        except Exception as exc:
            if is_unavailable(exc):
                raise Unavailable(str(exc)[:200]) from exc
            raise
        self._report(work.channel, "error", started)
        return True

    async def _transaction(self, work: Work, started: float) -> bool:
        if work.incoming is not None:
            self.service.prematch(work.incoming)  # the slow part, before the write lock (bot/service.py)
        async with self.db.locked(f"{work.channel}:{work.chat_id}", write=True) as session:
            if not await deliveries.take(session, work.channel, work.key, self.clock()):
                self._report(work.channel, "duplicate", started)
                return False
            if work.apply is not None:
                await work.apply(session)
            replies = list(work.replies)
            if work.incoming is not None:
                replies += await self.service.handle_in(session, work.incoming, started)
            if replies and work.render is not None:
                calls = work.render(replies)
                await deliveries.enqueue(session, work.channel, work.chat_id, calls, self.clock(), user_id=work.user_id)
        self._report(work.channel, "handled", started)
        return True

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

    async def receive_all(self, works: Iterable[Work]) -> None:
        """Handle a batch (a long poll's updates): each chat's in order, chats side by side."""
        by_chat: dict[str, list[Work]] = defaultdict(list)
        for work in works:
            by_chat[work.chat_id].append(work)

        async def one_chat(items: list[Work]) -> None:
            for item in items:
                await self.receive(item)

        results = await asyncio.gather(*(one_chat(items) for items in by_chat.values()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def idle(self) -> None:
        """Wait until deliveries being received are handled and the sender has delivered what is due."""
        await self._quiet.wait()
        if self.sender is not None:
            await self.sender.drain()
