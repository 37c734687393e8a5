"""A fake Telegram Bot API server on aiohttp, speaking the real HTTP API.

`POST`/`GET /bot<token>/<method>` with JSON, form or query parameters, answered with
`{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description", "parameters"}` like
api.telegram.org. Every call is recorded. Failures are injected on demand: 429 with retry_after,
403 Forbidden (a blocked user), 400 with migrate_to_chat_id (a group that became a supergroup), 5xx,
for a number of calls or for a while, optionally after hanging (a call the client gives up on).
It enforces the limits a real bot runs into (4096 characters, callback data of 1-64 bytes,
well-formed HTML when parse_mode is HTML) so that tests catch what Telegram would refuse.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

# Parameters whose values are strings even when they look like JSON ("123", "true").
STRING_PARAMS = {
    "text",
    "caption",
    "callback_query_id",
    "url",
    "secret_token",
    "description",
    "short_description",
    "language_code",
    "parse_mode",
    "photo",
    "ip_address",
}


@dataclass(frozen=True)
class Upload:
    """A file sent in a multipart request (sendPhoto with the photo's bytes)."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    http_method: str
    content_type: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    methods: tuple[str, ...]
    status: int
    description: str
    times: int | None = 1  # None: every time
    chat_id: int | None = None
    parameters: dict[str, Any] | None = None
    seconds: float | None = None  # how long the failure lasts from the first call it meets
    hang: float = 0.0
    until: float | None = None  # time.monotonic() after which it is over (set at that first call)


class FakeTelegramAPI:
    """The Bot API of one bot, in memory."""

    def __init__(
        self,
        token: str = "123456:TEST-token_abc",
        *,
        username: str = "cccd_test_bot",
        first_name: str = "Trợ lý CCCD",
        can_read_all_group_messages: bool = True,
    ):
        self.token = token
        # BotFather's /setprivacy: False is privacy mode on (Telegram's default for a new bot). True here,
        # as README.md has the installer set it; with False, group updates are filtered (`reaches_bot`).
        self.can_read_all_group_messages = can_read_all_group_messages
        self.bot_id = int(token.split(":", 1)[0])
        self.username = username
        self.bot_user = {"id": self.bot_id, "is_bot": True, "first_name": first_name, "username": username}
        self.calls: list[Call] = []
        self.failures: list[Failure] = []
        self.members: dict[tuple[int, int], str] = {}
        self.chats: dict[int, dict[str, Any]] = {}
        self.commands: dict[str, list[dict[str, str]]] = {}
        self.webhook: dict[str, Any] = {}
        self.pending: list[dict[str, Any]] = []
        self.confirmed_offset = 0
        self._next_update_id = itertools.count(10_000)
        self._message_ids: dict[int, itertools.count] = {}
        self._changed = asyncio.Condition()
        self._closing = False
        self.server: TestServer | None = None
        self._chaos: Chaos | None = None
        self.blocked: set[int] = set()
        self.files: dict[str, Upload] = {}  # file_id -> the photo uploaded under it

    # ---------------------------------------------------------------- server

    async def start(self) -> FakeTelegramAPI:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/bot"

    async def close(self) -> None:
        self._closing = True
        await self._notify()
        if self.server is not None:
            await self.server.close()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ---------------------------------------------------------------- what tests set up

    def fail(
        self,
        method: str | tuple[str, ...],
        status: int,
        *,
        times: int | None = 1,
        chat_id: int | None = None,
        retry_after: int | None = None,
        migrate_to: int | None = None,
        description: str | None = None,
        seconds: float | None = None,
        hang: float = 0.0,
    ) -> None:
        """Answer the next `times` calls of `method` (for `chat_id`, if given) with an error.

        With `seconds`, every such call for that long from the first one (`times` is then ignored). With `hang`,
        the answer comes only after that many seconds (or when the fake closes): a client with a shorter
        read timeout gives up first, as with a Bot API that stopped answering.
        """
        parameters: dict[str, Any] = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to is not None:
            parameters["migrate_to_chat_id"] = migrate_to
        default = {
            400: "Bad Request",
            403: "Forbidden: bot was blocked by the user",
            429: f"Too Many Requests: retry after {retry_after}",
            500: "Internal Server Error",
            502: "Bad Gateway",
        }.get(status, "Error")
        methods = (method,) if isinstance(method, str) else tuple(method)
        times = None if seconds is not None else times
        self.failures.append(Failure(methods, status, description or default, times, chat_id, parameters or None, seconds, hang))

    def chaos(
        self,
        *,
        rate_429: float = 0.0,
        rate_5xx: float = 0.0,
        rate_timeout: float = 0.0,
        rate_403: float = 0.0,
        retry_after: int = 1,
        hang: float = 30.0,
        seed: int = 0,
        methods: tuple[str, ...] = ("sendMessage",),
        chats: set[int] | None = None,
    ) -> None:
        """Random faults on a share of the calls: 429 with retry_after, 500, a hang past the client's
        timeout (the message is not delivered), 403 (the chat blocks the bot, for good). With `chats`,
        only calls to those chats are touched."""
        import random

        self._chaos = Chaos(random.Random(seed), rate_429, rate_5xx, rate_timeout, rate_403, retry_after, hang, methods, chats)

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: every send to them is refused with 403."""
        self.fail(("sendMessage", "sendPhoto"), 403, times=None, chat_id=chat_id, description="Forbidden: bot was blocked by the user")

    def upgrade_to_supergroup(self, old_id: int, new_id: int) -> None:
        """Sends to the old group id are refused with migrate_to_chat_id, as Telegram does."""
        self.fail(
            ("sendMessage", "sendPhoto"),
            400,
            times=None,
            chat_id=old_id,
            migrate_to=new_id,
            description="Bad Request: group chat was upgraded to a supergroup chat",
        )
        self.chats[new_id] = {"id": new_id, "type": "supergroup", "title": self.chats.get(old_id, {}).get("title", "Nhóm")}

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        """The status getChatMember reports: creator, administrator, member, restricted, left, kicked."""
        self.members[(chat_id, user_id)] = status

    def add_chat(self, chat: dict[str, Any]) -> None:
        self.chats[chat["id"]] = dict(chat)

    def reaches_bot(self, update: dict[str, Any]) -> bool:
        """Whether Telegram gives `update` to the bot at all.

        In privacy mode (getMe's can_read_all_group_messages false, and the bot not a group admin) a group
        message reaches the bot only when it is a command meant for it (`/cmd@this_bot`), a general command
        (`/cmd`; Telegram: when this bot spoke last in the group — here the only bot), or a reply to one of
        the bot's messages; service messages reach it too. A plain "@this_bot question" does NOT
        (core.telegram.org/bots/features#privacy-mode), whatever BotFather's description says.
        """
        message = update.get("message")
        if self.can_read_all_group_messages or not isinstance(message, dict):
            return True
        chat = message.get("chat") or {}
        if chat.get("type") not in ("group", "supergroup"):
            return True
        if self.members.get((chat.get("id"), self.bot_id)) in ("administrator", "creator"):
            return True
        if "text" not in message and "caption" not in message:
            return True  # service messages: members, migrations, titles
        replied = message.get("reply_to_message") or {}
        if (replied.get("from") or {}).get("id") == self.bot_id:
            return True
        command = re.match(r"/[A-Za-z0-9_]{1,32}(?:@([A-Za-z0-9_]+))?(?=\s|$)", message.get("text") or "")
        if command is None:
            return False
        return command.group(1) is None or command.group(1).lower() == self.username.lower()

    async def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (an update_id is given if missing)."""
        update = dict(update)
        update.setdefault("update_id", self.new_update_id())
        self._learn_chats(update)
        self.pending.append(update)
        await self._notify()
        return update

    def new_update_id(self) -> int:
        return next(self._next_update_id)

    def _learn_chats(self, update: dict[str, Any]) -> None:
        for key in ("message", "my_chat_member"):
            chat = (update.get(key) or {}).get("chat")
            if isinstance(chat, dict) and "id" in chat:
                self.chats.setdefault(chat["id"], dict(chat))
        query = update.get("callback_query") or {}
        chat = (query.get("message") or {}).get("chat")
        if isinstance(chat, dict) and "id" in chat:
            self.chats.setdefault(chat["id"], dict(chat))

    # ---------------------------------------------------------------- what tests read

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """The messages sendMessage accepted (in order), each with its text and buttons."""
        out = []
        for call in self.calls_of("sendMessage"):
            if getattr(call, "refused", False):
                continue
            if chat_id is not None and call.params.get("chat_id") != chat_id:
                continue
            out.append(
                {
                    "chat_id": call.params.get("chat_id"),
                    "text": call.params.get("text"),
                    "buttons": buttons_of(call.params.get("reply_markup")),
                    "params": call.params,
                    "message": getattr(call, "result", None),
                }
            )
        return out

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [m["text"] for m in self.sent(chat_id)]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until `method` was called successfully at least `count` times."""

        def done() -> bool:
            return len([c for c in self.calls_of(method) if not getattr(c, "refused", False)]) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(done), timeout)
        return self.calls_of(method)

    async def wait_confirmed(self, update_id: int, timeout: float = 5.0) -> None:
        """Wait until the bot asked getUpdates with an offset past `update_id` (it took that update)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.confirmed_offset > update_id), timeout)

    # ---------------------------------------------------------------- the API

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: v for k, v in request.query.items()}
        if request.method == "POST" and request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, str):
                        params[key] = value
                    else:  # a file part: what Telegram would store
                        params[key] = Upload(value.filename or "file", value.content_type or "", value.file.read())
        return {key: self._decode(key, value) for key, value in params.items()}

    @staticmethod
    def _decode(key: str, value: Any) -> Any:
        if not isinstance(value, str) or key in STRING_PARAMS:
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value

    async def _dispatch(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        try:
            params = await self._params(request)
        except ValueError:
            return self._error(400, "Bad Request: can't parse request body")
        call = Call(method, params, request.method, request.content_type)
        self.calls.append(call)
        try:
            chaos = self._chaos
            if chaos is not None and method in chaos.methods and (chaos.chats is None or params.get("chat_id") in chaos.chats):
                fault = chaos.roll()
                if fault == "timeout":
                    call.refused = True  # type: ignore[attr-defined]
                    call.fault = fault  # type: ignore[attr-defined]
                    await self._hang(chaos.hang)
                    return self._error(504, "Gateway Timeout")
                if fault == 403:
                    self.blocked.add(params.get("chat_id"))
                if fault in (429, 500):
                    call.refused = True  # type: ignore[attr-defined]
                    call.fault = fault  # type: ignore[attr-defined]
                    if fault == 429:
                        return self._error(429, f"Too Many Requests: retry after {chaos.retry_after}", {"retry_after": chaos.retry_after})
                    return self._error(500, "Internal Server Error")
            if method in ("sendMessage", "sendPhoto") and params.get("chat_id") in self.blocked:
                call.refused = True  # type: ignore[attr-defined]
                call.fault = 403  # type: ignore[attr-defined]
                return self._error(403, "Forbidden: bot was blocked by the user")
            failure = self._failure_for(method, params)
            if failure is not None:
                call.refused = True  # type: ignore[attr-defined]
                call.fault = failure.status  # type: ignore[attr-defined]
                if failure.hang:
                    call.fault = "timeout"  # type: ignore[attr-defined]
                    await self._hang(failure.hang)
                return self._error(failure.status, failure.description, failure.parameters)
            handler = getattr(self, f"api_{method}", None)
            if handler is None:
                call.refused = True  # type: ignore[attr-defined]
                return self._error(404, "Not Found: method not found")
            try:
                result = await handler(params)
            except ApiError as exc:
                call.refused = True  # type: ignore[attr-defined]
                return self._error(exc.status, exc.description)
            call.result = result  # type: ignore[attr-defined]
            return web.json_response({"ok": True, "result": result})
        finally:
            await self._notify()

    def _failure_for(self, method: str, params: dict[str, Any]) -> Failure | None:
        for failure in self.failures:
            if method not in failure.methods:
                continue
            if failure.chat_id is not None and params.get("chat_id") != failure.chat_id:
                continue
            if failure.seconds is not None:
                if failure.until is None:
                    failure.until = time.monotonic() + failure.seconds
                elif time.monotonic() > failure.until:
                    continue
            if failure.times is not None:
                if failure.times <= 0:
                    continue
                failure.times -= 1
            return failure
        return None

    async def _hang(self, seconds: float) -> None:
        """Answer nothing for `seconds`, or until the fake closes."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._closing), seconds)
            except asyncio.TimeoutError:
                pass

    @staticmethod
    def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        return self.chats.get(chat_id) or {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": "Nhóm"}

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        chat = {k: v for k, v in self._chat(chat_id).items() if k in ("id", "type", "title", "first_name", "username")}
        message = {"message_id": next(counter), "date": int(time.time()), "chat": chat, "from": self.bot_user}
        message.update({k: v for k, v in content.items() if v is not None})
        return message

    async def api_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": self.can_read_all_group_messages,
            "supports_inline_queries": False,
        }

    async def api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook.get("url"):
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if offset:
            self.confirmed_offset = max(self.confirmed_offset, offset)
            self.pending = [u for u in self.pending if u["update_id"] >= offset]
        await self._notify()
        deadline = time.monotonic() + min(timeout, 10)
        async with self._changed:
            while not self.pending and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    break
        return [u for u in self.pending if u["update_id"] >= offset][:limit]

    async def api_setWebhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if url and not url.startswith(("https://", "http://")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook = {"url": url, "secret_token": secret, "allowed_updates": params.get("allowed_updates")}
        return True

    async def api_deleteWebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = {}
        if params.get("drop_pending_updates"):
            self.pending.clear()
        return True

    async def api_getWebhookInfo(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self.pending),
            "allowed_updates": self.webhook.get("allowed_updates") or [],
        }

    async def api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        self._chat(chat_id)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        check_parse_mode(text, params.get("parse_mode"))
        markup = params.get("reply_markup")
        check_markup(markup)
        # The sent Message carries only an inline keyboard; ForceReply is not echoed back.
        inline = markup if isinstance(markup, dict) and "inline_keyboard" in markup else None
        return self._message(chat_id, text=text, reply_markup=inline)

    async def api_sendPhoto(self, params: dict[str, Any]) -> dict[str, Any]:
        """A photo by upload (multipart), by a file_id this server gave, or by an HTTP URL (not fetched here)."""
        chat_id = params.get("chat_id")
        self._chat(chat_id)
        photo = params.get("photo")
        caption = params.get("caption")
        if caption is not None and len(str(caption).encode("utf-16-le")) // 2 > 1024:
            raise ApiError(400, "Bad Request: message caption is too long")
        if isinstance(photo, Upload):
            if len(photo.data) > 10 * 1024 * 1024:
                raise ApiError(400, "Bad Request: file is too big")
            if not (photo.data.startswith(b"\xff\xd8\xff") or photo.data.startswith(b"\x89PNG\r\n\x1a\n")):
                raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
            file_id = f"photo-{len(self.files) + 1}"
            self.files[file_id] = photo
        elif isinstance(photo, str) and (photo in self.files or photo.startswith(("http://", "https://"))):
            file_id = photo
        else:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        sizes = [{"file_id": file_id, "file_unique_id": f"u-{file_id}", "width": 100, "height": 100}]
        return self._message(chat_id, photo=sizes, caption=caption)

    def photos(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """The photos sendPhoto accepted (in order): the chat, the caption, the bytes (uploaded or by file_id)
        and whether this call uploaded them."""
        out = []
        for call in self.calls_of("sendPhoto"):
            if getattr(call, "refused", False) or (chat_id is not None and call.params.get("chat_id") != chat_id):
                continue
            photo = call.params.get("photo")
            uploaded = isinstance(photo, Upload)
            data = photo.data if uploaded else getattr(self.files.get(photo), "data", None)
            out.append({"chat_id": call.params.get("chat_id"), "caption": call.params.get("caption"), "data": data, "uploaded": uploaded})
        return out

    async def api_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        check_markup(params.get("reply_markup"))
        message = self._message(chat_id, text=text, reply_markup=params.get("reply_markup"))
        message["message_id"] = params.get("message_id")
        return message

    async def api_editMessageReplyMarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        check_markup(params.get("reply_markup"))
        message = self._message(params.get("chat_id"), reply_markup=params.get("reply_markup"))
        message["message_id"] = params.get("message_id")
        return message

    async def api_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        if not params.get("callback_query_id"):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        return True

    async def api_sendChatAction(self, params: dict[str, Any]) -> bool:
        self._chat(params.get("chat_id"))
        if params.get("action") not in ("typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice", "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note"):
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def api_getChatMember(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, user_id = params.get("chat_id"), params.get("user_id")
        status = self.members.get((chat_id, user_id), "member")
        user = {"id": user_id, "is_bot": False, "first_name": f"Người {user_id}"}
        return chat_member(status, user)

    async def api_getChat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        return {**chat, "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": {
            "unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False, "premium_subscription": False}}

    async def api_setMyCommands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands") or []
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command.get("command", "")):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise ApiError(400, "Bad Request: command description is invalid")
        self.commands[scope_key(params.get("scope"))] = commands
        return True

    async def api_deleteMyCommands(self, params: dict[str, Any]) -> bool:
        self.commands.pop(scope_key(params.get("scope")), None)
        return True

    async def api_getMyCommands(self, params: dict[str, Any]) -> list[dict[str, str]]:
        return self.commands.get(scope_key(params.get("scope")), [])

    async def api_close(self, params: dict[str, Any]) -> bool:
        return True

    async def api_logOut(self, params: dict[str, Any]) -> bool:
        return True


@dataclass
class Chaos:
    rng: Any
    rate_429: float
    rate_5xx: float
    rate_timeout: float
    rate_403: float
    retry_after: int
    hang: float
    methods: tuple[str, ...]
    chats: set[int] | None = None

    def roll(self) -> int | str | None:
        x = self.rng.random()
        for fault, rate in ((429, self.rate_429), (500, self.rate_5xx), ("timeout", self.rate_timeout), (403, self.rate_403)):
            if x < rate:
                return fault
            x -= rate
        return None


class ApiError(Exception):
    def __init__(self, status: int, description: str):
        super().__init__(description)
        self.status = status
        self.description = description


def scope_key(scope: Any) -> str:
    if isinstance(scope, dict):
        return scope.get("type", "default")
    return "default"


def buttons_of(markup: Any) -> list[tuple[str, str]]:
    """Inline keyboard as (label, callback data or url) pairs, row after row."""
    if not isinstance(markup, dict):
        return []
    out = []
    for row in markup.get("inline_keyboard") or []:
        for button in row:
            out.append((button.get("text"), button.get("callback_data") or button.get("url")))
    return out


def check_markup(markup: Any) -> None:
    if markup is None:
        return
    if isinstance(markup, dict) and "force_reply" in markup:
        if markup["force_reply"] is not True:
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        return
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup["inline_keyboard"]:
        for button in row:
            if not button.get("text"):
                raise ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            if data is None and not button.get("url"):
                raise ApiError(400, "Bad Request: inline keyboard button must have one of the optional fields")


_TAG = re.compile(r"<(/?)([a-zA-Z-]+)[^>]*>")
_HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span", "tg-spoiler", "blockquote", "tg-emoji"}


def check_parse_mode(text: str, parse_mode: str | None) -> None:
    """Refuse what Telegram refuses: unknown or unbalanced HTML tags, stray '<' or '&'."""
    if not parse_mode:
        return
    if parse_mode.upper() != "HTML":
        if parse_mode not in ("Markdown", "MarkdownV2"):
            raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode}")
        return
    stack = []
    for match in _TAG.finditer(text):
        closing, name = match.group(1), match.group(2).lower()
        if name not in _HTML_TAGS:
            raise ApiError(400, f"Bad Request: can't parse entities: unsupported start tag \"{name}\"")
        if closing:
            if not stack or stack.pop() != name:
                raise ApiError(400, f"Bad Request: can't parse entities: unexpected end tag \"{name}\"")
        else:
            stack.append(name)
    if stack:
        raise ApiError(400, "Bad Request: can't parse entities: unclosed start tag")
    stripped = _TAG.sub("", text)
    if "<" in stripped or re.search(r"&(?!(lt|gt|amp|quot|#\d+);)", stripped):
        raise ApiError(400, "Bad Request: can't parse entities: unsupported character")


def chat_member(status: str, user: dict[str, Any]) -> dict[str, Any]:
    """A ChatMember object of the given status, with every field the Bot API sends."""
    if status == "creator":
        return {"status": status, "user": user, "is_anonymous": False}
    if status == "administrator":
        rights = (
            "can_be_edited can_manage_chat can_delete_messages can_manage_video_chats can_restrict_members "
            "can_promote_members can_change_info can_invite_users can_post_stories can_edit_stories "
            "can_delete_stories can_pin_messages can_manage_topics"
        ).split()
        return {"status": status, "user": user, "is_anonymous": False, **{r: r != "can_be_edited" for r in rights}}
    if status == "restricted":
        rights = (
            "is_member can_send_messages can_send_audios can_send_documents can_send_photos can_send_videos "
            "can_send_video_notes can_send_voice_notes can_send_polls can_send_other_messages "
            "can_add_web_page_previews can_change_info can_invite_users can_pin_messages can_manage_topics"
        ).split()
        return {"status": status, "user": user, "until_date": 0, **{r: True for r in rights}}
    if status == "kicked":
        return {"status": status, "user": user, "until_date": 0}
    return {"status": status, "user": user}
