"""Build and run the broadcast sender from the settings (the shell around bot/broadcasts/sender.py).

Two ways to run it: inside the server (`cccd-bot serve`, roles `all` and `sender`; `setup` below), where
it shares the channels' clients, or alone (`cccd-bot broadcast send`). Either way the lease in the
database lets exactly one sender run per deployment; the others wait and take over when it dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import AsyncExitStack

from aiohttp import web

from bot.broadcasts.adapters import Adapter, TelegramAdapter, ZaloBotAdapter, ZaloOAAdapter
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
        weekly_summary=settings.broadcast_weekly_summary,
    )


async def telegram_bot(settings: Settings):
    from telegram import Bot
    from telegram.request import HTTPXRequest

    os.environ.setdefault("PTB_TIMEDELTA", "true")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines contain the token
    request = HTTPXRequest(
        connection_pool_size=settings.broadcast_concurrency + 2,
        read_timeout=settings.broadcast_read_timeout,
        connect_timeout=5.0,
    )
    bot = Bot(settings.telegram_token or "", base_url=settings.telegram_base_url, request=request)
    await bot.initialize()
    return bot


BROADCAST_SENDER = web.AppKey("broadcast_sender", Sender)


def make_adapters(settings: Settings, *, telegram=None, zalo_bot=None, zalo_oa=None) -> dict[str, Adapter]:
    """The broadcast adapters over the channels' clients, for the server and for `cccd-bot broadcast send`.

    Each argument is `(client, ready)` or None (channel off): Telegram's PTB Bot, the Zalo Bot channel's
    API client, the Zalo OA channel (tokens kept there); `ready` is set once the channel is connected.
    """
    timeout = settings.broadcast_read_timeout
    adapters: dict[str, Adapter] = {}
    if telegram is not None:
        adapters["telegram"] = TelegramAdapter(telegram[0], telegram[1], read_timeout=timeout)
    if zalo_bot is not None:
        adapters["zalo_bot"] = ZaloBotAdapter(zalo_bot[0], zalo_bot[1], read_timeout=timeout, public_url=settings.public_url)
    if zalo_oa is not None:
        adapters["zalo_oa"] = ZaloOAAdapter(zalo_oa[0], zalo_oa[1], public_url=settings.public_url)
    return adapters


def server_adapters(app: web.Application) -> dict[str, Adapter]:
    """An adapter for each channel the server runs, on the channel's own client."""
    from bot.channels.telegram import TELEGRAM
    from bot.channels.zalo_bot import ZALO_BOT
    from bot.channels.zalo_oa import ZALO_OA
    from bot.server import SETTINGS

    return make_adapters(
        app[SETTINGS],
        telegram=(app[TELEGRAM].bot, app[TELEGRAM].ready) if TELEGRAM in app else None,
        zalo_bot=(app[ZALO_BOT].api, app[ZALO_BOT].ready) if ZALO_BOT in app else None,
        zalo_oa=(app[ZALO_OA], app[ZALO_OA].ready) if ZALO_OA in app else None,
    )


def setup(app: web.Application) -> None:
    """Run the broadcast sender in the server, except in a web-only process.

    Wired after the channels: it starts after them (it sends through their clients) and stops at
    shutdown, before they close those clients. It holds the lease under the server's instance name
    (<host>:<port>), so a server restarted after a crash takes its lease back at once.
    """
    from bot.server import DATABASE, ROLE, SENDER, SERVICE, SETTINGS

    if app[ROLE] == "web":
        return
    settings: Settings = app[SETTINGS]

    sender = Sender(
        app[DATABASE],
        {},
        pacers(settings),
        config=config(settings),
        clock=app[SERVICE].clock,
        # The reply sender's name (<host>:<port> unless CCCD_INSTANCE_NAME), for this job's own lease.
        holder=f"{app[SENDER].holder}/broadcasts",
    )
    app[BROADCAST_SENDER] = sender
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []

    async def start(_app: web.Application) -> None:
        sender.adapters.update(server_adapters(_app))
        stop.clear()
        tasks.append(asyncio.get_running_loop().create_task(_keep_running(sender, stop), name="broadcast-sender"))

    async def halt(_app: web.Application) -> None:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.on_startup.append(start)
    app.on_shutdown.append(halt)


async def _keep_running(sender: Sender, stop: asyncio.Event) -> None:
    """Run the sender until stopped; after an unexpected error (the database away), start again."""
    while not stop.is_set():
        try:
            await sender.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("broadcast sender: stopped on an error; starting again in 5 s")
            try:
                await asyncio.wait_for(stop.wait(), 5)
            except asyncio.TimeoutError:
                pass


async def run(settings: Settings, *, until_idle: bool = False) -> None:
    """Send until stopped (SIGINT/SIGTERM) or, with `until_idle`, until nothing is left to send.

    The channels' clients are opened for sending only (nothing is received here: the server does that),
    and the adapters over them are the server's (`make_adapters`).
    """
    db = Database(settings.database_url)
    await db.migrate()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(db.close)
        telegram = zalo_bot = zalo_oa = None
        if settings.telegram_token:
            bot = await telegram_bot(settings)
            stack.push_async_callback(bot.shutdown)
            telegram = (bot, None)
        if settings.zalo_bot_token:
            import aiohttp

            from bot.channels.zalo_bot import ZaloBotApi

            http = aiohttp.ClientSession()
            stack.push_async_callback(http.close)
            zalo_bot = (ZaloBotApi(settings.zalo_bot_token, settings.zalo_bot_base_url, http=http), None)
        if settings.zalo_oa_app_id and settings.zalo_oa_secret_key:
            oa = await zalo_oa_sender(settings, db)
            stack.push_async_callback(oa.close)
            stack.push_async_callback(oa.stop)
            zalo_oa = (oa, oa.ready)
        # A delivery to a channel without an adapter fails with "channel not configured" rather than waiting for ever.
        sender = Sender(db, make_adapters(settings, telegram=telegram, zalo_bot=zalo_bot, zalo_oa=zalo_oa), pacers(settings), config=config(settings))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await sender.run(stop, until_idle=until_idle)


async def zalo_oa_sender(settings: Settings, db: Database):
    """The Zalo OA channel as `serve --role sender` runs it: sending only, its tokens kept in the database."""
    from bot.catalog import load_catalog
    from bot.channels.zalo_oa import ZaloOAChannel
    from bot.service import ChatService

    channel = ZaloOAChannel(ChatService(db, load_catalog(settings.content_dir), settings), settings, receive=False)
    await channel.start()
    return channel
