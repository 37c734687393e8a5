"""The Zalo Bot platform channel (bot-api.zaloplatforms.com): Telegram-like, no Official Account needed.

Calls go to `<base><TOKEN>/<method>` with JSON bodies and answer `{ok, result, description, error_code}`;
HTTP 200 with `ok:false` is a failure. The channel long-polls `getUpdates` unless
`CCCD_ZALO_BOT_WEBHOOK_URL` is set, in which case it registers that webhook and serves it here. The platform
has no buttons and no editing: choices are numbered lines, and the typed number presses them.

Updates become `Work` for the pipeline (bot/pipeline/: taken once by message_id, handled in one transaction);
the pipeline's sender makes the outbox's calls through `deliver`, one Bot API call each.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import aiohttp
from aiohttp import web

from bot.channels import webhook_input
from bot.channels.common import Typing, announce, epoch_time, remove_mention, run_with_server, secret_matches
from bot.channels.webhook_input import ID, NUMBER, STR
from bot.config import Settings
from bot.messages import Capabilities, ChatType, Incoming, Reply
from bot.pipeline import Pacer, Pipeline, Refused, Result, Retry, Sent, Unavailable, Work
from bot.render import render
from bot.startup import say

if TYPE_CHECKING:  # kept out of imports: the command line loads this module to build its parser
    from bot.service import ChatService

log = logging.getLogger(__name__)

CHANNEL = "zalo_bot"
CAPABILITIES = Capabilities(buttons=False, max_text=2000)
SECRET_HEADER = "X-Bot-Api-Secret-Token"
# The fields of an update the channel reads, with their types (bot.channels.webhook_input.check).
UPDATE_FIELDS = {
    "event_name": STR,
    "message": {
        "message_id": ID,
        "date": NUMBER,
        "text": STR,
        "chat": {"id": ID, "chat_type": STR},
        "from": {"id": ID, "display_name": STR, "first_name": STR, "name": STR},
    },
}
DEFAULT_WEBHOOK_PATH = "/zalo/bot/webhook"
TEXT_EVENT = "message.text.received"
# HTTP 200 with ok:false and this code: a long poll that ended with nothing new.
NOTHING_NEW = 408
RATE_LIMITED = 429
NETWORK = -1  # ours: the API could not be reached at all (nothing was sent)
UNKNOWN = 0  # ours: no answer (timeout, broken connection): the call may have gone through
# Codes after which retrying the same set-up call cannot help. 403 is not one: the platform documents it
# as "Internal server error" (transient), not as a permission refusal, so it is retried like a 5xx.
FATAL_CODES = frozenset({400, 401, 404})
SERVER_ERROR_403 = 403
# Events that carry a photo, a sticker or a voice message, possibly with a caption typed beside it.
MEDIA_EVENTS = frozenset({"message.image.received", "message.sticker.received", "message.voice.received"})
# Codes that end a message for good (the request itself is wrong, or the chat does not exist).
REFUSING_CODES = frozenset({400, 404})

Sleep = Callable[[float], Awaitable[None]]
# "@<any name> /command …": the platform delivers only group messages that mention the bot (or reply to
# it), so a leading mention before a command is the bot's, whatever display name it was typed with.
_MENTION_BEFORE_COMMAND = re.compile(r"^@[^/\n]{1,80}?\s(/\w.*)$", re.S)


class ZaloBotError(Exception):
    """A failed call: `ok:false`, a non-2xx answer, or an unreadable body."""

    def __init__(self, method: str, code: int, description: str = "", retry_after: float | None = None):
        super().__init__(f"{method}: error {code} {description}".strip())
        self.method = method
        self.code = code
        self.description = description
        self.retry_after = retry_after


class ZaloBotApi:
    """A thin client of the Bot API; backs off on rate limits (bounded) and raises ZaloBotError."""

    def __init__(
        self,
        token: str,
        base_url: str,
        *,
        retry_delays: Sequence[float] = (1.0, 2.0, 4.0, 8.0),
        max_retry_after: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        http: aiohttp.ClientSession | None = None,
    ):
        self.token = token
        self.base_url = base_url
        self.retry_delays = tuple(retry_delays)
        self.max_retry_after = max_retry_after
        self.sleep = sleep
        self.http = http

    def url(self, method: str) -> str:
        return f"{self.base_url}{self.token}/{method}"

    def _scrub(self, text: str) -> str:
        """Keep the token out of logs."""
        return text.replace(self.token, "<token>") if self.token else text

    async def call(self, method: str, payload: dict[str, Any] | None = None, *, timeout: float = 15.0) -> Any:
        """Call `method`; return its `result`. Rate limits are retried after the configured delays."""
        attempt = 0
        while True:
            try:
                return await self.call_once(method, payload or {}, timeout)
            except ZaloBotError as exc:
                # A server error refused the call before doing it, like a rate limit: worth another try
                # (403 is this platform's "internal server error").
                retryable = exc.code in (RATE_LIMITED, NETWORK, SERVER_ERROR_403) or 500 <= exc.code < 600
                if not retryable or attempt >= len(self.retry_delays):
                    raise
                delay = self.retry_delays[attempt]
                if exc.retry_after is not None:
                    delay = min(max(delay, exc.retry_after), self.max_retry_after)
                attempt += 1
                log.warning("zalo_bot: %s failed (%s); retrying in %.1fs (%d/%d)", method, exc.description, delay, attempt, len(self.retry_delays))
                await self.sleep(delay)

    async def call_once(self, method: str, payload: dict[str, Any], timeout: float = 15.0) -> Any:
        """Call `method` once; return its `result` or raise ZaloBotError."""
        if self.http is None:
            raise RuntimeError("ZaloBotApi has no HTTP session (the channel is not started)")
        try:
            async with self.http.post(self.url(method), json=payload, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            raise ZaloBotError(method, NETWORK, self._scrub(str(exc))) from None
        except aiohttp.ClientError as exc:
            raise ZaloBotError(method, UNKNOWN, self._scrub(str(exc)) or type(exc).__name__) from None
        except asyncio.TimeoutError:
            raise ZaloBotError(method, UNKNOWN, "timeout") from None
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ZaloBotError(method, status if status != 200 else 502, f"unreadable answer (HTTP {status})")
        if status == 200 and body.get("ok") is True:
            return body.get("result")
        code = body.get("error_code")
        if not isinstance(code, int) or isinstance(code, bool):
            code = status if status != 200 else 500
        retry_after = None
        params = body.get("parameters")
        if isinstance(params, dict) and isinstance(params.get("retry_after"), (int, float)):
            retry_after = float(params["retry_after"])
        if status == RATE_LIMITED:
            code = RATE_LIMITED
        raise ZaloBotError(method, code, str(body.get("description") or ""), retry_after)


def webhook_secret(settings: Settings) -> str:
    """The secret Zalo echoes in X-Bot-Api-Secret-Token: the configured one, or one derived from the token.

    Derived secrets are stable across restarts and processes and reveal nothing about the token.
    """
    if settings.zalo_bot_webhook_secret:
        return settings.zalo_bot_webhook_secret
    token = settings.zalo_bot_token or ""
    return hashlib.sha256(f"cccd-bot:zalo-bot-webhook:{token}".encode()).hexdigest()[:48]


def webhook_path(settings: Settings) -> str:
    """Serve the webhook at the path of CCCD_ZALO_BOT_WEBHOOK_URL (default /zalo/bot/webhook)."""
    path = urlparse(settings.zalo_bot_webhook_url or "").path
    return path if path and path != "/" else DEFAULT_WEBHOOK_PATH


class ZaloBotChannel:
    """Receive updates (long poll or webhook), hand them to the core, send the replies back."""

    def __init__(
        self,
        service: ChatService,
        settings: Settings,
        *,
        pipeline: Pipeline | None = None,
        receive: bool = True,
        poll_timeout: float = 30.0,
        error_delays: Sequence[float] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
        retry_delays: Sequence[float] = (1.0, 2.0, 4.0, 8.0),
        sleep: Sleep = asyncio.sleep,
    ):
        if not settings.zalo_bot_token:
            raise ValueError("CCCD_ZALO_BOT_TOKEN is not set")
        self.name = CHANNEL
        self.service = service
        self.pipeline = pipeline or Pipeline(service)
        self.receive = receive
        self.settings = settings
        self.api = ZaloBotApi(settings.zalo_bot_token, settings.zalo_bot_base_url, retry_delays=retry_delays, sleep=sleep)
        self.poll_timeout = poll_timeout
        self.error_delays = tuple(error_delays)
        self.sleep = sleep
        self.webhook_url = settings.zalo_bot_webhook_url or None
        self.webhook_path = webhook_path(settings)
        self.secret = webhook_secret(settings)
        self.officers = settings.officer_ids()
        self.me: dict[str, Any] = {}
        self.mention_names = settings.zalo_bot_mentions()
        self.typing = Typing(self._send_typing, settings.typing_after_seconds)
        self.mode = "webhook" if self.webhook_url else "polling"
        self.detail = say("status_on_mode", mode=self.mode)
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        # Set once getMe answered: group mentions are stripped by the bot's name.
        self.ready = asyncio.Event()
        # Set once start-up is done (webhook registered or polling about to begin) and the mode announced.
        self.started = asyncio.Event()
        # Set by the server once it is about to listen (bot.server.STARTED); None: listening already.
        self.server_started: asyncio.Event | None = None
        self._held: list[Work] = []
        # The server's ChannelStatus of this channel, updated with the mode once known (shown at /healthz).
        self.status: Any = None

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session and, in the background, introduce the bot and start its mode."""
        self._stopping = False
        self._http = aiohttp.ClientSession()
        self.api.http = self._http
        self._spawn(self._bootstrap())

    def pacer(self) -> Pacer:
        return Pacer(self.settings.zalo_bot_send_rate or None)

    async def idle(self) -> None:
        """Wait until received updates are handled and their replies delivered."""
        await self.pipeline.idle()

    async def stop(self) -> None:
        """Stop receiving (the sender still delivers through this channel until `close`)."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.typing.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bootstrap(self) -> None:
        problem = ""
        working = True
        try:
            self.me = await self.api.call("getMe") or {}
            self._reached(None)
        except ZaloBotError as exc:
            log.error("zalo_bot: getMe failed (%s); check CCCD_ZALO_BOT_TOKEN", exc)
            problem = "; " + say("zalo_bot_getme_failed", reason=exc)
            self._reached(exc)
        groups = self.me.get("can_join_groups")
        group_note = say({True: "zalo_bot_groups_on", False: "zalo_bot_groups_off"}.get(groups, "zalo_bot_groups_unknown"))
        name = self.me.get("account_name") or self.me.get("display_name") or "?"
        group_note += problem
        names = self._names()
        if self.me.get("can_join_groups") is not False:
            if self.mention_names:
                group_note += "; " + say("zalo_bot_mention_names", names=", ".join("@" + n for n in names))
            else:
                log.warning(
                    "zalo_bot: CCCD_ZALO_BOT_MENTION_NAMES is not set: a group message like \"@<bot name> question\" keeps "
                    "the name in the question (getMe gives only the handle %s); \"@<name> /command\" still works", name
                )
        # The names to strip are known: the webhook may take deliveries from now on (setWebhook's probe
        # arrives while setWebhook is still being answered, and must not be refused as "not ready").
        self.ready.set()
        if not self.receive:
            self.detail = say("zalo_bot_status_send_only", name=name, groups=group_note)
        elif self.webhook_url:
            if self.server_started is not None:
                # setWebhook calls the URL back before it answers: not before this server listens.
                await self.server_started.wait()
            result = await self._set_webhook()
            if result is not None:
                self.detail = say("zalo_bot_status_webhook", url=self.webhook_url, name=name, groups=group_note) + self._verification(result)
            else:
                self.detail = f"{say('zalo_bot_webhook_refused', url=self.webhook_url)}; {group_note}"
                working = False
        else:
            await self._delete_webhook()
            self.detail = say("zalo_bot_status_polling", name=name, groups=group_note)
        if self.status is not None:
            self.status.detail = self.detail
            self.status.on = working
        announce(say("serve_channel", name=CHANNEL, detail=self.detail))
        self.started.set()
        if not self.webhook_url and self.receive:
            await self.poll_forever()

    def _reached(self, exc: BaseException | None) -> None:
        """Tell /healthz whether the Bot API answers: no answer at all (a network error) means not."""
        if self.status is None:
            return
        if isinstance(exc, ZaloBotError) and exc.code in (NETWORK, UNKNOWN):
            self.status.cannot_reach(urlparse(self.api.url("getMe")).netloc or "Zalo", exc.description)
        elif exc is None or isinstance(exc, ZaloBotError):
            self.status.reached()

    async def _set_webhook(self) -> dict[str, Any] | None:
        """Register the webhook (retrying 5xx, 403 and the network); its result, or None when refused."""
        for attempt in range(len(self.error_delays) + 1):
            try:
                result = await self.api.call("setWebhook", {"url": self.webhook_url, "secret_token": self.secret})
                return result if isinstance(result, dict) else {}
            except ZaloBotError as exc:
                if attempt >= len(self.error_delays) or exc.code in FATAL_CODES:
                    log.error("zalo_bot: setWebhook failed (%s); updates will not arrive", exc)
                    return None
                await self.sleep(self.error_delays[attempt])
        return None

    @staticmethod
    def _verification(result: dict[str, Any]) -> str:
        """Log the outcome of the probe setWebhook sends to the URL at once; a note for /healthz.

        The webhook is registered whatever the probe found (setWebhook answered ok): a failed probe is
        reported, never taken as a refused webhook, since deliveries are retried by the platform.
        """
        verification = result.get("verification")
        if not isinstance(verification, dict):
            log.info("zalo_bot: setWebhook accepted (no verification reported)")
            return ""
        status = str(verification.get("status") or "").lower()
        code = verification.get("http_code", verification.get("status_code"))
        failed = (
            verification.get("success") is False
            or verification.get("ok") is False
            or status in ("fail", "failed", "failure", "error")
            or (isinstance(code, int) and not 200 <= code < 300)
        )
        shown = json.dumps(verification, ensure_ascii=False)[:300]
        if failed:
            log.warning("zalo_bot: setWebhook's probe of the URL failed: %s; check that the address reaches this server", shown)
            return "; " + say("zalo_bot_probe_failed")
        log.info("zalo_bot: setWebhook's probe of the URL succeeded: %s", shown)
        return "; " + say("zalo_bot_probe_ok")

    async def _delete_webhook(self) -> None:
        try:
            await self.api.call("deleteWebhook")
        except ZaloBotError as exc:
            log.warning("zalo_bot: deleteWebhook failed (%s); long polling may be refused", exc)

    # -- receiving -------------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """Long-poll once; return how many updates were accepted. Raises on errors other than 408."""
        if self._held:
            await self._receive([])
        try:
            result = await self.api.call("getUpdates", {"timeout": int(self.poll_timeout)}, timeout=self.poll_timeout + 10)
        except ZaloBotError as exc:
            if exc.code == NOTHING_NEW:
                return 0
            raise
        updates = result if isinstance(result, list) else [result] if isinstance(result, dict) else []
        works = [work for update in updates if isinstance(update, dict) and (work := self.interpret(update)) is not None]
        await self._receive(works)
        for work in works:
            if work.incoming is not None:
                self.typing.expect(work.chat_id)
        return len(works)

    async def _receive(self, works: list[Work]) -> None:
        """Hand updates to the pipeline; while the database is away keep them here (getUpdates has no
        offset: the platform will not send them again) and try again before the next poll."""
        self._held.extend(works)
        held, self._held = self._held, []
        try:
            await self.pipeline.receive_all(held)
        except Exception:
            self._held = held + self._held  # those already taken are skipped as duplicates next time
            raise

    async def poll_forever(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self.poll_once()
                failures = 0
                self._reached(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network, server or token trouble: wait, then poll again
                self._reached(exc)
                delay = self.error_delays[min(failures, len(self.error_delays) - 1)] if self.error_delays else 1.0
                failures += 1
                log.warning("zalo_bot: getUpdates failed (%s); polling again in %.1fs", exc, delay)
                await self.sleep(delay)

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """Check the secret header and the body, then hand the update to the pipeline (one transaction)."""
        given = request.headers.get(SECRET_HEADER, "")
        if not secret_matches(given, self.secret):
            return web.json_response({"ok": False, "description": "forbidden"}, status=403)
        try:
            body = webhook_input.parse_json(await webhook_input.read_body(request))
        except webhook_input.BadInput as exc:
            log.warning("zalo_bot webhook: refused a body (%s)", exc)
            return web.json_response({"ok": False, "description": str(exc)}, status=400)
        # Live deliveries are the bare {"event_name", "message"} object; the docs' sample (and getUpdates)
        # wrap it in {"ok", "result"}: both are read.
        update = body.get("result", body) if isinstance(body, dict) and isinstance(body.get("result"), dict) else body
        if not isinstance(update, dict) or not isinstance(update.get("message"), dict):
            # setWebhook's probe, or an event without a message: acknowledged, nothing to do.
            return web.json_response({"ok": True})
        try:
            webhook_input.check(update, UPDATE_FIELDS, "update")
        except webhook_input.BadInput as exc:
            log.warning("zalo_bot webhook: refused a body (%s)", exc)
            return web.json_response({"ok": False, "description": str(exc)}, status=400)
        if not self.ready.is_set():
            return web.json_response({"ok": False, "description": "not ready"}, status=503)
        work = self.interpret(update)
        if work is not None:
            try:
                await self.pipeline.receive(work)
            except Unavailable:
                return web.json_response({"ok": False, "description": "database unavailable, try again"}, status=503)
            if work.incoming is not None:
                self.typing.expect(work.chat_id)
        return web.json_response({"ok": True})

    def interpret(self, update: dict[str, Any]) -> Work | None:
        """What the pipeline should do with an update (deduplicated by message_id); None to leave it."""
        message = update.get("message")
        if not isinstance(message, dict):
            return None
        chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
        chat_id = chat.get("id")
        if chat_id in (None, ""):
            return None
        message_id = message.get("message_id")
        key = str(message_id) if message_id not in (None, "") else "h:" + hashlib.sha256(
            json.dumps(update, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()[:40]
        incoming = self.parse(update)
        event = str(update.get("event_name") or "")
        # Without an event name, a message that carries text is taken as text; a photo, sticker or voice
        # message with a caption is answered as the caption's question.
        is_text = event == TEXT_EVENT or (not event and bool(message.get("text"))) or (event in MEDIA_EVENTS and bool(_caption(message)))
        work = Work(CHANNEL, key, str(chat_id), render=self.render_calls, user_id=incoming.sender_id)
        if not is_text:
            if incoming.chat_type is not ChatType.PRIVATE:
                return None
            work.replies = (Reply(self.service.catalog.msg("not_text")),)
            return work
        # Debug only: lets an operator read a person's id (for CCCD_OFFICERS) with `cccd-bot -v serve`.
        log.debug("zalo_bot: text from user %s in %s chat %s", incoming.sender_id, incoming.chat_type.value, incoming.chat_id)
        work.incoming = incoming
        return work

    def parse(self, update: dict[str, Any]) -> Incoming | None:
        """Turn a text update into an Incoming; None for anything else."""
        message = update["message"]
        chat = message.get("chat") or {}
        sender = message.get("from") if isinstance(message.get("from"), dict) else {}
        chat_id = str(chat.get("id"))
        sender_id = str(sender.get("id") or chat_id)
        raw_type = str(chat.get("chat_type") or "").upper()
        if raw_type in ("PRIVATE", "GROUP"):
            chat_type = ChatType.PRIVATE if raw_type == "PRIVATE" else ChatType.GROUP
        else:
            chat_type = ChatType.PRIVATE if chat_id == sender_id else ChatType.GROUP
        text = message.get("text") if isinstance(message.get("text"), str) else ""
        if not text and str(update.get("event_name") or "") in MEDIA_EVENTS:
            text = _caption(message)
        if chat_type is ChatType.GROUP:
            text = self.strip_mention(text)
        return Incoming(
            channel=CHANNEL,
            chat_id=chat_id,
            chat_type=chat_type,
            sender_id=sender_id,
            sender_name=str(sender.get("display_name") or sender.get("first_name") or sender.get("name") or ""),
            text=text,
            time=epoch_time(message.get("date"), self.service.clock),
            # The platform delivers only group messages that mention the bot or reply to it.
            addressed=True,
            message_id=str(message.get("message_id")) if message.get("message_id") is not None else None,
            sender_is_admin=(CHANNEL, sender_id) in self.officers,
        )

    def _names(self) -> list[str]:
        """Names the bot is called by in groups: the configured display names, then getMe's."""
        names = [*self.mention_names, str(self.me.get("display_name") or ""), str(self.me.get("account_name") or "")]
        # Longest first: "@CCCD Bot xã" is stripped whole before "@CCCD Bot" could leave "xã" behind.
        return sorted({n for n in names if n}, key=len, reverse=True)

    def strip_mention(self, text: str) -> str:
        """A group message without the bot's mention ("@<display name>", "@bot.XXXX")."""
        stripped = remove_mention(text, self._names())
        if stripped is not None:
            return stripped
        command = _MENTION_BEFORE_COMMAND.match(text.strip())
        return command.group(1).strip() if command else text

    # -- sending ---------------------------------------------------------------------------------

    def render_calls(self, replies: list[Reply]) -> list[dict[str, Any]]:
        """The Bot API calls that show `replies`: text chunks of at most 2,000 characters, photos by URL."""
        hint = self.service.catalog.msg("choices_hint")
        calls: list[dict[str, Any]] = []
        for reply in replies:
            rendered = render(reply, CAPABILITIES, hint)
            if rendered.image:
                calls.append({"m": "sendPhoto", "photo": rendered.image})
            calls.extend({"m": "sendMessage", "text": text} for text in rendered.texts)
        return calls

    async def send(self, chat_id: str, replies: list[Reply]) -> None:
        """Queue replies that answer no update (e.g. an announcement) in the outbox."""
        await self.pipeline.enqueue(CHANNEL, chat_id, self.render_calls(replies))

    async def deliver(self, chat_id: str, call: dict[str, Any]) -> Result:
        """Make one call of the outbox and say how it ended (the pipeline's sender retries)."""
        await self.ready.wait()
        method = call.get("m", "sendMessage")
        body = {"chat_id": chat_id, "photo": call["photo"]} if method == "sendPhoto" else {"chat_id": chat_id, "text": call["text"]}
        try:
            await self.api.call_once(method, body)
            self.typing.sent(chat_id)
            return Sent()
        except ZaloBotError as exc:
            if exc.code == RATE_LIMITED:
                return Retry("rate limited", exc.retry_after)
            if exc.code in REFUSING_CODES:
                log.error("zalo_bot: %s to %s refused: %s", method, chat_id, exc)
                return Refused(f"error {exc.code}: {exc.description}"[:200])
            # 5xx, 403 ("internal server error" on this platform), 401 (the token: configuration), the network.
            return Retry(f"error {exc.code}: {exc.description}"[:200])

    async def _send_typing(self, chat_id: str) -> None:
        await self.api.call_once("sendChatAction", {"chat_id": chat_id, "action": "typing"}, timeout=5.0)


def _caption(message: dict[str, Any]) -> str:
    caption = message.get("caption")
    return caption.strip() if isinstance(caption, str) else ""


ZALO_BOT = web.AppKey("zalo_bot", ZaloBotChannel)


def setup(app: web.Application) -> str | None:
    """Wire the channel when CCCD_ZALO_BOT_TOKEN is set; return why it is off otherwise."""
    from bot.server import SERVICE, SETTINGS

    settings: Settings = app[SETTINGS]
    if not settings.zalo_bot_token:
        return say("channel_not_set", names="CCCD_ZALO_BOT_TOKEN")
    from bot.server import PIPELINE, ROLE, STARTED

    channel = ZaloBotChannel(app[SERVICE], settings, pipeline=app[PIPELINE], receive=app[ROLE] != "sender")
    app[ZALO_BOT] = channel
    channel.server_started = app.get(STARTED)
    if channel.webhook_url and channel.receive:
        app.router.add_post(channel.webhook_path, channel.handle_webhook)
    run_with_server(app, CHANNEL, channel)
    return None
