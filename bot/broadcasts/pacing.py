"""Pacing of one channel: an overall rate, a minimum spacing between two messages to one chat, and the
pauses a platform asks for (429 / RetryAfter).

Generic on purpose (no broadcast in here): any sender of a channel, such as an outbox of replies, can
share the channel's pacer, so that replies and broadcasts draw on one budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiolimiter import AsyncLimiter


@dataclass(frozen=True)
class PacingRules:
    """A channel's limits: messages a second overall, and seconds between two messages to one chat, by kind."""

    rate: float
    group_spacing: float
    private_spacing: float

    def spacing(self, kind: str) -> float:
        return self.group_spacing if kind == "group" else self.private_spacing


# Telegram: ~30 messages/s overall, ~20 a minute to one group, ~1/s to one private chat; we stay under.
TELEGRAM = PacingRules(rate=25.0, group_spacing=3.0, private_spacing=1.0)
# Zalo OA: about 4,000 requests a minute per app; Zalo Bot publishes none: the same, conservatively.
ZALO = PacingRules(rate=20.0, group_spacing=3.0, private_spacing=1.0)


class ChannelPacer:
    """Paces one channel. `acquire()` before each call; `chat_wait()` tells how long a chat must wait."""

    def __init__(self, rules: PacingRules, *, clock: Callable[[], float] = time.monotonic):
        self.rules = rules
        self.clock = clock
        # One token at a time, refilled every 1/rate s: a steady rate with no burst above it.
        self.limiter = AsyncLimiter(1, 1.0 / rules.rate)
        # The same rate again just before each call: what happens between the two (recording that the
        # call is about to be made) takes a varying time, and calls must not bunch up after it.
        self.spacer = AsyncLimiter(1, 1.0 / rules.rate)
        self._last: dict[str, float] = {}
        self._paused_until = 0.0
        self.paused_total = 0.0  # seconds of pause the platform demanded (for reports)

    def chat_wait(self, chat: str, kind: str) -> float:
        """Seconds before `chat` may receive another message (0 if it may now)."""
        last = self._last.get(chat)
        if last is None:
            return 0.0
        return max(0.0, last + self.rules.spacing(kind) - self.clock())

    def note_send(self, chat: str, *, ago: float = 0.0) -> None:
        """Record a call to `chat` (made now, or `ago` seconds ago), whatever its outcome: a failed call
        counts for spacing too."""
        now = self.clock()
        self._last[chat] = max(self._last.get(chat, float("-inf")), now - ago)
        if len(self._last) > 50_000:
            horizon = now - max(self.rules.group_spacing, self.rules.private_spacing)
            self._last = {k: v for k, v in self._last.items() if v > horizon}

    def pause(self, seconds: float) -> None:
        """The platform asked us to stop for `seconds`: every call on this channel waits."""
        until = self.clock() + max(0.0, seconds)
        if until > self._paused_until:
            self.paused_total += until - max(self._paused_until, self.clock())
            self._paused_until = until

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.clock())

    async def acquire(self, lead: float = 0.0) -> None:
        """Wait for a slot in the overall rate, and for a pause to end — up to `lead` seconds before its
        end, for what must precede a call (recording it) to be done when the pause ends; `space()` then
        waits for the end itself."""
        await self._through(self.limiter, lead)

    async def space(self) -> None:
        """Just before a call (after `acquire` and whatever came since): keep the calls evenly spaced and
        wait for the end of any pause."""
        await self._through(self.spacer, 0.0)

    async def _through(self, limiter: AsyncLimiter, lead: float) -> None:
        while True:
            wait = self.paused_for() - lead
            if wait > 0:
                await asyncio.sleep(wait)
            await limiter.acquire()
            if self.paused_for() <= lead:
                return
