"""The aiohttp application that carries every configured channel, plus /healthz."""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import text

from bot.catalog import Catalog, load_catalog
from bot.config import Settings
from bot.service import ChatService
from storage.db import Database

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", ChatService)
DATABASE = web.AppKey("database", Database)
CHANNELS = web.AppKey("channels", dict)

# Each module exposes `setup(app) -> str | None`: it wires its routes and start-up/clean-up
# hooks when its credentials are configured, and returns why it is off otherwise.
CHANNEL_MODULES = ("bot.channels.telegram", "bot.channels.zalo_bot", "bot.channels.zalo_oa")


@dataclass
class ChannelStatus:
    name: str
    on: bool
    detail: str


async def healthz(request: web.Request) -> web.Response:
    db = request.app[DATABASE]
    try:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # the probe must answer, whatever broke
        return web.json_response({"ok": False, "database": str(exc)[:200]}, status=503)
    channels = {name: status.detail for name, status in request.app[CHANNELS].items()}
    return web.json_response({"ok": True, "channels": channels})


def reload_content(app: web.Application) -> bool:
    """Load the content again and use it if valid; keep the running content otherwise."""
    catalog = load_catalog(app[SETTINGS].content_dir)
    if catalog.problems:
        for problem in catalog.problems:
            log.error("content not reloaded: %s", problem)
        return False
    app[SERVICE].reload_content(catalog)
    log.info("content reloaded: %d topics", len(catalog.topics))
    return True


def setup_reload(app: web.Application) -> None:
    """Reload content on SIGHUP, so edited FAQ examples take effect without a restart."""

    async def install(_app: web.Application) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_content, app)
        except (NotImplementedError, RuntimeError, ValueError):
            log.warning("SIGHUP reload is not available on this platform")

    async def remove(_app: web.Application) -> None:
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    app.on_startup.append(install)
    app.on_cleanup.append(remove)


def setup_core(app: web.Application, settings: Settings, catalog: Catalog, db: Database) -> None:
    app[SETTINGS] = settings
    app[DATABASE] = db
    app[SERVICE] = ChatService(db, catalog, settings)
    app[CHANNELS] = {}
    app.router.add_get("/healthz", healthz)

    async def migrate(_app: web.Application) -> None:
        await db.migrate()

    async def close(_app: web.Application) -> None:
        await db.close()

    app.on_startup.insert(0, migrate)
    app.on_cleanup.append(close)


def setup_channels(app: web.Application) -> None:
    for module_name in CHANNEL_MODULES:
        short = module_name.rsplit(".", 1)[-1]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            app[CHANNELS][short] = ChannelStatus(short, False, "off: not built in this version")
            continue
        reason = module.setup(app)
        detail = f"off: {reason.removeprefix('off: ')}" if reason else "on"
        app[CHANNELS][short] = ChannelStatus(short, reason is None, detail)


def create_app(settings: Settings, catalog: Catalog, db: Database | None = None) -> web.Application:
    """Build the application: the core, then every channel whose credentials are set."""
    app = web.Application(client_max_size=1024 * 1024)
    setup_core(app, settings, catalog, db or Database(settings.database_url))
    setup_reload(app)
    setup_channels(app)
    setup_dashboard(app)
    return app


def setup_dashboard(app: web.Application) -> None:
    """The officers' dashboard at /admin, on the same database and content as the chat."""
    from bot.web.app import PREFIX, DashboardConfig, create_dashboard

    service = app[SERVICE]
    config = DashboardConfig(
        db=app[DATABASE], settings=app[SETTINGS], catalog=lambda: service.catalog, on_registry_change=service.forget_hamlets
    )
    app.add_subapp(PREFIX, create_dashboard(config))
