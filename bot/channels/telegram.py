"""The Telegram channel: a thin transport between the Bot API and the conversation core.

python-telegram-bot (v22) is used for what it is good at: the HTTP calls, the typed objects and the
errors of the Bot API. The conversation itself stays in the core, whose state lives in the database,
so that several processes and the Zalo channels share the same flows.

Updates arrive by webhook (a route on the server's aiohttp application) or by long polling. The
channel checks and parses each update into a `Work` for the pipeline (bot/pipeline/), which takes it
once by update_id, handles it and stores the rendered replies in the outbox in one transaction; the
webhook answers 200 after that commit, non-2xx when the database is away (Telegram retries), and the
long poll confirms an offset only after its updates were committed. The pipeline's sender makes the
calls through `deliver`, one Bot API call each. Replies are plain text (no parse_mode: nothing a
person types can break a message) with inline keyboards whose callback data are the core's payloads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import warnings
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    CallbackQuery,
    ChatMemberUpdated,
    Message,
    Update,
)
from telegram.constants import ChatAction, ChatMemberStatus, MessageEntityType
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ApplicationBuilder
from telegram.request import HTTPXRequest

from bot.channels import webhook_input
from bot.channels.common import Typing, has_question_word, run_with_server, secret_matches
from bot.channels.telegram_send import BotApiClient, api_call
from bot.channels.webhook_input import BOOL, ID, INT, STR
from bot.config import Settings
from bot.messages import Capabilities, ChatType, Choice, Incoming, Reply
from bot.pipeline import Moved, Pacer, Pipeline, Refused, Result, Retry, Sent, Unavailable, Work
from bot.render import render, split_text
from bot.server import PIPELINE, SERVICE, SETTINGS
from bot.service import ChatService
from bot.startup import say
from storage import conversations, deliveries, kv, people

log = logging.getLogger(__name__)

CHANNEL = "telegram"
# Telegram shows up to 100 inline buttons; 12 keeps the hamlet list (8 and "skip") as buttons.
CAPABILITIES = Capabilities(buttons=True, max_text=4096, max_buttons=12, links=True)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
KV_SECRET = "telegram.webhook_secret"
ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
MAX_CALLBACK_BYTES = 64
# Waits between retries of a set-up call (getMe, setWebhook, commands) after network errors.
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0, 60.0, 60.0)
MAX_FLOOD_WAITS = 5

_COMMAND = re.compile(r"^/([A-Za-z0-9_]+)(?:@([A-Za-z0-9_]+))?(?:\s+(.*))?$", re.S)
_PRESENT = {ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER}
_ADMINS = {ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER}

# Telegram's command menu per scope; each description is the content's message `command_<name>`.
PRIVATE_COMMANDS = ("start", "huongdan", "menu", "huynhac", "xoa")
GROUP_COMMANDS = ("cauhoi", "menu")
GROUP_ADMIN_COMMANDS = ("thon", *GROUP_COMMANDS)

T = TypeVar("T")

# The fields of an update the channel reads, with their types (bot.channels.webhook_input.check).
_CHAT = ({"id": (INT, True), "type": (STR, True), "title": STR}, True)
_USER = {"id": (INT, True), "is_bot": BOOL, "first_name": STR}
_MESSAGE = {
    "message_id": INT,
    "date": INT,
    "chat": _CHAT,
    "from": _USER,
    "sender_chat": {"id": INT},
    "text": STR,
    "caption": STR,
    "message_thread_id": INT,
    "migrate_to_chat_id": INT,
    "migrate_from_chat_id": INT,
    "reply_to_message": {"from": {"id": INT}},
}
UPDATE_FIELDS = {
    "update_id": (INT, True),
    "message": _MESSAGE,
    "callback_query": {"id": (ID, True), "from": (_USER, True), "data": STR, "message": {"message_id": INT, "date": INT, "chat": _CHAT}},
    "my_chat_member": {"chat": _CHAT, "date": INT, "new_chat_member": ({"status": (STR, True), "user": (_USER, True)}, True)},
}


def retry_seconds(exc: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds (an int before PTB 22.2's timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return max(seconds, 0.0)


def fit_utf16(texts: Sequence[str], limit: int = CAPABILITIES.max_text) -> list[str]:
    """Split again the chunks over Telegram's limit, which counts UTF-16 code units (an emoji counts two)."""
    out: list[str] = []
    for text in texts:
        if len(text.encode("utf-16-le")) // 2 <= limit:
            out.append(text)
        else:
            out.extend(split_text(text, limit // 2))
    return out


def webhook_path(url: str) -> str:
    """The path the webhook is served at: the path of CCCD_TELEGRAM_WEBHOOK_URL."""
    return urlsplit(url).path or "/"


def build_application(settings: Settings, request: HTTPXRequest, get_updates_request: HTTPXRequest) -> Application:
    """Build PTB's Application as a holder of the bot and its HTTP clients; no updater, no handlers."""
    return (
        ApplicationBuilder()
        .token(settings.telegram_token or "")
        .base_url(settings.telegram_base_url)
        .request(request)
        .get_updates_request(get_updates_request)
        .updater(None)
        .build()
    )


class TelegramChannel:
    """Receive Telegram updates, hand them to the core in order per chat, and send the replies."""

    def __init__(
        self,
        service: ChatService,
        settings: Settings,
        *,
        pipeline: Pipeline | None = None,
        receive: bool = True,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        backoff: Sequence[float] = BACKOFF,
        poll_timeout: int = 30,
    ):
        if not settings.telegram_token:
            raise ValueError("CCCD_TELEGRAM_TOKEN is not set")
        self.name = CHANNEL
        self.service = service
        self.pipeline = pipeline or Pipeline(service)
        # False in a sender-only process: it delivers the outbox but neither polls nor serves the webhook.
        self.receive = receive
        self.settings = settings
        # Waits (flood control, network back-off) go through `sleep`, so tests need not wait.
        self.sleep = sleep
        self.backoff = tuple(backoff) or (1.0,)
        self.poll_timeout = poll_timeout
        self.webhook_url = settings.telegram_webhook_url or None
        self.mode = "webhook" if self.webhook_url else "polling"
        # Kept to close them ourselves: Application.shutdown skips them when getMe never succeeded.
        self._requests = (
            HTTPXRequest(connection_pool_size=32, connect_timeout=10, read_timeout=20, write_timeout=20, pool_timeout=5),
            HTTPXRequest(connection_pool_size=2, connect_timeout=10, read_timeout=10),
        )
        self.application = build_application(settings, *self._requests)
        self.bot = self.application.bot
        self._token = settings.telegram_token
        # Replies (and the typing indicator) go out through their own aiohttp client (telegram_send.py).
        self.replies = BotApiClient(settings.telegram_base_url, self._token)
        self.bot_key = self._token.split(":", 1)[0]
        self.bot_id: int | None = int(self.bot_key) if self.bot_key.isdigit() else None
        self.username: str | None = (settings.telegram_bot_username or "").lstrip("@") or None
        self.secret: str | None = None
        self.question_words = settings.question_words()
        # getMe's can_read_all_group_messages: False is privacy mode (groups send only commands for the
        # bot and replies to it); None until getMe answered.
        self.reads_all_group_messages: bool | None = None
        self.typing = Typing(self._send_typing, settings.typing_after_seconds)
        self.ready = asyncio.Event()
        self.status: Any = None
        self._runner: asyncio.Task | None = None
        self._side_calls: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Load the webhook secret, then connect in the background (the server starts meanwhile)."""
        if self.mode == "webhook":
            self.secret = await self._webhook_secret()
        self._runner = asyncio.create_task(self._run(), name="telegram-channel")

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout)

    def pacer(self) -> Pacer:
        """Replies are paced only when CCCD_TELEGRAM_SEND_RATE is set; flood control pauses the channel anyway."""
        return Pacer(self.settings.telegram_send_rate or None)

    async def stop(self) -> None:
        """Stop receiving (the sender still delivers through this channel until `close`)."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        await self.typing.close()

    async def close(self) -> None:
        """Close the Bot API clients."""
        await asyncio.gather(*self._side_calls, return_exceptions=True)
        try:
            await self.application.shutdown()
            for request in self._requests:
                await request.shutdown()
            await self.replies.close()
        except Exception:  # closing clients must not stop the server's shutdown
            log.warning("telegram: error while closing the Bot API clients", exc_info=True)

    async def idle(self) -> None:
        """Wait until received updates are handled and their replies delivered."""
        await self.pipeline.idle()

    def _set_status(self, on: bool, detail: str) -> None:
        if on and self.reads_all_group_messages is not None:
            detail = f"{detail}; {self.privacy_note()}"
        if self.status is not None:
            self.status.on = on
            self.status.detail = detail

    def _reached(self, reached: bool, exc: BaseException | None = None) -> None:
        """Tell /healthz whether the Bot API answers (a network error means it does not)."""
        if self.status is None:
            return
        if reached:
            self.status.reached()
        else:
            self.status.cannot_reach(urlsplit(self.settings.telegram_base_url).netloc or "Telegram", self._safe(exc) if exc else "")

    def privacy_note(self) -> str:
        """Which group mode the bot is in, for /healthz (the IT person reads it: Vietnamese)."""
        return say("telegram_privacy_off" if self.reads_all_group_messages else "telegram_privacy_on")

    def privacy_log(self) -> str:
        """Which group mode the bot is in, for the start-up log."""
        if self.reads_all_group_messages:
            return "privacy mode off (reads group messages, answers only what is addressed to it)"
        return (
            "privacy mode ON: in groups only /commands and replies to the bot arrive, plain @mentions do not; "
            "BotFather /setprivacy -> Disable, or make the bot a group admin"
        )

    def _safe(self, exc: BaseException | str) -> str:
        """An error's text without the token (PTB puts it in InvalidToken's message)."""
        return str(exc).replace(self._token, "<token>")

    async def _run(self) -> None:
        try:
            await self._connect_and_receive()
        except asyncio.CancelledError:
            raise
        except Exception:  # the server goes on serving the other channels
            log.exception("telegram: the channel stopped on an unexpected error")
            self._set_status(False, say("telegram_stopped"))

    async def _connect_and_receive(self) -> None:
        if not await self._persist("getMe", self.application.initialize):
            self._set_status(False, say("telegram_token_rejected"))
            return
        self.bot_id = self.bot.id
        self.username = self.bot.username or self.username
        self.reads_all_group_messages = bool(self.bot.can_read_all_group_messages)
        if self.reads_all_group_messages:
            log.info("telegram: @%s: %s", self.username, self.privacy_log())
        else:
            log.warning("telegram: @%s: %s", self.username, self.privacy_log())
        await self._register_commands()
        if self.mode == "webhook" and not self.receive:
            self._set_status(True, say("telegram_status_send_only", name=self.username))
            self.ready.set()
            return
        if self.mode == "webhook":
            done = await self._persist(
                "setWebhook",
                lambda: self.bot.set_webhook(
                    self.webhook_url, secret_token=self.secret, allowed_updates=list(ALLOWED_UPDATES), max_connections=40
                ),
            )
            if not done:
                self._set_status(False, say("telegram_webhook_refused"))
            else:
                self._set_status(True, say("telegram_status_webhook", path=webhook_path(self.webhook_url), name=self.username))
            self.ready.set()
            return
        await self._persist("deleteWebhook", lambda: self.bot.delete_webhook(drop_pending_updates=False))
        self._set_status(True, say("telegram_status_polling", name=self.username))
        self.ready.set()
        if self.receive:
            await self._poll()

    async def _persist(self, what: str, make: Callable[[], Awaitable[Any]]) -> bool:
        """Call until it succeeds; False on an error that retrying cannot fix."""
        attempt = 0
        while True:
            try:
                await make()
                self._reached(True)
                return True
            except RetryAfter as exc:
                await self.sleep(retry_seconds(exc))
            except (InvalidToken, BadRequest, Forbidden) as exc:
                log.error("telegram: %s failed: %s", what, self._safe(exc))
                return False
            except TelegramError as exc:
                self._reached(not isinstance(exc, NetworkError), exc)
                delay = self.backoff[min(attempt, len(self.backoff) - 1)]
                attempt += 1
                log.warning("telegram: %s failed (%s); retrying in %.1f s", what, self._safe(exc), delay)
                await self.sleep(delay)

    async def _register_commands(self) -> None:
        scopes = (
            (PRIVATE_COMMANDS, BotCommandScopeAllPrivateChats()),
            (GROUP_COMMANDS, BotCommandScopeAllGroupChats()),
            (GROUP_ADMIN_COMMANDS, BotCommandScopeAllChatAdministrators()),
        )
        for commands, scope in scopes:
            listed = [BotCommand(name, self.service.catalog.msg(f"command_{name}")) for name in commands]
            try:
                await self._call(lambda listed=listed, scope=scope: self.bot.set_my_commands(listed, scope=scope))
            except TelegramError as exc:
                log.warning("telegram: setMyCommands (%s) failed: %s", scope.type, self._safe(exc))

    async def _webhook_secret(self) -> str:
        """The configured secret, or one generated once and kept in the database for every process."""
        if self.settings.telegram_webhook_secret:
            return self.settings.telegram_webhook_secret
        for _ in range(3):
            async with self.service.db.transaction() as session:
                stored = await kv.get(session, KV_SECRET)
                if stored and SECRET_RE.match(str(stored[0].get("secret", ""))):
                    return stored[0]["secret"]
                secret = secrets.token_urlsafe(32)
                version = stored[1] if stored else None
                if await kv.put_if_version(session, KV_SECRET, {"secret": secret}, version, self.service.clock()):
                    log.info("telegram: generated a webhook secret and stored it")
                    return secret
        raise RuntimeError("cannot store the Telegram webhook secret")

    # ------------------------------------------------------------------ receiving

    async def _poll(self) -> None:
        """Long polling: fetch updates, record and queue them, confirm them with the next offset."""
        offset: int | None = None
        failures = 0
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=offset, timeout=self.poll_timeout, allowed_updates=list(ALLOWED_UPDATES)
                )
            except RetryAfter as exc:
                await self.sleep(retry_seconds(exc))
                continue
            except InvalidToken as exc:
                log.error("telegram: polling stopped: %s", self._safe(exc))
                self._set_status(False, say("telegram_token_rejected"))
                return
            except (TypeError, ValueError, KeyError, AttributeError):
                # An update PTB cannot read would come back on every call: fetch them raw, skip it.
                try:
                    updates, offset = await self._fetch_readable(offset)
                except Exception as exc:
                    log.warning("telegram: getUpdates failed (%s)", self._safe(exc))
                    await self.sleep(self.backoff[0])
                    continue
            except Exception as exc:  # network errors, a webhook set by another process (Conflict)…
                self._reached(not isinstance(exc, NetworkError), exc)
                delay = self.backoff[min(failures, len(self.backoff) - 1)]
                failures += 1
                log.warning("telegram: getUpdates failed (%s); retrying in %.1f s", self._safe(exc), delay)
                await self.sleep(delay)
                continue
            failures = 0
            self._reached(True)
            if not updates:
                continue
            works = []
            for update in updates:
                try:
                    work = await self.interpret(update)
                except Exception:
                    log.exception("telegram: update %s cannot be handled; skipped", update.update_id)
                    continue
                if work is not None:
                    works.append(work)
            try:
                await self.pipeline.receive_all(works)
            except Exception as exc:
                # Nothing confirmed: the updates come again and those already committed are skipped.
                log.warning("telegram: cannot handle updates now (%s); fetching them again", type(exc).__name__)
                await self.sleep(self.backoff[0])
                continue
            for work in works:
                if work.incoming is not None:
                    self.typing.expect(work.chat_id)
            offset = updates[-1].update_id + 1

    async def _fetch_readable(self, offset: int | None) -> tuple[list[Update], int | None]:
        """Fetch pending updates without parsing them all at once; log and skip the unreadable."""
        kwargs: dict[str, Any] = {"timeout": 0, "allowed_updates": list(ALLOWED_UPDATES)}
        if offset is not None:
            kwargs["offset"] = offset
        with warnings.catch_warnings():  # PTB warns that getUpdates has its own method
            warnings.simplefilter("ignore")
            raw = await self.bot.do_api_request("getUpdates", api_kwargs=kwargs)
        readable: list[Update] = []
        for item in raw if isinstance(raw, list) else ():
            update_id = item.get("update_id") if isinstance(item, dict) else None
            if not isinstance(update_id, int):
                continue
            try:
                readable.append(Update.de_json(item, self.bot))
            except Exception:
                log.warning("telegram: update %s cannot be read; skipped", update_id, exc_info=True)
                offset = max(offset or 0, update_id + 1)
        return readable, offset

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """The webhook route: check the secret, read the update, queue it and answer at once."""
        expected = self.secret
        if expected is None:
            return web.Response(status=503, text="not ready")
        given = request.headers.get(SECRET_HEADER)
        if not secret_matches(given, expected):
            log.warning("telegram webhook: wrong or missing secret token (from %s)", request.remote)
            return web.Response(status=403, text="forbidden")
        try:
            data = webhook_input.parse_json(await webhook_input.read_body(request))
            webhook_input.check(data, UPDATE_FIELDS, "update")
        except webhook_input.BadInput as exc:
            log.warning("telegram webhook: refused a body (%s)", exc)
            return webhook_input.bad_request(exc)
        update_id = data["update_id"]
        if not self.ready.is_set():
            return web.Response(status=503, text="not ready")
        try:
            update = Update.de_json(data, self.bot)
            work = await self.interpret(update)
        except Exception as exc:  # no traceback: the update is someone's message
            log.warning("telegram webhook: update %s cannot be handled (%s); ignored", update_id, type(exc).__name__)
            return web.Response(status=200)
        if work is None:
            return web.Response(status=200)
        try:
            await self.pipeline.receive(work)
        except Unavailable:
            # Not 200: Telegram delivers the update again once the database is back.
            return web.Response(status=503, text="database unavailable, try again")
        except Exception:
            log.exception("telegram webhook: cannot handle update %s; Telegram will deliver it again", update_id)
            return web.Response(status=500, text="try again")
        if work.incoming is not None:
            self.typing.expect(work.chat_id)
        return web.Response(status=200)

    async def interpret(self, update: Update) -> Work | None:
        """What the pipeline should do with an update; None for updates the bot leaves alone."""
        if update.my_chat_member is not None:
            return self._on_membership(update, update.my_chat_member)
        if update.callback_query is not None:
            return await self._on_callback(update, update.callback_query)
        if update.message is not None:
            return await self._on_message(update, update.message)
        log.debug("telegram: update %s is of a kind the bot does not handle", update.update_id)
        return None

    def _work(
        self,
        update: Update,
        chat_id: int | str,
        *,
        incoming: Incoming | None = None,
        replies: Sequence[Reply] = (),
        apply: Callable[[AsyncSession], Awaitable[None]] | None = None,
        reply_to: int | None = None,
        thread_id: int | None = None,
        user_id: int | str | None = None,
    ) -> Work:
        return Work(
            channel=CHANNEL,
            key=f"{self.bot_key}:{update.update_id}",
            chat_id=str(chat_id),
            render=lambda replies: self.render_calls(replies, reply_to=reply_to, thread_id=thread_id),
            incoming=incoming,
            replies=tuple(replies),
            apply=apply,
            user_id=str(user_id) if user_id is not None else None,
        )

    # ------------------------------------------------------------------ handling

    async def _on_message(self, update: Update, message: Message) -> Work | None:
        chat = message.chat
        if chat.type == chat.CHANNEL:
            return None
        if message.migrate_to_chat_id:
            old, new = chat.id, message.migrate_to_chat_id
            return self._work(update, chat.id, apply=lambda session: self._migrate_in(session, old, new))
        if message.migrate_from_chat_id:
            old, new = message.migrate_from_chat_id, chat.id
            return self._work(update, chat.id, apply=lambda session: self._migrate_in(session, old, new))
        sender = message.from_user
        if sender is None:
            return None
        anonymous_admin = message.sender_chat is not None and message.sender_chat.id == chat.id
        if sender.is_bot and not anonymous_admin:
            return None
        private = chat.type == chat.PRIVATE
        text = message.text or message.caption or ""
        addressed, text = self._addressing(message, text)
        if not private and not addressed:
            return None  # not for us: neither answered nor logged
        thread_id = message.message_thread_id if message.is_topic_message else None
        reply_to = None if private else message.message_id
        if not text:
            if message.effective_attachment is not None:
                return self._work(
                    update,
                    chat.id,
                    replies=[Reply(self.service.catalog.msg("not_text"))],
                    reply_to=reply_to,
                    thread_id=thread_id,
                    user_id=sender.id,
                )
            return None
        is_admin = False
        command = _COMMAND.match(text)
        if command and not private:
            name, arg = command.group(1).lower(), (command.group(3) or "").strip()
            if name == "start" and arg.startswith("h_"):
                # ?startgroup=h_<code>: the person who added the bot links the group, if an admin.
                text, name = f"/thon {arg[2:]}", "thon"
            if name == "thon":
                is_admin = anonymous_admin or await self._is_admin(chat.id, sender.id)
        incoming = Incoming(
            channel=CHANNEL,
            chat_id=str(chat.id),
            chat_type=ChatType.PRIVATE if private else ChatType.GROUP,
            sender_id=str(sender.id),
            sender_name=sender.first_name or "",
            text=text,
            time=message.date or self.service.clock(),
            addressed=addressed,
            message_id=str(message.message_id),
            sender_is_admin=is_admin,
        )
        return self._work(update, chat.id, incoming=incoming, reply_to=reply_to, thread_id=thread_id, user_id=sender.id)

    def _addressing(self, message: Message, text: str) -> tuple[bool, str]:
        """Whether a message is meant for the bot (always in private), and its text without @mention."""
        text = text.strip()
        if message.chat.type == message.chat.PRIVATE:
            return True, text
        name = (self.username or "").lower()
        addressed = False
        command = _COMMAND.match(text)
        if command:
            target = (command.group(2) or "").lower()
            if target and target != name:
                return False, text  # a command for another bot
            addressed = True
        if name and re.search(rf"(?i)(?<![\w@])@{re.escape(name)}\b", text):
            addressed = True
            text = re.sub(rf"(?i)(?<![\w@])@{re.escape(name)}\b", " ", text)
            text = re.sub(r"[ \t]{2,}", " ", text).strip(" \t,:")
            if not text:
                text = "/menu"
        entities = message.entities if message.text else message.caption_entities
        for entity in entities or ():
            if entity.type == MessageEntityType.TEXT_MENTION and entity.user and entity.user.id == self.bot_id:
                addressed = True
        replied = message.reply_to_message
        if (
            replied is not None
            and replied.forum_topic_created is None
            and replied.from_user is not None
            and replied.from_user.id == self.bot_id
        ):
            addressed = True
        if not addressed and self.question_words and has_question_word(text, self.question_words):
            # With privacy mode off every group message arrives: a question word the commune listed
            # makes one a question for the bot; other talk stays among the people of the group.
            addressed = True
        return addressed, text.strip()

    async def _is_admin(self, chat_id: int, user_id: int) -> bool:
        try:
            member = await self._call(lambda: self.bot.get_chat_member(chat_id, user_id))
        except TelegramError as exc:
            log.warning("telegram: getChatMember failed in chat %s: %s", chat_id, self._safe(exc))
            return False
        return member.status in _ADMINS

    async def _answer_callback(self, query_id: str) -> None:
        # One per button press, like a reply: through the replies' client (telegram_send.py).
        answer = await self.replies.post("answerCallbackQuery", {"callback_query_id": query_id})
        if not answer.ok:  # too old, or the network: the press is handled all the same
            log.debug("telegram: answerCallbackQuery failed: %s", self._safe(answer.description))

    async def _on_callback(self, update: Update, query: CallbackQuery) -> Work | None:
        # Stops the button's spinner; the press is handled meanwhile, not after a round trip to Telegram.
        task = asyncio.get_running_loop().create_task(self._answer_callback(query.id))
        self._side_calls.add(task)
        task.add_done_callback(self._side_calls.discard)
        message = query.message
        if message is None or not query.data:
            return None
        chat = message.chat
        if chat.type == chat.CHANNEL:
            return None
        private = chat.type == chat.PRIVATE
        incoming = Incoming(
            channel=CHANNEL,
            chat_id=str(chat.id),
            chat_type=ChatType.PRIVATE if private else ChatType.GROUP,
            sender_id=str(query.from_user.id),
            sender_name=query.from_user.first_name or "",
            text="",
            # A press has no date of its own; the message it is on is older. After an erasure, presses
            # on messages from before it are dropped like the messages themselves.
            time=message.date or self.service.clock(),
            payload=query.data,
            addressed=True,
            message_id=str(message.message_id),
        )
        thread_id = message.message_thread_id if getattr(message, "is_topic_message", False) else None
        return self._work(update, chat.id, incoming=incoming, thread_id=thread_id, user_id=query.from_user.id)

    def _on_membership(self, update: Update, change: ChatMemberUpdated) -> Work | None:
        """The bot was added to or removed from a chat (or blocked, or unblocked, in private)."""
        chat = change.chat
        if chat.type == chat.CHANNEL:
            return None
        member = change.new_chat_member
        if self.bot_id is not None and member.user.id != self.bot_id:
            return None
        present = member.status in _PRESENT or (
            member.status == ChatMemberStatus.RESTRICTED and bool(getattr(member, "is_member", False))
        )
        private = chat.type == chat.PRIVATE
        kind = ChatType.PRIVATE if private else ChatType.GROUP

        async def apply(session: AsyncSession) -> None:
            row = await people.touch_chat(session, CHANNEL, str(chat.id), kind.value, self.service.clock(), title=chat.title)
            row.active = present
            if private:
                await people.set_user_active(session, CHANNEL, str(chat.id), present)
            log.info("telegram: bot %s %s chat %s", "added to" if present else "removed from", chat.type, chat.id)

        return self._work(update, chat.id, apply=apply)

    async def migrate_chat(self, old_id: int | str, new_id: int | str) -> None:
        """A group became a supergroup: move its row (and hamlet) and its conversations to the new id."""
        if str(old_id) == str(new_id):
            return
        async with self.service.db.locked(f"{CHANNEL}:{new_id}") as session:
            await self._migrate_in(session, old_id, new_id)

    async def _migrate_in(self, session: AsyncSession, old_id: int | str, new_id: int | str) -> None:
        """Move a chat's row (and hamlet), conversations and pending replies to its new id, in `session`."""
        old, new = str(old_id), str(new_id)
        if old == new:
            return
        old_chat = await people.get_chat(session, CHANNEL, old)
        if old_chat is not None:
            new_chat = await people.get_chat(session, CHANNEL, new)
            if new_chat is None:
                old_chat.external_id = new
                old_chat.updated_at = self.service.clock()
            else:
                new_chat.hamlet_code = new_chat.hamlet_code or old_chat.hamlet_code
                new_chat.title = new_chat.title or old_chat.title
                old_chat.active = False
            await session.flush()
        try:
            async with session.begin_nested():
                await conversations.rename_chat(session, CHANNEL, old, new)
        except IntegrityError:
            log.warning("telegram: conversations of chat %s could not all move to %s", old, new)
        await deliveries.move_chat(session, CHANNEL, old, new)
        log.info("telegram: group %s became supergroup %s; its hamlet and conversations moved", old, new)

    async def _mark_inactive(self, chat_id: int) -> None:
        try:
            async with self.service.db.transaction() as session:
                await people.set_chat_active(session, CHANNEL, str(chat_id), False)
                if int(chat_id) > 0:
                    await people.set_user_active(session, CHANNEL, str(chat_id), False)
        except Exception:
            log.exception("telegram: cannot mark chat %s inactive", chat_id)

    # ------------------------------------------------------------------ sending

    def keyboard(self, buttons: Sequence[Choice]) -> dict[str, Any] | None:
        """The Bot API's InlineKeyboardMarkup, one button a row; callback data are the core's payloads, never
        the labels. Written as the JSON object the Bot API reads: it is stored in the outbox as such."""
        rows = []
        for choice in buttons:
            link = choice.link
            url = link.url if link else ""
            if link and link.private_start and self.username:
                url = f"https://t.me/{self.username}?start={link.private_start}"
            if url:
                rows.append([{"text": choice.label, "url": url}])
                continue
            if not 1 <= len(choice.payload.encode()) <= MAX_CALLBACK_BYTES:
                log.error("telegram: button payload %r is not 1-64 bytes; button left out", choice.payload[:80])
                continue
            rows.append([{"text": choice.label, "callback_data": choice.payload}])
        return {"inline_keyboard": rows} if rows else None

    def render_calls(
        self, replies: Sequence[Reply], *, reply_to: int | None = None, thread_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The Bot API calls that show `replies`, in order, as stored in the outbox (JSON, no chat id)."""
        hint = self.service.catalog.messages.get("choices_hint", "")
        calls: list[dict[str, Any]] = []
        for reply in replies:
            rendered = render(reply, CAPABILITIES, hint)
            markup = self.keyboard(rendered.buttons)
            if rendered.image:
                calls.append({"m": "sendPhoto", "photo": rendered.image, "thread": thread_id})
            texts = fit_utf16(rendered.texts)
            for index, text in enumerate(texts):
                call: dict[str, Any] = {"m": "sendMessage", "text": text, "thread": thread_id}
                last = index == len(texts) - 1
                if last and markup is not None:
                    call["markup"] = markup
                if reply_to is not None and not any(c["m"] == "sendMessage" for c in calls):
                    call["reply_to"] = reply_to
                if reply_to is not None and last and markup is None and (rendered.numbered or "?" in text):
                    # A question back in a group (numbered choices to type, a clarification): a reply to
                    # the person with ForceReply, so the answer reaches the bot even in privacy mode.
                    call["reply_to"] = reply_to
                    call["force_reply"] = True
                calls.append(call)
        return calls

    async def send_replies(
        self, chat_id: int | str, replies: Sequence[Reply], *, reply_to: int | None = None, thread_id: int | None = None
    ) -> None:
        """Queue replies that answer no update (e.g. an announcement) in the outbox."""
        calls = self.render_calls(replies, reply_to=reply_to, thread_id=thread_id)
        await self.pipeline.enqueue(CHANNEL, str(chat_id), calls)

    async def deliver(self, chat_id: str, call: dict[str, Any]) -> Result:
        """Make one Bot API call of the outbox and say how it ended (the pipeline's sender retries)."""
        await self.ready.wait()
        target = int(chat_id)
        answer = await self.replies.post(*api_call(target, call))
        if answer.ok:
            self.typing.sent(chat_id)
            return Sent()
        if answer.migrate_to_chat_id is not None:
            await self.migrate_chat(target, answer.migrate_to_chat_id)
            return Moved(str(answer.migrate_to_chat_id))
        if answer.retry_after is not None:
            return Retry("flood control", answer.retry_after)
        reason = self._safe(answer.description)
        if answer.status == 403:
            log.info("telegram: chat %s blocked or removed the bot (%s); marked inactive", target, reason)
            await self._mark_inactive(target)
            return Refused(f"forbidden: {reason}", whole_chat=True)
        if answer.status in (401, 404):  # configuration, not the message: keep it until the token is fixed
            return Retry(f"token refused: {reason}")
        if answer.status == 400:
            return Refused(f"bad request: {reason}", whole_chat="chat not found" in reason.lower())
        return Retry(reason)  # 5xx answers, timeouts, the network

    async def _send_typing(self, chat_id: str) -> None:
        await self.replies.post("sendChatAction", {"chat_id": int(chat_id), "action": ChatAction.TYPING.value})

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Make one set-up call (not a reply), waiting out flood control and retrying network errors, boundedly."""
        network = flood = 0
        while True:
            try:
                return await make()
            except RetryAfter as exc:
                flood += 1
                if flood > MAX_FLOOD_WAITS:
                    raise
                wait = retry_seconds(exc)
                log.warning("telegram: flood control; waiting %.1f s as asked", wait)
                await self.sleep(wait)
            except BadRequest:
                raise
            except NetworkError as exc:  # includes TimedOut and 5xx answers
                if network >= len(self.backoff):
                    raise
                delay = self.backoff[network]
                network += 1
                log.warning("telegram: network error (%s); retry %d in %.1f s", self._safe(exc), network, delay)
                await self.sleep(delay)


TELEGRAM = web.AppKey("telegram", TelegramChannel)


def setup(app: web.Application) -> str | None:
    """Wire the Telegram channel into the application; return why it is off, or None when on."""
    settings = app[SETTINGS]
    token = settings.telegram_token
    if not token:
        return say("channel_not_set", names="CCCD_TELEGRAM_TOKEN")
    if ":" not in token or any(ch.isspace() for ch in token):
        return say("telegram_token_malformed")
    secret = settings.telegram_webhook_secret
    if secret is not None and not SECRET_RE.match(secret):
        return say("telegram_secret_malformed")
    if settings.telegram_webhook_url:
        parts = urlsplit(settings.telegram_webhook_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return say("telegram_webhook_url_malformed")
    # Opt in to PTB's timedelta periods (RetryAfter.retry_after); without it every flood wait warns.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    # httpx logs every request URL at INFO, and PTB logs its base URL at DEBUG: both contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("telegram").setLevel(max(logging.getLogger("telegram").getEffectiveLevel(), logging.INFO))

    from bot.server import ROLE

    channel = TelegramChannel(app[SERVICE], settings, pipeline=app[PIPELINE], receive=app[ROLE] != "sender")
    app[TELEGRAM] = channel
    if channel.mode == "webhook" and channel.receive:
        app.router.add_post(webhook_path(channel.webhook_url or ""), channel.handle_webhook)
    run_with_server(app, CHANNEL, channel)
    return None
