"""The Zalo Official Account channel (OA API v3): a verified webhook in, consultation messages out.

Receiving: Zalo POSTs events to `CCCD_ZALO_OA_WEBHOOK_PATH` (default /zalo/oa/webhook) with the header
`X-ZEvent-Signature: mac=<hex>`, hex = SHA-256(app id + raw body + the body's `timestamp` + OA secret key).
Unsigned or badly signed requests get 403. Good ones are deduplicated by `message.msg_id` in the database,
answered 200 at once, and processed afterwards in order per chat.

Events become `Work` for the pipeline (bot/pipeline/: taken once, handled in one transaction with the
replies stored in the outbox); the webhook answers 200 after that commit, 503 while the database is away.

Sending (by the pipeline's sender, through `deliver`, one message each):
`POST /v3.0/oa/message/cs` (1:1) and `POST /v3.0/oa/group/message` (groups), header `access_token`;
success is HTTP 200 and `error == 0`. In 1:1 up to 5 choices are buttons (template attachment, type
`oa.query.hide` with payload `#cccd:<payload>`, which comes back as `user_send_text`); otherwise, and
always in groups, choices are numbered lines.

Tokens: the access token (~25 h) and the single-use refresh token (~3 months) are stored as one versioned
row of the key-value table. Refreshes happen ahead of expiry, under `Database.locked("zalo_oa:token")`, and
the new pair is written with compare-and-swap, so two workers never spend the same refresh token.

Groups: `user_send_group_text` counts as addressed to the bot only when it starts with "/", mentions the OA
by name ("@<OA name>", the name read from `getoa` at start), or — while the name is unknown — starts with "@".
Other group messages are left to the people in the group.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web

from bot.channels.common import (
    announce,
    has_question_word,
    epoch_time,
    remove_mention,
    run_with_server,
    secret_matches,
    utcnow,
)
from bot.channels import webhook_input
from bot.channels.webhook_input import ID, STR
from bot.config import Settings
from bot.messages import Capabilities, ChatType, Choice, Incoming, Reply
from bot.pipeline import Pacer, Pipeline, Refused, Result, Retry, Sent, Unavailable, Work
from bot.render import render
from bot.startup import load_settings, say
from storage import kv, people

if TYPE_CHECKING:  # kept out of imports: the command line loads this module to build its parser
    from bot.service import ChatService
    from storage.db import Database

log = logging.getLogger(__name__)

CHANNEL = "zalo_oa"
PRIVATE_CAPS = Capabilities(buttons=True, max_text=2000, max_buttons=5)
GROUP_CAPS = Capabilities(buttons=False, max_text=2000)
SIGNATURE_HEADER = "X-ZEvent-Signature"
TOKEN_KEY = "zalo_oa:token"
PKCE_KEY = "zalo_oa:pkce"
BUTTON_TYPE = "oa.query.hide"
# Button payloads come back as the text of a user_send_text; "#" also passes the OA's syntax filter.
BUTTON_PREFIX = "#cccd:"
MAX_BUTTON_TITLE = 100

CS_PATH = "/v3.0/oa/message/cs"
GROUP_PATH = "/v3.0/oa/group/message"
OA_INFO_PATH = "/v2.0/oa/getoa"
TOKEN_PATH = "/v4/oa/access_token"
PERMISSION_PATH = "/v4/oa/permission"

# Error codes of the OA API.
INVALID_TOKEN = -216
EXPIRED_TOKEN = -220
NOT_FOLLOWER = -213
NO_INTERACTION = -230
NO_INTERACTION_2 = -232
RATE_LIMIT = -32
# The person cannot be reached by this OA: not a follower (-213), blocked or gone (-217, -227), outside
# the interaction window (-230, -232), a promotion at night (-234), refused for this user (-244). Never
# retried, never sent again without buttons: the person is marked unreachable (counted in reports).
PERSON_UNREACHABLE = frozenset({-213, -217, -227, -230, -232, -234, -244})
# The group cannot be reached: disabled because its package expired (-237), or the OA is not in it (-403).
GROUP_INACTIVE = {-237: "group disabled (its group package expired)", -403: "the OA is not a member of the group"}
# The same, as /healthz says it (bot/content/operator.yaml).
GROUP_INACTIVE_SAID = {-237: "zalo_oa_group_expired", -403: "zalo_oa_group_not_member"}
UNREACHABLE = PERSON_UNREACHABLE | frozenset(GROUP_INACTIVE)
TOKEN_ERRORS = frozenset({INVALID_TOKEN, EXPIRED_TOKEN})
WINDOW_ERRORS = frozenset({NO_INTERACTION, NO_INTERACTION_2})
NO_TOKEN = -1000  # ours: no token stored or configured
NETWORK = -1001  # ours: the API could not be reached (nothing was sent)
FAILED_UNKNOWN = -1002  # ours: the request may or may not have reached Zalo (timeout, disconnect)
# Errors that say nothing against the message itself (so numbered lines would not fare better).
NOT_ABOUT_THE_MESSAGE = frozenset({NO_TOKEN, NETWORK, FAILED_UNKNOWN, RATE_LIMIT, NOT_FOLLOWER, -1}) | TOKEN_ERRORS | WINDOW_ERRORS

# What became of one reply to one chat.
SENT = "sent"
WINDOW_CLOSED = "window_closed"
NOT_A_FOLLOWER = "not_follower"
UNREACHABLE_PERSON = "unreachable"
GROUP_OFF = "group_inactive"
FAILED = "failed"
# Zalo's group text turns "[@…]" into a mention ("[@All]" calls everyone): what users typed and we
# echo into a group keeps its "@" as a look-alike that mentions nobody.
# An "app_id" in a raw body, read only to say why a signature failed (nothing is parsed before it is verified).
_RAW_APP_ID = re.compile(rb'"app_id"\s*:\s*"?([^",}\s]{1,64})')
_GROUP_MENTION = re.compile(r"\[([^\]\n]{0,80}?)@")


def escape_group_text(text: str) -> str:
    """`text` safe to post in a Zalo group: no "[@…]" that Zalo would read as a mention."""
    previous = None
    while previous != text:  # "[@a@b]" and nested brackets: until nothing is left to escape
        previous, text = text, _GROUP_MENTION.sub(lambda m: f"[{m.group(1)}\uff20", text)
    return text

Sleep = Callable[[float], Awaitable[None]]

# The fields of an event the channel reads, with their types (bot.channels.webhook_input.check).
_WHO = {"id": ID, "display_name": STR, "name": STR}
EVENT_FIELDS = {
    "event_name": STR,
    "sender": _WHO,
    "recipient": _WHO,
    "follower": _WHO,
    "message": {"text": STR, "msg_id": ID},
}


def _stamp(value: Any) -> str | None:
    """The body's timestamp as signed: digits (a whole float counts as its integer)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value) if isinstance(value, (int, str)) else ""
    return text if text.isdigit() else None


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def signature(app_id: str, raw_body: bytes, timestamp: str, secret_key: str) -> str:
    """The hex SHA-256 Zalo puts after "mac=" in X-ZEvent-Signature."""
    return hashlib.sha256(app_id.encode() + raw_body + timestamp.encode() + secret_key.encode()).hexdigest()


class OAError(Exception):
    """A failed OA or OAuth call: `error != 0`, a non-200 answer, or no usable token."""

    def __init__(self, code: int, message: str = "", status: int = 200):
        super().__init__(f"error {code}: {message}".strip())
        self.code = code
        self.message = message
        self.status = status


# -- tokens ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None  # None: unknown (tokens given in the environment)
    source: str = "refresh"
    obtained_at: datetime | None = None
    # A digest of the environment's tokens this pair was made from or stored beside: when the
    # environment gets new tokens, they replace the stored pair.
    env_seed: str | None = None

    def expiring(self, now: datetime, margin: timedelta) -> bool:
        return self.expires_at is not None and self.expires_at - margin <= now

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "source": self.source,
            "obtained_at": self.obtained_at.isoformat() if self.obtained_at else None,
            "env_seed": self.env_seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenPair | None:
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            return None

        def when(value: Any) -> datetime | None:
            try:
                return datetime.fromisoformat(value) if value else None
            except (TypeError, ValueError):
                return None

        return cls(
            access_token=data["access_token"],
            refresh_token=data.get("refresh_token") or None,
            expires_at=when(data.get("expires_at")),
            source=str(data.get("source") or "refresh"),
            obtained_at=when(data.get("obtained_at")),
            env_seed=data.get("env_seed") or None,
        )


def env_seed(settings: Settings) -> str | None:
    if not (settings.zalo_oa_access_token or settings.zalo_oa_refresh_token):
        return None
    return digest(f"{settings.zalo_oa_access_token or ''}\n{settings.zalo_oa_refresh_token or ''}")


async def request_tokens(
    http: aiohttp.ClientSession, settings: Settings, form: dict[str, str], now: datetime, source: str
) -> TokenPair:
    """POST the OAuth token endpoint (refresh or code exchange); return the new pair."""
    if not (settings.zalo_oa_app_id and settings.zalo_oa_app_secret):
        raise OAError(NO_TOKEN, "CCCD_ZALO_OA_APP_ID and CCCD_ZALO_OA_APP_SECRET are needed to get tokens")
    url = settings.zalo_oa_oauth_base.rstrip("/") + TOKEN_PATH
    try:
        async with http.post(
            url, data=form, headers={"secret_key": settings.zalo_oa_app_secret}, timeout=aiohttp.ClientTimeout(total=20)
        ) as resp:
            status = resp.status
            raw = await resp.read()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise OAError(NETWORK, f"OAuth unreachable: {exc}", 0) from exc
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if status != 200 or not isinstance(data, dict) or not data.get("access_token"):
        data = data if isinstance(data, dict) else {}
        code = data.get("error") if isinstance(data.get("error"), int) else (status if status != 200 else -1)
        message = str(data.get("error_name") or data.get("error_description") or data.get("message") or f"HTTP {status}")
        raise OAError(code, message, status)
    try:
        lifetime = int(str(data.get("expires_in") or "90000"))
    except ValueError:
        lifetime = 90000
    return TokenPair(
        access_token=str(data["access_token"]),
        refresh_token=str(data["refresh_token"]) if data.get("refresh_token") else None,
        expires_at=now + timedelta(seconds=lifetime),
        source=source,
        obtained_at=now,
    )


class TokenStore:
    """The OA token pair in the database: read per use, refreshed ahead of expiry by one worker at a time."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        http: aiohttp.ClientSession | None = None,
        clock: Callable[[], datetime] = utcnow,
        refresh_margin: timedelta = timedelta(hours=1),
        wait_delays: Sequence[float] = (0.2, 0.5, 1.0, 2.0),
        sleep: Sleep = asyncio.sleep,
    ):
        self.db = db
        self.settings = settings
        self.http = http
        self.clock = clock
        self.refresh_margin = refresh_margin
        self.wait_delays = tuple(wait_delays)
        self.sleep = sleep
        self.refreshes = 0  # refresh calls this worker made

    async def load(self) -> tuple[TokenPair | None, int | None]:
        async with self.db.transaction() as session:
            found = await kv.get(session, TOKEN_KEY)
        if found is None:
            return None, None
        return TokenPair.from_dict(found[0]), found[1]

    async def store(self, pair: TokenPair, expected_version: int | None) -> bool:
        """Write the pair if nobody wrote since `expected_version` was read."""
        async with self.db.transaction() as session:
            return await kv.put_if_version(session, TOKEN_KEY, pair.to_dict(), expected_version, self.clock())

    async def replace(self, pair: TokenPair) -> None:
        """Store a pair whatever is stored now (after `authorize`), under the token lock."""
        async with self.db.locked(TOKEN_KEY):
            for _ in range(5):
                _current, version = await self.load()
                if await self.store(pair, version):
                    return
        raise OAError(NO_TOKEN, "could not store the tokens (the database kept changing)")

    async def _seed_from_env(self, pair: TokenPair | None, version: int | None) -> TokenPair | None:
        """Use the environment's tokens when nothing is stored or they changed since they were stored."""
        seed = env_seed(self.settings)
        # A pair stored by `authorize` (env_seed None) is never replaced by environment tokens: those
        # may be stale copies; run `authorize` again instead.
        if seed is None or (pair is not None and pair.env_seed in (seed, None)):
            return pair
        async with self.db.locked(TOKEN_KEY):
            pair, version = await self.load()
            if pair is not None and pair.env_seed in (seed, None):
                return pair
            now = self.clock()
            fresh = TokenPair(
                access_token=self.settings.zalo_oa_access_token or "",
                refresh_token=self.settings.zalo_oa_refresh_token or None,
                # Only a refresh token given: refresh at once. Otherwise the expiry is unknown.
                expires_at=None if self.settings.zalo_oa_access_token else now,
                source="env",
                obtained_at=now,
                env_seed=seed,
            )
            if await self.store(fresh, version):
                log.info("zalo_oa: stored the tokens from the environment")
                return fresh
            return (await self.load())[0]

    async def access_token(self) -> str:
        """Return a usable access token, refreshing it first when it expires within the margin."""
        pair, version = await self.load()
        pair = await self._seed_from_env(pair, version)
        if pair is None:
            raise OAError(NO_TOKEN, "no OA token: run `cccd-bot zalo-oa authorize` or set CCCD_ZALO_OA_ACCESS_TOKEN")
        now = self.clock()
        if (pair.expiring(now, self.refresh_margin) or not pair.access_token) and pair.refresh_token:
            try:
                return await self.refresh(stale=pair.access_token)
            except OAError as exc:
                if pair.access_token and not pair.expired(now):
                    log.warning("zalo_oa: early token refresh failed (%s); using the current token", exc)
                    return pair.access_token
                raise
        if not pair.access_token:
            raise OAError(NO_TOKEN, "no OA access token and no refresh token: run `cccd-bot zalo-oa authorize`")
        return pair.access_token

    async def refresh(self, stale: str | None) -> str:
        """Refresh the pair unless someone already replaced the `stale` access token; return the new token."""
        async with self.db.locked(TOKEN_KEY):
            pair, version = await self.load()
            if pair is None:
                raise OAError(NO_TOKEN, "no OA token to refresh: run `cccd-bot zalo-oa authorize`")
            now = self.clock()
            if pair.access_token and pair.access_token != stale and not pair.expiring(now, self.refresh_margin):
                return pair.access_token  # another worker refreshed while we waited
            if not pair.refresh_token:
                raise OAError(NO_TOKEN, "the OA access token is no longer valid and there is no refresh token")
            if self.http is None:
                raise RuntimeError("TokenStore has no HTTP session")
            form = {"refresh_token": pair.refresh_token, "app_id": self.settings.zalo_oa_app_id or "", "grant_type": "refresh_token"}
            self.refreshes += 1
            try:
                new = await request_tokens(self.http, self.settings, form, now, "refresh")
            except OAError as exc:
                other = await self._wait_for_other_refresh(pair.refresh_token)
                if other is not None:
                    return other
                log.error("zalo_oa: token refresh refused (%s); run `cccd-bot zalo-oa authorize` if it persists", exc)
                raise
            new = replace(new, env_seed=pair.env_seed, refresh_token=new.refresh_token or pair.refresh_token)
            if not await self.store(new, version):
                # Written by a worker that does not share our lock (SQLite, several processes): both pairs
                # are valid; keep the stored one so every worker uses the same refresh token.
                log.warning("zalo_oa: another worker stored tokens during our refresh; using theirs")
                stored, _ = await self.load()
                return stored.access_token if stored else new.access_token
            log.info("zalo_oa: access token refreshed, valid until %s", new.expires_at)
            return new.access_token

    async def _wait_for_other_refresh(self, used: str) -> str | None:
        """After a refused refresh: if another worker spent that refresh token, wait for its new pair."""
        for delay in (0.0, *self.wait_delays):
            if delay:
                await self.sleep(delay)
            pair, _ = await self.load()
            if pair is not None and pair.refresh_token != used and pair.access_token:
                return pair.access_token
        return None


# -- the channel -----------------------------------------------------------------------------------


def addressed_in_group(text: str, oa_name: str | None) -> tuple[bool, str]:
    """Decide whether a group message is for the bot; return it without the mention of the OA."""
    stripped = text.strip()
    if stripped.startswith("/"):
        return True, stripped
    if oa_name:
        rest = remove_mention(stripped, [oa_name])
        return (False, stripped) if rest is None else (True, rest)
    return stripped.startswith("@"), stripped


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value not in (None, "") else None


def group_id_of(event: dict[str, Any], oa_id: str | None = None) -> str | None:
    """The group of a `user_send_group_*` event: `recipient.id`, else where clients have seen it
    (`recipient.group_id`, `message.conversation_id`, `conversation.id`, a top-level `group_id`).
    An id equal to the OA's own is not a group."""
    recipient = event.get("recipient") if isinstance(event.get("recipient"), dict) else {}
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    conversation = event.get("conversation") if isinstance(event.get("conversation"), dict) else {}
    for value in (recipient.get("id"), recipient.get("group_id"), message.get("conversation_id"), conversation.get("id"), event.get("group_id")):
        found = _id(value)
        if found is not None and found != oa_id:
            return found
    return None


class ZaloOAChannel:
    """Receive OA webhook events, hand text to the core, send replies with token care and back-off."""

    def __init__(
        self,
        service: ChatService,
        settings: Settings,
        *,
        pipeline: Pipeline | None = None,
        receive: bool = True,
        retry_delays: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
        keeper_interval: float = 600.0,
        recheck_interval: float = 30.0,
        refresh_margin: timedelta = timedelta(hours=1),
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.name = CHANNEL
        self.service = service
        self.pipeline = pipeline or Pipeline(service)
        self.receive = receive
        self.settings = settings
        self.api_base = settings.zalo_oa_api_base.rstrip("/")
        self.retry_delays = tuple(retry_delays)
        self.keeper_interval = keeper_interval
        self.recheck_interval = recheck_interval
        self.sleep = sleep
        self.clock = clock
        self.tokens = TokenStore(service.db, settings, clock=clock, refresh_margin=refresh_margin, sleep=sleep)
        self.officers = settings.officer_ids()
        self.question_words = settings.question_words()
        # Groups Zalo refused with -237 / -403 since start: id -> reason (shown at /healthz).
        self.inactive_groups: dict[str, str] = {}
        self._detail = ""
        self.oa_name: str | None = None
        self.oa_id: str | None = None
        # Replies that could not be delivered, by reason (window_closed, not_follower, failed).
        self.undeliverable: collections.Counter[str] = collections.Counter()
        self.status: Any = None
        # Set once the first token check (and getoa) is done: whether a group message mentions the OA
        # depends on its name.
        self.ready = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self.tokens.http = self._http
        task = asyncio.ensure_future(self._keep_tokens())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pacer(self) -> Pacer:
        return Pacer(self.settings.zalo_oa_send_rate or None)

    async def idle(self) -> None:
        """Wait until received events are handled and their replies delivered."""
        await self.pipeline.idle()

    async def stop(self) -> None:
        """Stop the token keeper (the sender still delivers through this channel until `close`)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _keep_tokens(self) -> None:
        """Check the token now and then, so it is refreshed ahead of expiry even when nobody writes, and ask
        Zalo who the OA is: whether it answers shows at /healthz (asked again every `recheck_interval`
        while it does not), and its name recognises mentions in groups."""
        introduced = warned = False
        while True:
            try:
                await self.tokens.access_token()
                known = self.oa_name
                problem = await self._read_oa()
                if problem is not None and not introduced:
                    log.warning("zalo_oa: could not read the OA's name (%s); group messages starting with @ count as mentions", problem)
                if not introduced or self.oa_name != known:
                    self._set_detail(say("zalo_oa_status_named", path=self.settings.zalo_oa_webhook_path, name=self.oa_name or "?"), quiet=introduced)
                    introduced = True
            except OAError as exc:  # from the token: none usable, or OAuth did not answer a needed refresh
                self._reached(exc, self.settings.zalo_oa_oauth_base)
                log.error("zalo_oa: %s", exc)
                if not introduced and not warned:
                    self._set_detail(say("zalo_oa_status", path=self.settings.zalo_oa_webhook_path) + "; " + say("zalo_oa_no_token", reason=exc.message))
                    warned = True
            except Exception:
                log.exception("zalo_oa: token check failed")
            self.ready.set()
            unreachable = self.status is not None and self.status.unreachable
            await asyncio.sleep(self.recheck_interval if unreachable else self.keeper_interval)

    async def _read_oa(self) -> OAError | None:
        """Read the OA's name and id (getoa); the error when Zalo did not give them."""
        try:
            data = await self.call("GET", OA_INFO_PATH)
        except OAError as exc:
            self._reached(exc, self.api_base)
            return exc
        self._reached(None)
        info = data.get("data") if isinstance(data.get("data"), dict) else {}
        self.oa_name = str(info.get("name") or "") or self.oa_name
        self.oa_id = _id(info.get("oa_id")) or self.oa_id
        return None

    def _reached(self, exc: OAError | None, url: str = "") -> None:
        """Tell /healthz whether Zalo answers: no answer at all (a network error, a timeout) means not."""
        if self.status is None:
            return
        if exc is not None and exc.status == 0 and exc.code in (NETWORK, FAILED_UNKNOWN):
            self.status.cannot_reach(urlsplit(url).netloc or "Zalo", exc.message)
        elif exc is None or exc.code != NO_TOKEN:  # NO_TOKEN: nothing was asked
            self.status.reached()

    def _set_detail(self, detail: str, *, quiet: bool = False) -> None:
        self._detail = detail
        shown = detail
        if self.inactive_groups:
            listed = ", ".join(f"{g} ({r})" for g, r in list(self.inactive_groups.items())[:5])
            if len(self.inactive_groups) > 5:
                listed += " " + say("zalo_oa_inactive_more", count=len(self.inactive_groups) - 5)
            shown = f"{detail}; " + say("zalo_oa_inactive_groups", groups=listed)
        if self.status is not None:
            self.status.detail = shown
        if not quiet:
            announce(say("serve_channel", name=CHANNEL, detail=shown))

    # -- receiving -------------------------------------------------------------------------------

    def signature_problem(self, raw: bytes, header: str) -> tuple[str | None, str | None]:
        """(the signed timestamp, None) when Zalo signed `raw` for this app, else (None, which check failed).

        Read from the raw bytes, before anything is parsed; the reason never shows a key.
        """
        header = header.strip()
        if not header:
            return None, f"no {SIGNATURE_HEADER} header"
        if header[:4].lower() != "mac=" or not header[4:].strip():
            return None, f'{SIGNATURE_HEADER} is not "mac=<hex>"'
        if not raw.lstrip().startswith(b"{"):
            return None, "the body is not a JSON object"
        # The signature covers the body's "timestamp": it is read from the raw bytes, not parsed.
        stamps = webhook_input.raw_timestamps(raw)
        if not stamps:
            return None, "the body has no timestamp"
        for stamp in stamps:
            if self.verify_stamp(raw, stamp, header):
                return stamp, None
        app_id = self.settings.zalo_oa_app_id or ""
        found = _RAW_APP_ID.search(raw)
        if found and found.group(1).decode("utf-8", "replace") != app_id:
            return None, "the body's app_id is not CCCD_ZALO_OA_APP_ID (the webhook belongs to another app)"
        app_secret = self.settings.zalo_oa_app_secret
        mac = header[4:].strip().lower()
        if app_secret and any(secret_matches(mac, signature(app_id, raw, stamp, app_secret)) for stamp in stamps):
            return None, "signed with the app secret: CCCD_ZALO_OA_SECRET_KEY must be the OA secret key of the webhook page"
        return None, "the mac does not match (wrong CCCD_ZALO_OA_SECRET_KEY, or the body was altered)"

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """Verify (before parsing), then take and handle the event at once; 503 while not ready (Zalo retries)."""
        try:
            raw = await webhook_input.read_body(request)
        except webhook_input.BadInput as exc:
            return web.json_response({"error": 400, "message": str(exc)}, status=400)
        stamp, problem = self.signature_problem(raw, request.headers.get(SIGNATURE_HEADER, ""))
        if stamp is None:
            log.warning("zalo_oa webhook: refused (403): %s (from %s)", problem, request.remote)
            return web.json_response({"error": 403, "message": "bad signature"}, status=403)
        try:
            body = webhook_input.parse_json(raw)
            webhook_input.check(body, EVENT_FIELDS, "event")
            if _stamp(body.get("timestamp")) != stamp:
                raise webhook_input.BadInput("the signed timestamp is not the event's")
        except webhook_input.BadInput as exc:
            log.warning("zalo_oa webhook: refused a signed body (%s)", exc)
            return web.json_response({"error": 400, "message": str(exc)}, status=400)
        age = (self.clock() - epoch_time(stamp, self.clock)).total_seconds()
        if abs(age) > self.settings.zalo_oa_max_event_age:
            log.warning("zalo_oa webhook: refused a signed event %d s old (a replay?)", int(age))
            return web.json_response({"error": 403, "message": "event too old"}, status=403)
        if not self.ready.is_set():
            return web.json_response({"error": 503, "message": "not ready"}, status=503)
        work = await self.interpret(body, raw)
        if work is not None:
            try:
                await self.pipeline.receive(work)
            except Unavailable:
                return web.json_response({"error": 503, "message": "database unavailable, try again"}, status=503)
        return web.json_response({"error": 0, "message": "ok"})

    def verify_stamp(self, raw: bytes, timestamp: str, header: str) -> bool:
        """Check X-ZEvent-Signature against the raw bytes and a timestamp read from them."""
        header = header.strip()
        mac = header[4:] if header[:4].lower() == "mac=" else ""
        if not mac:
            return False
        expected = signature(self.settings.zalo_oa_app_id or "", raw, timestamp, self.settings.zalo_oa_secret_key or "")
        return secret_matches(mac.lower(), expected)

    def _delivery_key(self, event: dict[str, Any], raw: bytes) -> str:
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        if message.get("msg_id"):
            return f"m:{message['msg_id']}"
        follower = _id(event.get("follower")) or _id(event.get("sender")) or ""
        if event.get("timestamp"):
            return f"e:{event.get('event_name')}:{follower}:{event['timestamp']}"
        return "h:" + hashlib.sha256(raw).hexdigest()[:40]

    async def interpret(self, event: dict[str, Any], raw: bytes = b"") -> Work | None:
        """What the pipeline should do with an event (deduplicated by msg_id); None to leave it."""
        name = str(event.get("event_name") or "")
        if not name.startswith(("user_send_", "follow", "unfollow")):
            return None  # echoes of our own sends (oa_send_*), reads, reactions...
        key = self._delivery_key(event, raw or json.dumps(event).encode())
        chat = self._chat_of(event)
        if chat is None:
            return None
        if name in ("follow", "unfollow"):
            follows = name == "follow"
            sent = epoch_time(event.get("timestamp"), self.clock)
            await self.service.load_salt()  # the erasure check below needs it; cached after the first time

            async def apply(session) -> None:
                if await self.service.erased_after(session, CHANNEL, chat, sent):
                    return  # a follow from before the person's erasure must not bring them back
                if follows:
                    await people.touch_user(session, CHANNEL, chat, self.clock())
                else:
                    await people.set_user_active(session, CHANNEL, chat, False)

            return Work(CHANNEL, key, chat, apply=apply)
        incoming = self.parse(event)
        if incoming is not None:
            if incoming.chat_type is ChatType.GROUP and not incoming.addressed:
                return None  # not for us: neither answered nor logged
            # Debug only: lets an operator read a person's id (for CCCD_OFFICERS) with `cccd-bot -v serve`.
            log.debug("zalo_oa: text from user %s in %s chat %s", incoming.sender_id, incoming.chat_type.value, incoming.chat_id)
            chat_type = incoming.chat_type
            return Work(
                CHANNEL, key, incoming.chat_id, render=lambda replies: self.render_calls(chat_type, replies),
                incoming=incoming, user_id=incoming.sender_id,
            )
        if name.startswith("user_send_") and not name.startswith("user_send_group_"):
            # An image, sticker, voice...: a polite word in private, nothing in groups.
            return Work(
                CHANNEL, key, chat, render=lambda replies: self.render_calls(ChatType.PRIVATE, replies),
                replies=(Reply(self.service.catalog.msg("not_text")),), user_id=chat,
            )
        return None

    def _chat_of(self, event: dict[str, Any]) -> str | None:
        name = str(event.get("event_name") or "")
        if name.startswith("user_send_group_"):
            group = group_id_of(event, self.oa_id)
            if group is None:
                # Never answered as a private message: the reply would reach one person, not the group.
                message = event.get("message") if isinstance(event.get("message"), dict) else {}
                log.warning("zalo_oa: %s without a group id (msg_id %s) refused", name, message.get("msg_id") or "?")
            return group
        if name in ("follow", "unfollow"):
            return _id(event.get("follower")) or _id(event.get("sender"))
        return _id(event.get("sender"))

    def parse(self, event: dict[str, Any]) -> Incoming | None:
        """Turn user_send_text / user_send_group_text into an Incoming; None for anything else."""
        name = event.get("event_name")
        if name not in ("user_send_text", "user_send_group_text"):
            return None
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        sender = _id(event.get("sender"))
        if sender is None:
            return None
        text = message.get("text") if isinstance(message.get("text"), str) else ""
        payload = None
        if name == "user_send_group_text":
            chat_id = group_id_of(event, self.oa_id)
            if chat_id is None:
                return None
            chat_type = ChatType.GROUP
            addressed, text = addressed_in_group(text, self.oa_name)
            if not addressed and has_question_word(text, self.question_words):
                addressed = True
        else:
            chat_id = sender
            chat_type = ChatType.PRIVATE
            addressed = True
            if text.startswith(BUTTON_PREFIX):
                payload, text = text[len(BUTTON_PREFIX):].strip() or None, ""
        sender_info = event.get("sender") if isinstance(event.get("sender"), dict) else {}
        return Incoming(
            channel=CHANNEL,
            chat_id=chat_id,
            chat_type=chat_type,
            sender_id=sender,
            sender_name=str(sender_info.get("display_name") or sender_info.get("name") or ""),
            text=text,
            time=epoch_time(event.get("timestamp"), self.clock),
            payload=payload,
            addressed=addressed,
            message_id=str(message.get("msg_id")) if message.get("msg_id") else None,
            sender_is_admin=(CHANNEL, sender) in self.officers,
        )

    # -- sending ---------------------------------------------------------------------------------

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, retries: bool = True) -> dict[str, Any]:
        """Call the OA API with the current token: refresh once and retry once on -216/-220, back off on
        -32/429/5xx (bounded by `retry_delays`, unless `retries` is off: the sender retries replies itself);
        return the answer or raise OAError."""
        if self._http is None:
            raise RuntimeError("the Zalo OA channel is not started")
        token = await self.tokens.access_token()
        refreshed = False
        attempt = 0
        while True:
            status, data = await self._request(method, path, body, token)
            code = data.get("error")
            if not isinstance(code, int) or isinstance(code, bool):
                code = -1 if status == 200 else status  # success needs HTTP 200 *and* error == 0
            if status == 200 and code == 0:
                return data
            if retries and (status == 429 or code == RATE_LIMIT or status >= 500 or code == NETWORK) and attempt < len(self.retry_delays):
                delay = self.retry_delays[attempt]
                attempt += 1
                log.warning("zalo_oa: %s %s: error %s; retrying in %.1fs (%d/%d)", method, path, code, delay, attempt, len(self.retry_delays))
                await self.sleep(delay)
                continue
            if code in TOKEN_ERRORS and not refreshed:
                refreshed = True
                token = await self.tokens.refresh(stale=token)
                continue
            raise OAError(code, str(data.get("message") or ""), status)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None, token: str) -> tuple[int, dict[str, Any]]:
        assert self._http is not None
        try:
            async with self._http.request(
                method, self.api_base + path, json=body, headers={"access_token": token}, timeout=aiohttp.ClientTimeout(total=20)
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except aiohttp.ClientConnectorError as exc:  # never connected: safe to try again
            return 0, {"error": NETWORK, "message": str(exc)}
        except aiohttp.ClientError as exc:
            return 0, {"error": FAILED_UNKNOWN, "message": str(exc)}
        except asyncio.TimeoutError:
            # The message may have gone out: do not send it twice.
            return 0, {"error": FAILED_UNKNOWN, "message": "timeout"}
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return status, data if isinstance(data, dict) else {}

    def render_calls(self, chat_type: ChatType, replies: Sequence[Reply]) -> list[dict[str, Any]]:
        """The OA calls that show `replies` in a chat of `chat_type` (buttons in private, numbered lines in groups)."""
        caps = GROUP_CAPS if chat_type is ChatType.GROUP else PRIVATE_CAPS
        hint = self.service.catalog.msg("choices_hint")
        calls: list[dict[str, Any]] = []
        for reply in replies:
            rendered = render(reply, caps, hint)
            if rendered.image and chat_type is ChatType.PRIVATE:
                calls.append({"m": "image", "type": chat_type.value, "url": rendered.image})
            last = len(rendered.texts) - 1
            for i, text in enumerate(rendered.texts):
                if chat_type is ChatType.GROUP:
                    text = escape_group_text(text)
                call: dict[str, Any] = {"m": "text", "type": chat_type.value, "text": text}
                if i == last and rendered.buttons:
                    call["buttons"] = [[b.label, b.payload] for b in rendered.buttons]
                calls.append(call)
        return calls

    async def send(self, chat_id: str, chat_type: ChatType, replies: list[Reply]) -> None:
        """Queue replies that answer no event (e.g. an announcement) in the outbox."""
        await self.pipeline.enqueue(CHANNEL, chat_id, self.render_calls(chat_type, replies))

    async def deliver(self, chat_id: str, call: dict[str, Any]) -> Result:
        """Make one call of the outbox and say how it ended (the pipeline's sender retries)."""
        await self.ready.wait()
        chat_type = ChatType(call.get("type", ChatType.PRIVATE.value))
        if call.get("m") == "image":
            body = {
                "recipient": {"user_id": chat_id},
                "message": {"attachment": {"type": "template", "payload": {"template_type": "media", "elements": [{"media_type": "image", "url": call["url"]}]}}},
            }
            try:
                await self.call("POST", CS_PATH, body, retries=False)
                return Sent()
            except OAError as exc:
                return await self._failed(chat_id, chat_type, exc)
        buttons = [Choice(label, payload) for label, payload in call.get("buttons") or ()]
        return await self.send_text(chat_id, chat_type, call["text"], buttons)

    async def send_text(self, chat_id: str, chat_type: ChatType, text: str, buttons: Sequence[Choice] = ()) -> Result:
        """Send one message once; say how it ended."""
        message: dict[str, Any] = {"text": text}
        if buttons:
            message["attachment"] = {
                "type": "template",
                "payload": {
                    "buttons": [
                        {"title": b.label[:MAX_BUTTON_TITLE], "type": BUTTON_TYPE, "payload": BUTTON_PREFIX + b.payload}
                        for b in buttons
                    ]
                },
            }
        if chat_type is ChatType.GROUP:
            path, body = GROUP_PATH, {"recipient": {"group_id": chat_id}, "message": message}
        else:
            path, body = CS_PATH, {"recipient": {"user_id": chat_id}, "message": message}
        try:
            await self.call("POST", path, body, retries=False)
            if self.inactive_groups.pop(chat_id, None) is not None:  # the group is back (package renewed)
                self._set_detail(self._detail, quiet=True)
            return Sent()
        except OAError as exc:
            if buttons and exc.status == 200 and exc.code not in NOT_ABOUT_THE_MESSAGE and exc.code not in UNREACHABLE:
                # The template itself was refused (plan, permission, format): numbered lines instead.
                log.warning("zalo_oa: buttons refused (%s); sending numbered choices", exc)
                result: Result = Sent()
                for chunk in render(Reply(text, tuple(buttons)), GROUP_CAPS, self.service.catalog.msg("choices_hint")).texts:
                    result = await self.send_text(chat_id, chat_type, chunk)
                    if not isinstance(result, Sent):
                        break
                return result
            return await self._failed(chat_id, chat_type, exc)

    async def _failed(self, chat_id: str, chat_type: ChatType, exc: OAError) -> Result:
        """Classify a failed call: retry what time fixes, refuse (and record) what it does not."""
        if exc.code in GROUP_INACTIVE:
            reason = GROUP_INACTIVE[exc.code]
            log.warning("zalo_oa: group %s is inactive: error %s, %s; its replies are dropped, not retried", chat_id, exc.code, reason)
            async with self.service.db.transaction() as session:
                await people.set_chat_active(session, CHANNEL, chat_id, False)
            self.undeliverable[GROUP_OFF] += 1
            self.inactive_groups[chat_id] = say(GROUP_INACTIVE_SAID[exc.code], code=exc.code)
            self._set_detail(self._detail or say("zalo_oa_status", path=self.settings.zalo_oa_webhook_path), quiet=True)
            return Refused(f"{GROUP_OFF}: error {exc.code}", whole_chat=True)
        if exc.code in PERSON_UNREACHABLE:
            result = WINDOW_CLOSED if exc.code in WINDOW_ERRORS else NOT_A_FOLLOWER if exc.code == NOT_FOLLOWER else UNREACHABLE_PERSON
            log.warning("zalo_oa: %s %s cannot be reached (error %s, %s); not retried", chat_type.value, chat_id, exc.code, result)
            async with self.service.db.transaction() as session:
                if chat_type is ChatType.PRIVATE:
                    await people.set_user_active(session, CHANNEL, chat_id, False)
                else:
                    await people.set_chat_active(session, CHANNEL, chat_id, False)
            self.undeliverable[result] += 1
            return Refused(f"{result}: error {exc.code}", whole_chat=True)
        transient = (
            exc.code in (RATE_LIMIT, NETWORK, FAILED_UNKNOWN, NO_TOKEN, -1)
            or exc.code in TOKEN_ERRORS
            or exc.status == 429
            or exc.status >= 500
            or exc.status == 0
        )
        if transient:
            # A timeout may have delivered: sending again risks a duplicate, dropping risks a loss; we resend.
            # The rate limit is per app (≈ 4,000 requests a minute): it pauses every chat of the channel.
            limited = exc.code == RATE_LIMIT or exc.status == 429
            return Retry(f"error {exc.code}: {exc.message}"[:200], channel_wide=limited)
        log.error("zalo_oa: sending to %s %s failed: %s", chat_type.value, chat_id, exc)
        self.undeliverable[FAILED] += 1
        return Refused(f"error {exc.code}: {exc.message}"[:200])


ZALO_OA = web.AppKey("zalo_oa", ZaloOAChannel)


def setup(app: web.Application) -> str | None:
    """Wire the webhook when the app id and OA secret key are set; return why the channel is off otherwise."""
    from bot.server import SERVICE, SETTINGS

    settings: Settings = app[SETTINGS]
    missing = [name for name, value in (("CCCD_ZALO_OA_APP_ID", settings.zalo_oa_app_id), ("CCCD_ZALO_OA_SECRET_KEY", settings.zalo_oa_secret_key)) if not value]
    if missing:
        return say("channel_not_set", names=", ".join(missing))
    if not settings.zalo_oa_app_secret:
        log.warning("zalo_oa: CCCD_ZALO_OA_APP_SECRET is not set: tokens cannot be refreshed")
    from bot.server import PIPELINE, ROLE

    channel = ZaloOAChannel(app[SERVICE], settings, pipeline=app[PIPELINE], receive=app[ROLE] != "sender")
    app[ZALO_OA] = channel
    if channel.receive:
        app.router.add_post(settings.zalo_oa_webhook_path, channel.handle_webhook)
    run_with_server(app, CHANNEL, channel)
    return None


# -- `cccd-bot zalo-oa authorize` -------------------------------------------------------------------


def consent_url(settings: Settings, challenge: str, state: str) -> str:
    query = urlencode(
        {"app_id": settings.zalo_oa_app_id or "", "redirect_uri": settings.zalo_oa_redirect_uri or "", "code_challenge": challenge, "state": state}
    )
    return f"{settings.zalo_oa_oauth_base.rstrip('/')}{PERMISSION_PATH}?{query}"


def new_verifier() -> str:
    """A PKCE code verifier as Zalo's v4 authorisation wants it: 43 characters of A-Z a-z 0-9 - _."""
    return secrets.token_urlsafe(32)  # 32 random bytes are exactly 43 base64url characters


def _challenge(verifier: str) -> str:
    """The S256 code challenge: base64url of SHA-256(verifier), without "=" padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


async def authorize(
    settings: Settings,
    db: Database,
    code: str | None = None,
    *,
    refresh_token: str | None = None,
    out: Callable[[str], None] = print,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Without a code: remember a PKCE verifier and print the consent URL. With a code: exchange it and
    store the token pair. With a refresh token (from Zalo's API Explorer): spend it at once for a fresh
    pair and store that. Return a process exit status."""
    missing = [n for n, v in (("CCCD_ZALO_OA_APP_ID", settings.zalo_oa_app_id), ("CCCD_ZALO_OA_APP_SECRET", settings.zalo_oa_app_secret)) if not v]
    if missing:
        out(say("oa_auth_missing", names=", ".join(missing)))
        return 2
    now = clock()
    if refresh_token:
        form = {"refresh_token": refresh_token.strip(), "app_id": settings.zalo_oa_app_id or "", "grant_type": "refresh_token"}
        async with aiohttp.ClientSession() as http:
            try:
                pair = await request_tokens(http, settings, form, now, "explorer")
            except OAError as exc:
                out(say("oa_auth_refresh_refused", reason=exc))
                return 1
        await TokenStore(db, settings, clock=clock).replace(pair)
        out(say("oa_auth_stored", until=f"{pair.expires_at:%Y-%m-%d %H:%M}"))
        out(say("oa_auth_refresh_spent"))
        return 0
    if not code:
        if not settings.zalo_oa_redirect_uri:
            out(say("oa_auth_no_redirect"))
            return 2
        verifier = new_verifier()
        state = secrets.token_urlsafe(12)
        async with db.transaction() as session:
            found = await kv.get(session, PKCE_KEY)
            if not await kv.put_if_version(
                session, PKCE_KEY, {"verifier": verifier, "state": state, "created_at": now.isoformat()}, found[1] if found else None, now
            ):
                out(say("oa_auth_concurrent"))
                return 1
        out(say("oa_auth_open"))
        out("")
        out(f"   {consent_url(settings, _challenge(verifier), state)}")
        out("")
        out(say("oa_auth_callback"))
        out("")
        out("   cccd-bot zalo-oa authorize --code CODE")
        return 0
    async with db.transaction() as session:
        found = await kv.get(session, PKCE_KEY)
    verifier = found[0].get("verifier") if found else None
    form = {"code": code.strip(), "app_id": settings.zalo_oa_app_id or "", "grant_type": "authorization_code"}
    if verifier:
        form["code_verifier"] = verifier
    async with aiohttp.ClientSession() as http:
        try:
            pair = await request_tokens(http, settings, form, now, "authorize")
        except OAError as exc:
            out(say("oa_auth_code_refused", reason=exc))
            return 1
    # env_seed None: tokens in the environment never replace an authorized pair (they may be stale).
    await TokenStore(db, settings, clock=clock).replace(pair)
    async with db.transaction() as session:
        found = await kv.get(session, PKCE_KEY)
        if found:
            await kv.put_if_version(session, PKCE_KEY, {}, found[1], now)
    out(say("oa_auth_stored", until=f"{pair.expires_at:%Y-%m-%d %H:%M}"))
    return 0


def cmd_authorize(args) -> int:
    from storage.db import Database

    settings = load_settings()  # a wrong setting raises OperatorError, which the command line prints

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            await db.migrate()
            return await authorize(settings, db, args.code, refresh_token=args.refresh_token)
        finally:
            await db.close()

    return asyncio.run(run())


def register_cli(subparsers) -> None:
    """Add `zalo-oa authorize [--code CODE]` to the `cccd-bot` command line."""
    oa = subparsers.add_parser("zalo-oa", help=say("help_zalo_oa"), description=say("help_zalo_oa"))
    oa_sub = oa.add_subparsers(dest="zalo_oa_command", required=True, title=say("help_commands"), metavar="LỆNH")
    auth = oa_sub.add_parser("authorize", help=say("help_oa_authorize"), description=say("help_oa_authorize_description"))
    auth.add_argument("--code", metavar="MÃ", help=say("help_oa_code"))
    auth.add_argument("--refresh-token", metavar="REFRESH_TOKEN", help=say("help_oa_refresh_token"))
    auth.set_defaults(func=cmd_authorize)
