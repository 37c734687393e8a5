"""The web chat (channel `web`): a small page on `/`, a widget for commune websites, and a JSON API.

A thin channel like the others: each request becomes one `Incoming` for the conversation core and
the core's replies come back in the response, rendered with buttons. The HTTP response is the
delivery, so there is nothing to queue or redeliver: the core's per-conversation lock keeps a
visitor's messages in order.

Visitors are known only by a random id in an HttpOnly cookie; `?h=<hamlet code>` on the page sets
their hamlet through the core's `/start h_<code>`, as a Telegram deep link does. Messages are limited
per visitor and per address (token buckets) and in size; abuse gets a clear 4xx with a Vietnamese
message the page shows. Requests must be JSON from the page's own origin, which a cross-site form
cannot send: together with SameSite cookies this keeps other sites from chatting in a visitor's name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from markupsafe import Markup

from bot.config import Settings
from bot.engine import clean_text
from bot.messages import Capabilities, ChatType, Incoming, Reply
from bot.render import render
from bot.server import SERVICE, SETTINGS
from bot.service import ChatService
from bot.startup import say
from bot.web.texts import TextsError, WebTexts, load_texts

log = logging.getLogger(__name__)

CHANNEL = "web"
CAPABILITIES = Capabilities(buttons=True, max_text=4000, max_buttons=12)
COOKIE = "cccd_visitor"
COOKIE_MAX_AGE = 180 * 24 * 3600
VISITOR_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
PAYLOAD_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_BODY = 8 * 1024
MAX_TEXT = 1000
MAX_HAMLET = 64
# An address may carry many visitors (a commune office, a mobile network's gateway): it gets more.
ADDRESS_FACTOR = 10
HERE = Path(__file__).parent
STATIC_TYPES = {"chat.js": "application/javascript", "chat.css": "text/css", "widget.js": "application/javascript"}

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
)


class TokenBuckets:
    """One token bucket per key: `rate` tokens a second, at most `burst` saved; idle keys are dropped."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 50_000):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when allowed, otherwise the seconds until one is free."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:
            # The least recently seen key goes: its bucket would be full again by now, or nearly.
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass
class WebChat:
    """The web chat's pieces: the core, the texts, the page template, the static files and the limits."""

    service: ChatService
    settings: Settings
    texts: WebTexts
    visitors: TokenBuckets
    addresses: TokenBuckets
    template: jinja2.Template
    static: dict[str, bytes] = field(default_factory=dict)

    def json_texts(self) -> str:
        """The texts the script shows, as JSON that is safe inside a <script> element."""
        return _script_json(self.texts.messages)


WEB_CHAT = web.AppKey("web_chat", WebChat)


def _script_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def build(settings: Settings, service: ChatService, texts: WebTexts | None = None, *, clock: Callable[[], float] = time.monotonic) -> WebChat:
    """Make the web chat from the settings (texts from the content directory unless given)."""
    texts = texts or load_texts(settings.content_dir)
    rate = settings.web_chat_rate / 60.0
    burst = max(3.0, settings.web_chat_rate / 2)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    static = {name: (HERE / "static" / name).read_bytes() for name in STATIC_TYPES}
    static["widget.js"] = static["widget.js"].replace(b"/*TEXTS*/{}", _script_json(texts.messages).encode())
    return WebChat(
        service=service,
        settings=settings,
        texts=texts,
        visitors=TokenBuckets(rate, burst, clock=clock),
        addresses=TokenBuckets(rate * ADDRESS_FACTOR, burst * ADDRESS_FACTOR, clock=clock),
        template=env.get_template("chat.html"),
        static=static,
    )


def _secure(request: web.Request, settings: Settings) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https" or bool(settings.public_url and settings.public_url.startswith("https://"))


def _embedded(request: web.Request) -> bool:
    return request.query.get("embed") == "1"


def _set_visitor(response: web.StreamResponse, request: web.Request, settings: Settings, visitor: str) -> None:
    """Give a new visitor their id: HttpOnly always; inside a commune site's frame the cookie must be
    SameSite=None to be sent at all, so there it is Secure and Partitioned (kept apart per embedding site)."""
    if _embedded(request) and _secure(request, settings):
        # Written by hand: Python's http.cookies knows the Partitioned attribute only from 3.14 on.
        response.headers.add(
            "Set-Cookie", f"{COOKIE}={visitor}; Max-Age={COOKIE_MAX_AGE}; Path=/; HttpOnly; Secure; SameSite=None; Partitioned"
        )
    else:
        response.set_cookie(COOKIE, visitor, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax", secure=_secure(request, settings) or None)


def _visitor(request: web.Request) -> tuple[str, bool]:
    """Return the visitor's id from the cookie, or a new random one (and True)."""
    current = request.cookies.get(COOKIE, "")
    if VISITOR_RE.match(current):
        return current, False
    return secrets.token_urlsafe(18), True


def _hamlet_param(value: str) -> str:
    """The `?h=` code, kept only when it could be a code at all; the core says whether it exists."""
    value = value.strip()
    return value if re.fullmatch(r"[A-Za-z0-9_-]{1,%d}" % MAX_HAMLET, value) else ""


async def page(request: web.Request) -> web.Response:
    chat = request.app[WEB_CHAT]
    embed = _embedded(request)
    html = chat.template.render(
        t=chat.texts.messages,
        hamlet=_hamlet_param(request.query.get("h", "")),
        embed=embed,
        max_text=MAX_TEXT,
        texts_json=Markup(chat.json_texts()),
    )
    response = web.Response(text=html, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = PAGE_CSP.format(ancestors="*" if embed else "'self'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    visitor, new = _visitor(request)
    if new:
        _set_visitor(response, request, chat.settings, visitor)
    return response


def static_file(name: str):
    async def handler(request: web.Request) -> web.Response:
        body = request.app[WEB_CHAT].static[name]
        response = web.Response(body=body, content_type=STATIC_TYPES[name], charset="utf-8")
        response.headers["Cache-Control"] = "public, max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if name == "widget.js":
            # Commune websites load the widget from their own pages.
            response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    return handler


def _refuse(chat: WebChat, status: int, error: str, text_id: str, **headers: str) -> web.Response:
    body = {"error": error, "message": chat.texts.get(text_id)}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store", **headers})


def _same_origin(request: web.Request, settings: Settings) -> bool:
    """Refuse requests another site's page makes: browsers name the site in Origin and Sec-Fetch-Site."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {request.host.lower()}
    if settings.public_url:
        allowed.add(urlsplit(settings.public_url).netloc.lower())
    return urlsplit(origin).netloc.lower() in allowed


async def _read_json(request: web.Request) -> dict | int:
    """The request's JSON object, or the HTTP status that refuses it."""
    if request.content_type != "application/json":
        return 415
    if request.content_length is not None and request.content_length > MAX_BODY:
        return 413
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return 413
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return 400
    return data if isinstance(data, dict) else 400


def reply_json(reply: Reply) -> dict:
    rendered = render(reply, CAPABILITIES)
    out: dict = {"texts": list(rendered.texts), "buttons": [{"label": b.label, "payload": b.payload} for b in rendered.buttons]}
    if rendered.image:
        out["image"] = rendered.image
    return out


async def _converse(request: web.Request, start: bool) -> web.Response:
    chat = request.app[WEB_CHAT]
    if not _same_origin(request, chat.settings):
        return _refuse(chat, 403, "forbidden", "error_forbidden")
    visitor, new = _visitor(request)
    wait = max(chat.addresses.take(request.remote or "-"), chat.visitors.take(visitor))
    if wait > 0:
        return _refuse(chat, 429, "rate_limited", "error_rate", **{"Retry-After": str(math.ceil(wait))})
    data = await _read_json(request)
    if data == 413:
        return _refuse(chat, 413, "too_long", "error_too_long")
    if isinstance(data, int):
        return _refuse(chat, data, "bad_request", "error_bad_request")
    text, payload = "", None
    if start:
        hamlet = data.get("h") or ""
        if not isinstance(hamlet, str) or len(hamlet) > MAX_HAMLET:
            return _refuse(chat, 400, "bad_request", "error_bad_request")
        hamlet = _hamlet_param(hamlet)
        text = f"/start h_{hamlet}" if hamlet else "/start"
    elif "payload" in data:
        payload = data["payload"]
        if not isinstance(payload, str) or not PAYLOAD_RE.match(payload):
            return _refuse(chat, 400, "bad_request", "error_bad_request")
    else:
        raw = data.get("text")
        if not isinstance(raw, str):
            return _refuse(chat, 400, "bad_request", "error_bad_request")
        if len(raw) > MAX_TEXT:
            return _refuse(chat, 413, "too_long", "error_too_long")
        text = clean_text(raw)
        if not text:
            return _refuse(chat, 400, "empty", "error_empty")
    service = chat.service
    incoming = Incoming(
        channel=CHANNEL,
        chat_id=visitor,
        chat_type=ChatType.PRIVATE,
        sender_id=visitor,
        sender_name="",
        text=text,
        time=service.clock(),
        payload=payload,
    )
    # A visitor who closes the page must not cut the core off halfway through a message.
    replies = await asyncio.shield(service.handle(incoming))
    response = web.json_response({"replies": [reply_json(r) for r in replies]}, headers={"Cache-Control": "no-store"})
    if new:
        _set_visitor(response, request, chat.settings, visitor)
    return response


async def start(request: web.Request) -> web.Response:
    return await _converse(request, start=True)


async def message(request: web.Request) -> web.Response:
    return await _converse(request, start=False)


def add_routes(app: web.Application, chat: WebChat) -> None:
    """Mount the web chat on `app` (used by `setup`, and by tests with their own service)."""
    app[WEB_CHAT] = chat
    app.router.add_get("/", page)
    for name in STATIC_TYPES:
        app.router.add_get(f"/chat/{name}", static_file(name))
    app.router.add_post("/chat/api/start", start)
    app.router.add_post("/chat/api/message", message)


def setup(app: web.Application) -> str | None:
    """Serve the web chat when CCCD_WEB_CHAT is on; return why it is off otherwise."""
    settings = app[SETTINGS]
    if not settings.web_chat:
        return say("web_chat_not_set")
    try:
        chat = build(settings, app[SERVICE])
    except TextsError as exc:
        # The other channels still run; the reason shows at start and on /healthz.
        log.error("web chat is off: %s", exc)
        return say("web_chat_content", error=exc).splitlines()[0]
    add_routes(app, chat)
    return None
