"""What the platform channels share: start and stop with the server, secrets, timestamps, mentions.

How a delivery travels after a channel has verified and parsed it (taken once, handled in one
transaction, replies delivered in order) lives in bot/pipeline/.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from bot.normalize import fold

log = logging.getLogger(__name__)


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


def has_question_word(text: str, words: Sequence[str]) -> bool:
    """True when `text` contains one of the commune's question words as whole words (diacritics ignored)."""
    folded = fold(text)
    for word in words:
        target = fold(word).strip()
        if target and re.search(rf"(?<!\w){re.escape(target)}(?!\w)", folded):
            return True
    return False


class Typing:
    """Show "typing…" in a chat when the first reply to a message has not gone out after `delay` seconds.

    `expect(chat)` is called when a message that gets an answer arrives; `sent(chat)` when a reply to that
    chat was delivered. One indicator at most per message; a delay of 0 turns the indicator off.
    """

    def __init__(self, send: Callable[[str], Awaitable[object]], delay: float, *, limit: float = 30.0):
        self.send = send
        self.delay = delay
        self.limit = limit
        self._timers: dict[str, asyncio.Task] = {}

    def expect(self, chat_id: str) -> None:
        if self.delay <= 0 or chat_id in self._timers:
            return
        task = asyncio.ensure_future(self._later(chat_id))
        self._timers[chat_id] = task
        task.add_done_callback(lambda t, chat_id=chat_id: self._timers.pop(chat_id, None) if self._timers.get(chat_id) is t else None)

    def sent(self, chat_id: str) -> None:
        task = self._timers.pop(chat_id, None)
        if task is not None:
            task.cancel()

    async def _later(self, chat_id: str) -> None:
        await asyncio.sleep(self.delay)
        try:
            await asyncio.wait_for(self.send(chat_id), self.limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a typing indicator is a courtesy: never an error
            log.debug("typing indicator in %s failed: %s", chat_id, exc)

    async def close(self) -> None:
        timers, self._timers = list(self._timers.values()), {}
        for task in timers:
            task.cancel()
        await asyncio.gather(*timers, return_exceptions=True)


def run_with_server(app: web.Application, name: str, channel: Any) -> None:
    """Start `channel` with the server and show its state under `name` at /healthz.

    At shutdown the channel stops receiving first (on_shutdown, before the sender drains the outbox
    through its clients), and closes its clients last (on_cleanup).
    """
    from bot.server import CHANNELS, SENDER  # late: the command line loads channel modules without the server

    app[SENDER].register(channel.name, channel, channel.pacer())

    async def on_startup(_app: web.Application) -> None:
        channel.status = _app[CHANNELS].get(name)
        await channel.start()

    async def on_shutdown(_app: web.Application) -> None:
        await channel.stop()

    async def on_cleanup(_app: web.Application) -> None:
        await channel.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.insert(0, on_cleanup)
