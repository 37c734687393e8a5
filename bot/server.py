"""The aiohttp application that carries every configured channel, the pipeline, /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import gc
import hmac
import importlib
import ipaddress
import logging
import signal
import socket
from asyncio import selector_events, sslproto
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import text

from bot.catalog import Catalog, load_catalog
from bot.config import Settings
from bot.metrics import Metrics
from bot.pipeline import Pipeline, Sender, is_unavailable
from bot.service import ChatService
from bot.startup import say
from storage import erasure, stats
from storage import deliveries
from storage.db import Database

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", ChatService)
DATABASE = web.AppKey("database", Database)
CHANNELS = web.AppKey("channels", dict)
PIPELINE = web.AppKey("pipeline", Pipeline)
SENDER = web.AppKey("sender", Sender)
METRICS = web.AppKey("metrics", Metrics)
ROLE = web.AppKey("role", str)
READY = web.AppKey("ready", dict)
# Set when every start-up hook has run: the server listens right after (a webhook registered from then on
# can be called back at once, as Zalo Bot's setWebhook does).
STARTED = web.AppKey("started", asyncio.Event)
ROLES = ("all", "web", "sender")

# Each module exposes `setup(app) -> str | None`: it wires its routes and start-up/clean-up
# hooks when its credentials are configured, and returns why it is off otherwise.
CHANNEL_MODULES = ("bot.channels.telegram", "bot.channels.zalo_bot", "bot.channels.zalo_oa", "bot.web.chat")
# The name a channel's status shows under, where it is not the module's own name.
CHANNEL_NAMES = {"bot.web.chat": "web"}


@dataclass
class ChannelStatus:
    name: str
    on: bool
    detail: str
    # Why the channel cannot reach its platform now ("" when it can): /healthz reports it failing.
    unreachable: str = ""

    def cannot_reach(self, platform: str, reason: str) -> None:
        """Record that the platform is out of reach; said once in the log until it is reached again."""
        first = not self.unreachable
        self.unreachable = say("channel_unreachable", platform=platform, reason=reason[:200])
        if first:
            log.error("%s: %s", self.name, self.unreachable)

    def reached(self) -> None:
        if self.unreachable:
            log.warning("%s: reached its platform again", self.name)
        self.unreachable = ""


PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def may_see_details(request: web.Request, token: str | None) -> bool:
    """Whether /healthz may show details: a request from this machine (not relayed by a proxy), or the token."""
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or request.query.get("token", "")
        if given and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode()):
            return True
    if any(name in request.headers for name in PROXY_HEADERS):
        return False  # a reverse proxy on this machine relays strangers from loopback
    try:
        return ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


async def healthz(request: web.Request) -> web.Response:
    """Up or down for anyone; the database error and each channel's state only for the operator."""
    db = request.app[DATABASE]
    details = may_see_details(request, request.app[SETTINGS].healthz_token)
    try:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # the probe must answer, whatever broke
        body = {"ok": False, "database": str(exc)[:200]} if details else {"ok": False}
        return web.json_response(body, status=503)
    statuses = request.app[CHANNELS]
    channels = {name: status.detail for name, status in statuses.items()}
    failing = {name: status.unreachable for name, status in statuses.items() if status.unreachable}
    if failing:
        # A channel that cannot reach its platform neither receives nor sends: the bot is not healthy.
        body = {"ok": False, "channels": channels, "failing": failing} if details else {"ok": False}
        return web.json_response(body, status=503)
    if not details:
        return web.json_response({"ok": True})
    return web.json_response({"ok": True, "role": request.app[ROLE], "channels": channels})
async def readyz(request: web.Request) -> web.Response:
    """Ready to take traffic: database reachable, migrations applied, and the sender not falling behind."""
    app = request.app
    settings = app[SETTINGS]
    body: dict = {"role": app[ROLE], "migrated": app[READY].get("migrated", False)}
    ok = body["migrated"]
    try:
        async with asyncio.timeout(2):
            async with app[DATABASE].transaction() as session:
                pending, oldest = await deliveries.depth(session)
        body["database"] = "ok"
        lag = (app[SERVICE].clock() - _aware(oldest)).total_seconds() if oldest is not None else 0.0
        body.update(outbox_pending=pending, sender_lag_seconds=round(max(lag, 0.0), 3))
        app[METRICS].outbox(pending, max(lag, 0.0))
        if lag > settings.sender_max_lag_seconds:
            ok = False
            body["sender"] = say("readyz_sender_behind", seconds=f"{lag:.0f}")
    except Exception as exc:  # the probe must answer, whatever broke
        ok = False
        body["database"] = type(exc).__name__ if is_unavailable(exc) else say("readyz_database_error", error=type(exc).__name__)
    sender = app[SENDER]
    body["sender_here"] = sender.holding
    from bot.broadcasts.runner import BROADCAST_SENDER

    body["broadcast_sender_here"] = BROADCAST_SENDER in app and app[BROADCAST_SENDER].lease_valid()
    body["ok"] = ok
    return web.json_response(body, status=200 if ok else 503)


def _aware(when):
    from datetime import timezone

    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    try:
        async with asyncio.timeout(2):
            async with app[DATABASE].transaction() as session:
                pending, oldest = await deliveries.depth(session)
        lag = (app[SERVICE].clock() - _aware(oldest)).total_seconds() if oldest is not None else 0.0
        app[METRICS].outbox(pending, max(lag, 0.0))
    except Exception:
        pass
    body, content_type = app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def default_instance(settings: Settings) -> str:
    """The sender lease holder's name: stable for a host and port, so a restarted process takes its lease back at once."""
    return settings.instance_name or f"{socket.gethostname()}:{settings.port}"


RETENTION_EVERY = 3600.0


async def apply_retention(app: web.Application) -> tuple[int, int]:
    """Delete question texts past their retention and forgotten tombstones; return (texts, tombstones)."""
    settings, service = app[SETTINGS], app[SERVICE]
    async with app[DATABASE].transaction() as session:
        texts, tombstones = await erasure.apply_retention(session, service.clock(), settings.query_text_retention_days)
    if texts or tombstones:
        log.info("retention: %d question text(s) and %d erasure record(s) deleted", texts, tombstones)
    return texts, tombstones


def setup_periodic(app: web.Application, name: str, every: float, job: Callable[[web.Application], Awaitable[object]]) -> None:
    """Run `job` at start and then every `every` seconds in the background, until shutdown."""
    tasks: list[asyncio.Task] = []

    async def loop() -> None:
        while True:
            try:
                await job(app)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a while: next round
                log.exception("%s: failed, trying again in %.0f s", name, every)
            await asyncio.sleep(every)

    async def start(_app: web.Application) -> None:
        tasks.append(asyncio.get_running_loop().create_task(loop(), name=name))

    async def stop(_app: web.Application) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


def setup_retention(app: web.Application) -> None:
    """Apply the retention rules at start and then every hour, in the background."""
    setup_periodic(app, "retention", RETENTION_EVERY, apply_retention)


GROUPING_EVERY = 60.0
# How soon a process that did not serve the admin's click uses newly accepted examples.
EXAMPLES_EVERY = 60.0


def setup_examples(app: web.Application) -> None:
    """Use the FAQ examples accepted on the dashboard: at start, then whenever they change."""

    async def check(_app: web.Application) -> None:
        await _app[SERVICE].load_examples()

    setup_periodic(app, "accepted examples", EXAMPLES_EVERY, check)


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


def setup_core(
    app: web.Application, settings: Settings, catalog: Catalog, db: Database, *, role: str = "all", instance: str | None = None
) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    app[SETTINGS] = settings
    app[DATABASE] = db
    app[ROLE] = role
    app[READY] = {}
    app[STARTED] = asyncio.Event()
    service = ChatService(db, catalog, settings)
    app[SERVICE] = service
    app[METRICS] = Metrics()
    sender = Sender(
        db,
        holder=instance or default_instance(settings),
        lease_ttl=settings.sender_lease_seconds,
        poll=settings.sender_poll_seconds,
        concurrency=settings.sender_concurrency,
        clock=service.clock,
    )
    app[SENDER] = sender
    # A web-only process leaves sending to the sender process (woken by NOTIFY on PostgreSQL).
    app[PIPELINE] = Pipeline(
        service,
        sender if role != "web" else None,
        batch=settings.pipeline_batch,
        concurrency=settings.pipeline_concurrency,
    )
    app[METRICS].watch(app[PIPELINE], sender, service)
    app[CHANNELS] = {}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)

    async def migrate(_app: web.Application) -> None:
        await db.migrate()
        await _app[SERVICE].load_salt()
        _app[READY]["migrated"] = True

    async def close(_app: web.Application) -> None:
        await db.close()

    app.on_startup.insert(0, migrate)
    app.on_cleanup.append(close)


def setup_sender(app: web.Application) -> None:
    """Start the sender after the channels (it sends through them); stop it after they stopped
    receiving and before they close their clients."""

    async def start_sender(_app: web.Application) -> None:
        if _app[ROLE] != "web":
            await _app[SENDER].start()

    async def stop_sender(_app: web.Application) -> None:
        await _app[SENDER].stop(_app[SETTINGS].sender_drain_seconds)

    app.on_startup.append(start_sender)
    app.on_shutdown.append(stop_sender)


def setup_channels(app: web.Application) -> None:
    for module_name in CHANNEL_MODULES:
        short = CHANNEL_NAMES.get(module_name) or module_name.rsplit(".", 1)[-1]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            app[CHANNELS][short] = ChannelStatus(short, False, say("channel_off", reason=say("channel_not_shipped")))
            continue
        reason = module.setup(app)
        detail = say("channel_off", reason=reason) if reason else say("channel_on")
        app[CHANNELS][short] = ChannelStatus(short, reason is None, detail)


def create_app(
    settings: Settings,
    catalog: Catalog,
    db: Database | None = None,
    *,
    role: str = "all",
    instance: str | None = None,
) -> web.Application:
    """Build the application: the core and the pipeline, then every channel whose credentials are set."""
    app = web.Application(client_max_size=1024 * 1024)
    setup_core(app, settings, catalog, db or Database(settings.database_url, reply_before_flush=settings.pipeline_reply_before_flush), role=role, instance=instance)
    setup_reload(app)
    setup_retention(app)
    setup_examples(app)
    setup_channels(app)
    setup_dashboard(app)
    setup_sender(app)
    setup_broadcasts(app)
    setup_started(app)  # last: it marks the end of the start-up hooks
    return app


def setup_broadcasts(app: web.Application) -> None:
    """The broadcast sender (bot/broadcasts/), one per deployment by its lease; not in a web-only process."""
    from bot.broadcasts.runner import setup

    setup(app)


def setup_gc(app: web.Application) -> None:
    """After start-up, move everything loaded so far (content, the FAQ matcher's indexes, libraries) out of
    the garbage collector's sight (`gc.freeze`): it lives as long as the process, and without this every
    full collection walks it all again — measured 140–390 ms with the event loop stopped on a busy machine,
    a stall every few seconds under load that set the tail latency (BENCHMARKS.md, issue 11). For `serve`
    only (a test's process would keep its garbage)."""

    async def freeze(_app: web.Application) -> None:
        gc.collect()
        gc.freeze()

    app.on_startup.append(freeze)


def setup_socket_reads(read_bytes: int) -> None:
    """Read sockets in pieces of at most `read_bytes` (`CCCD_SOCKET_READ_BYTES`) instead of asyncio's 256 KiB.

    asyncio reads a plain socket with `sock.recv(256 KiB)` and a TLS one with `SSLObject.read(256 KiB)`:
    CPython allocates the whole 256 KiB for each read, then shrinks it to what arrived (a few hundred
    bytes: a webhook, a PostgreSQL reply, a Bot API answer). Once glibc's mmap threshold has risen
    (start-up frees large blocks, which raises it), those blocks come from the heap, and each one that a
    longer-lived allocation lands behind leaves a hole just short of the next 256 KiB request: under load
    the heap grew by 1.5–3 MB a minute on PostgreSQL (a dozen reads an update) and never shrank. With
    16 KiB pieces the holes are reused and the heap stays flat (BENCHMARKS.md, issue 11, "Memory"); a
    larger message is read in several pieces. 0 restores asyncio's own size. The size is the event
    loop's, for every connection of the process (webhooks, the database, the platforms' APIs): `serve`
    sets it at start.
    """
    for cls, default in _ASYNCIO_READ_SIZES.items():
        cls.max_size = read_bytes or default


# asyncio's own read sizes (256 KiB each), as the classes define them.
_ASYNCIO_READ_SIZES = {
    selector_events._SelectorSocketTransport: selector_events._SelectorSocketTransport.max_size,
    sslproto.SSLProtocol: sslproto.SSLProtocol.max_size,
}


def setup_started(app: web.Application) -> None:
    """Set app[STARTED] (made in setup_core) after the other start-up hooks: this one is added last."""

    async def started(_app: web.Application) -> None:
        _app[STARTED].set()

    app.on_startup.append(started)


def setup_dashboard(app: web.Application) -> None:
    """The officers' dashboard at /admin, on the same database and content as the chat."""
    from bot.web.app import PREFIX, DashboardConfig, create_dashboard

    service = app[SERVICE]
    config = DashboardConfig(
        db=app[DATABASE],
        settings=app[SETTINGS],
        catalog=lambda: service.catalog,
        on_registry_change=service.forget_hamlets,
        on_examples_change=service.load_examples,
        on_visits_change=service.forget_visits,
    )
    app.add_subapp(PREFIX, create_dashboard(config))
    from bot.web.media import add_public_route

    add_public_route(app, app[DATABASE])  # broadcasts' images, fetched by Zalo

    async def group_questions(_app: web.Application) -> None:
        await config.grouper.catch_up(_app[DATABASE])

    # New wordings of unanswered questions join their group in the background, so the page rarely has to.
    setup_periodic(app, "question grouping", GROUPING_EVERY, group_questions)
