"""The officers' dashboard as an aiohttp sub-application, mounted at /admin by `cccd-bot serve`."""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import get_session
from aiohttp_session import setup as setup_sessions
from cryptography.fernet import Fernet
from markupsafe import Markup

from bot.catalog import Catalog
from bot.config import Settings
from bot.unanswered import Grouper
from bot.web import auth, charts
from bot.web.texts import WebTexts, load_dashboard_texts
from storage import kv
from storage.db import Database
from storage.models import WebAccount

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
PREFIX = "/admin"
SECRET_KEY_NAME = "web_session_key"
SESSION_HOURS = 8


@dataclass
class DashboardConfig:
    """What the dashboard needs from the rest of the bot; tests build it directly."""

    db: Database
    settings: Settings
    catalog: Callable[[], Catalog]  # the content in use now (it can be reloaded)
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    throttle: auth.LoginThrottle = field(default_factory=auth.LoginThrottle)
    session_key: bytes | None = None
    on_registry_change: Callable[[], None] | None = None  # hamlets changed: the chat core reloads them
    on_examples_change: Callable[[], Awaitable[object]] | None = None  # accepted examples changed: the matcher reloads
    grouper: Grouper = field(default_factory=Grouper)  # groups the unanswered questions' wordings
    on_visits_change: Callable[[], None] | None = None  # mobile teams' visits changed: the FAQ answer reads them again


CONFIG = web.AppKey("dashboard_config", DashboardConfig)
VIEWER = web.RequestKey("dashboard_viewer", auth.Viewer)  # the signed-in person


def api_path(path: str) -> bool:
    """Exports and API calls answer 401/403; pages redirect to the login instead."""
    return path.startswith((f"{PREFIX}/export/", f"{PREFIX}/api/"))


@web.middleware
async def access_middleware(request: web.Request, handler):
    allowed = getattr(request.match_info.handler, auth.ROLES_ATTR, None)
    if allowed is None:  # public: the login page and static files
        if request.method == "POST" and not await auth.csrf_ok(request):
            return forbidden(request, "csrf")
        return await handler(request)
    cfg = request.app[CONFIG]
    session = await get_session(request)
    account = None
    if isinstance(session.get("uid"), int):
        async with cfg.db.transaction() as s:
            account = await s.get(WebAccount, session["uid"])
    if account is None or not account.active or session.get("pv") != auth.password_version(account):
        session.invalidate()
        if api_path(request.path):
            return web.json_response({"error": "login required"}, status=401)
        if request.method != "GET":  # a form sent after the session ended: say so, in words
            return render("error.html", request, {"message": texts(request).get("login_needed")}, status=401)
        raise web.HTTPFound(f"{PREFIX}/login?{urlencode({'next': request.rel_url.path_qs})}")
    if account.role not in allowed:
        return forbidden(request, "role")
    if request.method == "POST" and not await auth.csrf_ok(request):
        return forbidden(request, "csrf")
    request[VIEWER] = auth.Viewer(account.id, account.username, account.role, account.commune_code, session["csrf"])
    return await handler(request)


def forbidden(request: web.Request, why: str) -> web.Response:
    """403: JSON naming `why` ("csrf", "role", "scope") for exports and API calls, a page saying it otherwise."""
    if api_path(request.path):
        return web.json_response({"error": why}, status=403)
    return render("error.html", request, {"message": texts(request).get(f"forbidden_{why}")}, status=403)


_TEXTS: dict[str, WebTexts] = {}


def texts(request: web.Request) -> WebTexts:
    """The dashboard's texts (dashboard.yaml in the content directory), read once."""
    directory = request.app[CONFIG].settings.content_dir
    key = str(directory or "")
    if key not in _TEXTS:
        _TEXTS[key] = load_dashboard_texts(directory)
    return _TEXTS[key]


def render(template: str, request: web.Request, context: dict, status: int = 200) -> web.Response:
    """Render a page with what every page shows (who is signed in, the menu, the CSRF token), and
    `tx(id, **values)` for its texts (escaped; a value made with `code(...)` or `link(...)` is shown as
    code or as a link)."""
    from bot.report import channel_name
    from bot.web.pages import NAV
    from storage.stats import LOCAL_TZ

    t = texts(request)

    def tx(key: str, **values) -> Markup:
        return Markup.escape(t.messages[key]).format(**values)

    def code(value: str) -> Markup:
        return Markup("<code>{}</code>").format(value)

    def link(href: str, text: str) -> Markup:
        return Markup('<a href="{}">{}</a>').format(href, text)

    viewer = request.get(VIEWER)
    common = {
        "viewer": viewer, "prefix": PREFIX, "tz": LOCAL_TZ, "nav": NAV,
        "channel_name": lambda channel: channel_name(channel, t), "period_label": lambda period: period.label(t), "csrf": viewer.csrf if viewer else "", "tx": tx, "code": code, "link": link,
    }
    return aiohttp_jinja2.render_template(template, request, {**common, **context}, status=status)


@web.middleware
async def security_headers(request: web.Request, handler):
    response = await handler(request)
    # Nothing is loaded from elsewhere; pages cannot be framed by another site.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _load_session_key(cfg: DashboardConfig) -> bytes:
    """CCCD_WEB_SECRET if set, else a key generated once and kept in the database (shared by every process)."""
    if cfg.settings.web_secret:
        key = cfg.settings.web_secret.encode()
        Fernet(key)  # a clear error at start-up if it is not a valid key
        return key
    for _ in range(3):
        async with cfg.db.transaction() as s:
            stored = await kv.get(s, SECRET_KEY_NAME)
            if stored is not None:
                return stored[0]["key"].encode()
            key = base64.urlsafe_b64encode(__import__("os").urandom(32)).decode()
            if await kv.put_if_version(s, SECRET_KEY_NAME, {"key": key}, None, cfg.clock()):
                return key.encode()
    raise RuntimeError("could not store the dashboard's session key")


def create_dashboard(cfg: DashboardConfig) -> web.Application:
    """The dashboard application; mount it with `app.add_subapp(PREFIX, create_dashboard(cfg))`."""
    from bot.web import pages

    app = web.Application(client_max_size=256 * 1024)
    app[CONFIG] = cfg

    def key() -> bytes:
        if cfg.session_key is None:
            raise RuntimeError("the dashboard's session key is not loaded yet")
        return cfg.session_key

    storage = auth.FernetCookieStorage(
        key=key,
        cookie_name="cccd_admin",
        path=PREFIX,
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="Strict",
        secure=cfg.settings.web_secure_cookies,
    )
    setup_sessions(app, storage)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every text people typed (questions, hamlet and group names) is escaped
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(charts.FILTERS)
    env.globals["charts"] = charts
    # After the session and template-context middlewares, so error pages have both.
    app.middlewares.append(security_headers)
    app.middlewares.append(access_middleware)

    async def load_key(_app: web.Application) -> None:
        if cfg.session_key is None:
            cfg.session_key = await _load_session_key(cfg)

    app.on_startup.append(load_key)
    pages.add_routes(app)
    app.router.add_static("/static", HERE / "static", name="static")
    return app
