"""Who may see the dashboard: encrypted session cookies, CSRF tokens, roles and commune scope."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp_session import AbstractStorage, Session, get_session, new_session
from cryptography.fernet import Fernet, InvalidToken

from storage.models import WebAccount

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROLES_ATTR = "dashboard_roles"
EDITORS = ("admin", "officer")
EVERYONE = ("admin", "officer", "team")


def roles(*allowed: str) -> Callable[[Handler], Handler]:
    """Mark a handler with the roles that may call it; unmarked handlers are public."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, ROLES_ATTR, allowed)
        return handler

    return mark


@dataclass
class Viewer:
    """The signed-in person, as a page sees them."""

    id: int
    username: str
    role: str
    commune: str | None
    csrf: str

    @property
    def can_edit(self) -> bool:
        return self.role in EDITORS

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def sees_texts_of(self, commune: str | None) -> bool:
        """A team member reads unanswered questions' texts only within their own commune."""
        return self.role != "team" or (self.commune is not None and commune == self.commune)


def password_version(account: WebAccount) -> str:
    """Changes when the password does: a session from before a password change ends."""
    return hashlib.sha256(account.password_hash.encode()).hexdigest()[:16]


class FernetCookieStorage(AbstractStorage):
    """aiohttp-session storage encrypting the session into the cookie; the key is set at start-up."""

    def __init__(self, *, key: Callable[[], bytes], **kwargs):
        super().__init__(**kwargs)
        self._key = key
        self._fernet: Fernet | None = None

    def _f(self) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._key())
        return self._fernet

    async def load_session(self, request: web.Request) -> Session:
        cookie = self.load_cookie(request)
        if cookie is None:
            return Session(None, data=None, new=True, max_age=self.max_age)
        try:
            data = json.loads(self._f().decrypt(cookie.encode(), ttl=self.max_age).decode())
        except (InvalidToken, ValueError, TypeError):
            return Session(None, data=None, new=True, max_age=self.max_age)
        return Session(None, data=data, new=False, max_age=self.max_age)

    async def save_session(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        if session.empty:
            return self.save_cookie(response, "", max_age=session.max_age)
        token = self._f().encrypt(json.dumps(self._get_session_data(session)).encode()).decode()
        self.save_cookie(response, token, max_age=session.max_age)


@dataclass
class LoginThrottle:
    """Failed logins per client address: each recent failure slows the next answer."""

    delay: float = 0.5  # seconds a recent failure adds
    max_delay: float = 4.0
    window: float = 900.0
    failures: dict[str, deque] = field(default_factory=dict)

    def _recent(self, client: str) -> deque:
        q = self.failures.setdefault(client, deque(maxlen=100))
        cutoff = time.monotonic() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        return q

    async def wait(self, client: str) -> None:
        n = len(self._recent(client))
        if n and self.delay:
            await asyncio.sleep(min(self.delay * n, self.max_delay))

    def failed(self, client: str) -> None:
        self._recent(client).append(time.monotonic())
        if len(self.failures) > 10_000:  # bound memory against address spraying
            self.failures.pop(next(iter(self.failures)))

    def succeeded(self, client: str) -> None:
        self.failures.pop(client, None)


async def start_session(request: web.Request, account: WebAccount) -> None:
    """A fresh session (never the one sent before login), with its own CSRF token."""
    session = await new_session(request)
    session["uid"] = account.id
    session["pv"] = password_version(account)
    session["csrf"] = secrets.token_urlsafe(24)


async def csrf_token(request: web.Request) -> str:
    """The session's CSRF token, created for anonymous sessions too (the login form has one)."""
    session = await get_session(request)
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


async def csrf_ok(request: web.Request) -> bool:
    session = await get_session(request)
    expected = session.get("csrf")
    from bot.web.uploads import read_form

    form = await read_form(request)  # kept for the handler (a multipart form is read once, with our limits)
    sent = form.get("csrf")
    return bool(expected) and isinstance(sent, str) and hmac.compare_digest(sent, expected)
