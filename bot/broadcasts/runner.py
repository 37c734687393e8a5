"""Build and run the broadcast sender from the settings (the shell around bot/broadcasts/sender.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from bot.broadcasts.adapters import TelegramAdapter
from bot.broadcasts.pacing import ZALO, ChannelPacer, PacingRules
from bot.broadcasts.sender import Sender, SenderConfig
from bot.config import Settings
from storage.db import Database

log = logging.getLogger(__name__)


def pacers(settings: Settings) -> dict[str, ChannelPacer]:
    group, private = settings.broadcast_group_spacing, settings.broadcast_private_spacing
    return {
        "telegram": ChannelPacer(PacingRules(settings.broadcast_telegram_rate, group, private)),
        "zalo_oa": ChannelPacer(PacingRules(settings.broadcast_zalo_rate, max(group, ZALO.group_spacing), private)),
        "zalo_bot": ChannelPacer(PacingRules(settings.broadcast_zalo_rate, max(group, ZALO.group_spacing), private)),
    }


def config(settings: Settings) -> SenderConfig:
    return SenderConfig(
        concurrency=settings.broadcast_concurrency,
        max_attempts=settings.broadcast_max_attempts,
        lease_ttl=settings.broadcast_lease_ttl,
    )


async def telegram_bot(settings: Settings):
    from telegram import Bot
    from telegram.request import HTTPXRequest

    os.environ.setdefault("PTB_TIMEDELTA", "true")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines contain the token
    request = HTTPXRequest(
        connection_pool_size=settings.broadcast_concurrency + 2,
        read_timeout=float(os.environ.get("CCCD_BROADCAST_READ_TIMEOUT", "10")),
        connect_timeout=5.0,
    )
    bot = Bot(settings.telegram_token or "", base_url=settings.telegram_base_url, request=request)
    await bot.initialize()
    return bot


async def run(settings: Settings, *, until_idle: bool = False) -> None:
    """Send until stopped (SIGINT/SIGTERM) or, with `until_idle`, until nothing is left to send."""
    db = Database(settings.database_url)
    await db.migrate()
    adapters = {}
    bot = None
    if settings.telegram_token:
        bot = await telegram_bot(settings)
        adapters["telegram"] = TelegramAdapter(bot)
    # Zalo OA/Bot adapters follow the same shape (bot/broadcasts/adapters.py); without one, a delivery
    # to that channel fails with "channel not configured" rather than waiting for ever.
    sender = Sender(db, adapters, pacers(settings), config=config(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await sender.run(stop, until_idle=until_idle)
    finally:
        if bot is not None:
            await bot.shutdown()
        await db.close()
