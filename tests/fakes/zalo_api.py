"""Fake Zalo servers for offline tests: the Zalo Bot platform and the Official Account API v3 (with OAuth).

Both run on aiohttp on 127.0.0.1, speak the HTTP shapes the channels use, record every call, and can be
told to fail the next calls with a given error. Tests assert on what these servers received: that is what
a person would have seen.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    """One request the fake received, and what it answered."""

    method: str  # the Bot API method, or the HTTP path on the OA fake
    body: dict[str, Any]
    status: int = 200
    answer: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Failure:
    status: int
    code: int
    description: str


class _Server:
    def __init__(self) -> None:
        self.app = web.Application()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.calls: list[Call] = []
        self._failures: dict[str, deque[Failure]] = defaultdict(deque)
        self._changed = asyncio.Condition()

    async def start(self, port: int = 0) -> str:
        """Listen on `port` (any free one by default; the same one again after `close`: Zalo is back)."""
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        """Stop listening: calls to the fake are refused, as when Zalo cannot be reached."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail(self, name: str, code: int, description: str = "", *, status: int = 200, times: int = 1) -> None:
        """Answer the next `times` calls of `name` (a method or path) with this error."""
        for _ in range(times):
            self._failures[name].append(Failure(status, code, description))

    def _take_failure(self, name: str) -> Failure | None:
        queue = self._failures.get(name)
        return queue.popleft() if queue else None

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()

    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.method == name]

    async def wait_until(self, predicate, timeout: float = 5.0) -> None:
        """Wait until predicate() is true (re-checked after every call), or fail the test."""

        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        try:
            await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out; calls so far: {[(c.method, c.body) for c in self.calls]}") from None


# -- Zalo Bot platform ------------------------------------------------------------------------------


class FakeZaloBot(_Server):
    """`POST /bot<TOKEN>/<method>` with the envelope `{ok, result, description, error_code}`.

    As the platform does: getMe gives the account handle (`bot.XXXX`), not the display name people see
    and type after "@"; setWebhook probes the URL at once (when `probe_webhook` is on) and reports the
    outcome in a `verification` object; webhook deliveries are the bare `{"event_name", "message"}`
    object (see `deliver_webhook`).
    """

    def __init__(
        self,
        token: str = "1234567890:test-secret",
        *,
        can_join_groups: bool = True,
        account_name: str = "bot.x7Kc2QmA",
        display_name: str = "CCCD Bot",
        poll_wait: float = 0.2,
        probe_webhook: bool = False,
        fetch_photos: bool = False,
    ):
        super().__init__()
        # The platform downloads a sendPhoto's `photo` URL to show it; with `fetch_photos` this fake does too,
        # keeps the bytes (`fetched`), and refuses the message when the address does not give an image.
        self.fetch_photos = fetch_photos
        self.fetched: dict[str, bytes] = {}
        self.token = token
        self.can_join_groups = can_join_groups
        self.account_name = account_name
        self.display_name = display_name  # shown in Zalo; never in getMe
        self.probe_webhook = probe_webhook
        self.probes: list[int] = []  # HTTP statuses our webhook answered to the probes
        self.webhook_target: str | None = None  # where deliveries go when the registered URL is not reachable here
        self.poll_wait = poll_wait  # the longest a getUpdates waits here, whatever timeout it asks for
        self.updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.webhook: dict[str, str] | None = None
        self._ids = itertools.count(1)
        self.app.router.add_post("/bot{token}/{method}", self._handle)

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    def push(self, update: dict[str, Any]) -> None:
        """Queue an update (the `result` of one getUpdates)."""
        self.updates.put_nowait(update)

    def sent(self, chat_id: str | None = None) -> list[str]:
        """Texts the bot sent successfully, optionally to one chat."""
        return [
            c.body["text"]
            for c in self.calls
            if c.method == "sendMessage" and c.answer.get("ok") and (chat_id is None or str(c.body.get("chat_id")) == str(chat_id))
        ]

    async def wait_sent(self, count: int, chat_id: str | None = None, timeout: float = 5.0) -> list[str]:
        await self.wait_until(lambda: len(self.sent(chat_id)) >= count, timeout)
        return self.sent(chat_id)

    def photos(self, chat_id: str | None = None) -> list[dict[str, Any]]:
        """Photos the bot sent successfully: {"chat_id", "photo" (its address), "caption"}."""
        return [
            {"chat_id": str(c.body.get("chat_id")), "photo": c.body.get("photo"), "caption": c.body.get("caption")}
            for c in self.calls
            if c.method == "sendPhoto" and c.answer.get("ok") and (chat_id is None or str(c.body.get("chat_id")) == str(chat_id))
        ]

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            body = await request.json() if await request.read() else {}
        except ValueError:
            body = {}
        status, answer = await self._answer(request.match_info["token"], method, body if isinstance(body, dict) else {})
        await self._record(Call(method, body, status, answer, dict(request.headers)))
        return web.json_response(answer, status=status)

    async def _answer(self, token: str, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if token != self.token:
            return 200, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        failure = self._take_failure(method)
        if failure is not None:
            return failure.status, {"ok": False, "error_code": failure.code, "description": failure.description}
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": "bot-1", "account_name": self.account_name, "account_type": "BASIC", "can_join_groups": self.can_join_groups}}
        if method == "getUpdates":
            if self.webhook is not None:
                return 200, {"ok": False, "error_code": 400, "description": "webhook is set; call deleteWebhook first"}
            wait = min(float(body.get("timeout") or 0), self.poll_wait)
            try:
                update = await asyncio.wait_for(self.updates.get(), wait) if wait > 0 else self.updates.get_nowait()
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                return 200, {"ok": False, "error_code": 408, "description": "Request timeout"}
            return 200, {"ok": True, "result": update}
        if method == "setWebhook":
            secret = str(body.get("secret_token") or "")
            if not body.get("url") or not 8 <= len(secret) <= 256:
                return 200, {"ok": False, "error_code": 400, "description": "bad url or secret_token"}
            self.webhook = {"url": body["url"], "secret_token": secret}
            result: dict[str, Any] = {"url": body["url"], "updated_at": int(time.time() * 1000)}
            if self.probe_webhook:
                status = await self._probe(body["url"], secret)
                self.probes.append(status)
                ok = 200 <= status < 300
                result["verification"] = {"status": "success" if ok else "failed", "http_code": status}
            return 200, {"ok": True, "result": result}
        if method == "deleteWebhook":
            self.webhook = None
            return 200, {"ok": True, "result": {"url": "", "updated_at": int(time.time() * 1000)}}
        if method == "getWebhookInfo":
            return 200, {"ok": True, "result": {"url": (self.webhook or {}).get("url", "")}}
        if method == "sendMessage":
            text = body.get("text")
            if not body.get("chat_id") or not isinstance(text, str) or not 1 <= len(text) <= 2000:
                return 200, {"ok": False, "error_code": 400, "description": "text must be 1 to 2000 characters"}
            return 200, {"ok": True, "result": {"message_id": f"out-{next(self._ids)}", "date": int(time.time() * 1000)}}
        if method == "sendChatAction":
            if not body.get("chat_id") or body.get("action") not in ("typing", "upload_photo"):
                return 200, {"ok": False, "error_code": 400, "description": "bad chat_id or action"}
            return 200, {"ok": True, "result": True}
        if method == "sendPhoto":
            # The platform takes the photo's address (it fetches it) and an optional caption of 1-2000 characters.
            photo, caption = body.get("photo"), body.get("caption")
            if not body.get("chat_id") or not isinstance(photo, str) or not photo.startswith(("http://", "https://")):
                return 200, {"ok": False, "error_code": 400, "description": "photo must be a URL"}
            if caption is not None and (not isinstance(caption, str) or not 1 <= len(caption) <= 2000):
                return 200, {"ok": False, "error_code": 400, "description": "caption must be 1 to 2000 characters"}
            if self.fetch_photos and not await self._fetch(photo):
                return 200, {"ok": False, "error_code": 400, "description": "photo cannot be downloaded"}
            return 200, {"ok": True, "result": {"message_id": f"out-{next(self._ids)}", "date": int(time.time() * 1000)}}
        return 200, {"ok": False, "error_code": 404, "description": "Not Found"}


    async def _fetch(self, url: str) -> bool:
        import aiohttp

        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    if resp.status != 200 or resp.content_type not in ("image/jpeg", "image/png"):
                        return False
                    self.fetched[url] = await resp.read()
                    return True
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def _probe(self, url: str, secret: str) -> int:
        """What setWebhook does before answering: POST the URL with the secret header; 0 when unreachable."""
        import aiohttp

        probe = {"event_name": "webhook.verification", "message": None}  # our stand-in: no update to handle
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(url, json=probe, headers={"X-Bot-Api-Secret-Token": secret}, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                    return resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return 0

    async def deliver_webhook(self, update: dict[str, Any], *, wrapped: bool = False, secret: str | None = None) -> int:
        """POST an update to the registered webhook as the platform does (bare; `wrapped` as in the docs'
        sample); return the HTTP status our server answered."""
        import aiohttp

        assert self.webhook is not None, "no webhook registered"
        body = {"ok": True, "result": update} if wrapped else update
        headers = {"X-Bot-Api-Secret-Token": self.webhook["secret_token"] if secret is None else secret}
        async with aiohttp.ClientSession() as http:
            async with http.post(self.webhook_target or self.webhook["url"], json=body, headers=headers) as resp:
                return resp.status


_message_ids = itertools.count(1)


def bot_update(
    text: str | None,
    *,
    chat_id: str = "user-1",
    user_id: str | None = None,
    name: str = "Bà Lan",
    group: bool = False,
    event: str = "message.text.received",
    message_id: str | None = None,
    caption: str | None = None,
) -> dict[str, Any]:
    """One Zalo Bot update: a getUpdates answer's `result`, or a whole (bare) webhook delivery."""
    message: dict[str, Any] = {
        "from": {"id": user_id or chat_id, "display_name": name},
        "chat": {"id": chat_id, "chat_type": "GROUP" if group else "PRIVATE"},
        "message_id": message_id or f"m{next(_message_ids)}",
        "date": int(time.time() * 1000),
    }
    if text is not None:
        message["text"] = text
    if event == "message.image.received":
        message["photo_url"] = "https://photo-stal.zadn.vn/fake/photo.jpg"
    elif event == "message.sticker.received":
        message["sticker"] = "fake-sticker-1"
        message["url"] = "https://zalo-api.zadn.vn/api/emoticon/sticker/webpc?eid=1"
    elif event == "message.voice.received":
        message["voice_url"] = "https://voice-stal.zadn.vn/fake/voice.aac"
    if caption is not None:
        message["caption"] = caption
    return {"event_name": event, "message": message}


# -- Zalo Official Account API v3 and OAuth v4 ------------------------------------------------------


class FakeZaloOA(_Server):
    """The OA API (`/v3.0/oa/message/cs`, `/v3.0/oa/group/message`, `/v2.0/oa/getoa`) and OAuth
    (`/v4/oa/access_token`), on one server: point both base URLs at `url`."""

    def __init__(self, *, app_id: str = "app-1", app_secret: str = "app-secret", oa_id: str = "oa-1", oa_name: str = "Công an xã", refresh_delay: float = 0.0):
        super().__init__()
        self.app_id = app_id
        self.app_secret = app_secret
        self.oa_id = oa_id
        self.oa_name = oa_name
        self.refresh_delay = refresh_delay
        self.access_tokens: dict[str, str] = {}  # token -> "valid" | "expired"
        self.refresh_tokens: set[str] = set()  # unused refresh tokens
        self.spent_refresh_tokens: set[str] = set()
        self.codes: dict[str, str | None] = {}  # authorization code -> PKCE challenge
        self.closed_windows: dict[str, int] = {}  # user id -> -230 / -213 / any "unreachable" code
        self.inactive_groups: dict[str, int] = {}  # group id -> -237 (package expired) / -403 (OA not in it)
        self._serial = itertools.count(1)
        self.app.router.add_post("/v3.0/oa/message/cs", self._send)
        self.app.router.add_post("/v3.0/oa/group/message", self._send)
        self.app.router.add_get("/v2.0/oa/getoa", self._getoa)
        self.app.router.add_post("/v4/oa/access_token", self._token)

    # set-up helpers

    def issue_pair(self) -> tuple[str, str]:
        n = next(self._serial)
        access, refresh = f"access-{n}", f"refresh-{n}"
        self.access_tokens[access] = "valid"
        self.refresh_tokens.add(refresh)
        return access, refresh

    def expire(self, access_token: str) -> None:
        self.access_tokens[access_token] = "expired"

    def grant_code(self, code: str, challenge: str | None = None) -> None:
        """What the consent page does: a code the app may exchange (with the matching PKCE verifier)."""
        self.codes[code] = challenge

    def close_window(self, user_id: str, code: int = -230) -> None:
        self.closed_windows[user_id] = code

    def disable_group(self, group_id: str, code: int = -237) -> None:
        self.inactive_groups[group_id] = code

    # what the fake received

    def refresh_calls(self) -> list[Call]:
        return [c for c in self.calls_to("/v4/oa/access_token") if c.body.get("grant_type") == "refresh_token"]

    def delivered(self, to: str | None = None) -> list[dict[str, Any]]:
        """Messages accepted (error 0): {"to", "group", "text", "buttons"}."""
        out = []
        for c in self.calls:
            if c.method not in ("/v3.0/oa/message/cs", "/v3.0/oa/group/message") or c.answer.get("error") != 0:
                continue
            recipient = c.body.get("recipient") or {}
            target = recipient.get("user_id") or recipient.get("group_id")
            if to is not None and target != to:
                continue
            message = c.body.get("message") or {}
            attachment = message.get("attachment") or {}
            buttons = (attachment.get("payload") or {}).get("buttons") or []
            elements = (attachment.get("payload") or {}).get("elements") or []
            image = elements[0].get("url") if elements else None
            out.append({"to": target, "group": "group_id" in recipient, "text": message.get("text"), "buttons": buttons, "image": image})
        return out

    def texts(self, to: str | None = None) -> list[str]:
        return [m["text"] for m in self.delivered(to) if m["text"] is not None]

    async def wait_delivered(self, count: int, to: str | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
        await self.wait_until(lambda: len(self.delivered(to)) >= count, timeout)
        return self.delivered(to)

    # handlers

    def _check_token(self, request: web.Request) -> dict[str, Any] | None:
        token = request.headers.get("access_token", "")
        state = self.access_tokens.get(token)
        if state is None:
            return {"error": -216, "message": "Access token is invalid"}
        if state == "expired":
            return {"error": -220, "message": "Access token has expired"}
        return None

    async def _send(self, request: web.Request) -> web.Response:
        path = request.path
        try:
            body = await request.json()
        except ValueError:
            body = {}
        status, answer = 200, self._check_token(request)
        failure = self._take_failure(path) if answer is None else None
        if failure is not None:
            status, answer = failure.status, {"error": failure.code, "message": failure.description}
        if answer is None:
            answer = self._deliver(path, body if isinstance(body, dict) else {})
        await self._record(Call(path, body, status, answer, {"access_token": request.headers.get("access_token", "")}))
        return web.json_response(answer, status=status)

    def _deliver(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        recipient = body.get("recipient") or {}
        message = body.get("message") or {}
        target = recipient.get("group_id") if path.endswith("group/message") else recipient.get("user_id")
        if not target:
            return {"error": -201, "message": "recipient is invalid"}
        text = message.get("text")
        attachment = message.get("attachment")
        if text is None and not attachment:
            return {"error": -201, "message": "message is empty"}
        if text is not None and not 1 <= len(text) <= 2000:
            return {"error": -201, "message": "text must be 1 to 2000 characters"}
        payload = (attachment or {}).get("payload") or {}
        buttons = payload.get("buttons") or []
        if len(buttons) > 5 or (buttons and path.endswith("group/message")):
            return {"error": -201, "message": "buttons are not allowed here"}
        if payload.get("template_type") == "media":
            elements = payload.get("elements") or []
            if len(elements) != 1 or elements[0].get("media_type") != "image" or not (
                str(elements[0].get("url") or "").startswith(("http://", "https://")) or elements[0].get("attachment_id")
            ):
                return {"error": -201, "message": "media template needs one image element with a url or an attachment_id"}
        if path.endswith("group/message") and target in self.inactive_groups:
            code = self.inactive_groups[target]
            return {"error": code, "message": "Group is disabled" if code == -237 else "OA is not a member of this group"}
        if target in self.closed_windows:
            code = self.closed_windows[target]
            return {"error": code, "message": UNREACHABLE_MESSAGES.get(code, "User cannot receive this message")}
        return {"error": 0, "message": "Success", "data": {"message_id": f"oa-{next(self._serial)}", "user_id": target}}

    async def _getoa(self, request: web.Request) -> web.Response:
        answer = self._check_token(request) or {"error": 0, "message": "Success", "data": {"oa_id": self.oa_id, "name": self.oa_name}}
        await self._record(Call("/v2.0/oa/getoa", {}, 200, answer))
        return web.json_response(answer)

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        answer = await self._oauth(form, request.headers.get("secret_key", ""))
        await self._record(Call("/v4/oa/access_token", {k: str(v) for k, v in form.items()}, 200, answer, {"secret_key": request.headers.get("secret_key", "")}))
        return web.json_response(answer)

    async def _oauth(self, form: dict[str, Any], secret_key: str) -> dict[str, Any]:
        if secret_key != self.app_secret or form.get("app_id") != self.app_id:
            return {"error": -14001, "error_name": "Invalid app secret or app id"}
        failure = self._take_failure("/v4/oa/access_token")
        if failure is not None:
            return {"error": failure.code, "error_name": failure.description}
        grant = form.get("grant_type")
        if grant == "refresh_token":
            token = str(form.get("refresh_token") or "")
            if token not in self.refresh_tokens:
                reused = token in self.spent_refresh_tokens
                return {"error": -14014, "error_name": "Refresh token was already used" if reused else "Invalid refresh token"}
            self.refresh_tokens.discard(token)  # single use, spent at once
            self.spent_refresh_tokens.add(token)
            if self.refresh_delay:
                await asyncio.sleep(self.refresh_delay)
        elif grant == "authorization_code":
            code = str(form.get("code") or "")
            if code not in self.codes:
                return {"error": -14019, "error_name": "Invalid authorization code"}
            challenge = self.codes.pop(code)
            if challenge is not None:
                verifier = str(form.get("code_verifier") or "")
                # Zalo's v4 rules: a 43-character verifier; the challenge is base64url(SHA-256) unpadded.
                if len(verifier) != 43 or "=" in challenge:
                    return {"error": -14018, "error_name": "Invalid code verifier"}
                expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if expected != challenge:
                    return {"error": -14018, "error_name": "Invalid code verifier"}
        else:
            return {"error": -14003, "error_name": "Invalid grant type"}
        access, refresh = self.issue_pair()
        return {"access_token": access, "refresh_token": refresh, "expires_in": "90000"}


UNREACHABLE_MESSAGES = {
    -213: "User has not followed the OA",
    -217: "User has blocked messages from the OA",
    -227: "User is inactive or has been banned",
    -230: "User has not interacted with the OA in the last 7 days",
    -232: "User has not interacted with the OA in the last 7 days (consultation quota)",
    -234: "Promotion messages cannot be sent from 22:00 to 06:00",
    -244: "User has refused messages of this kind",
}


def oa_event(
    event_name: str,
    *,
    sender: str = "user-1",
    recipient: str = "oa-1",
    text: str | None = None,
    msg_id: str | None = None,
    app_id: str = "app-1",
    timestamp: str | None = None,
    group_in: str = "recipient.id",
) -> dict[str, Any]:
    """An OA webhook event body, shaped like the captured ones (fields Zalo sends that we do not read,
    such as `user_id_by_app`, included). For group events `group_in` says where the group id is:
    "recipient.id" (documented), "recipient.group_id", "message.conversation_id", "conversation.id"
    (seen by other clients), or "" (none)."""
    body: dict[str, Any] = {
        "app_id": app_id,
        "user_id_by_app": f"app-scoped-{sender}",
        "event_name": event_name,
        "timestamp": timestamp or str(int(time.time() * 1000)),
    }
    if event_name in ("follow", "unfollow"):
        body["oa_id"] = recipient
        body["follower"] = {"id": sender}
        body["source"] = "oa_profile"
        return body
    body["sender"] = {"id": sender}
    body["recipient"] = {"id": recipient}
    message: dict[str, Any] = {"msg_id": msg_id or f"msg-{next(_message_ids)}"}
    if text is not None:
        message["text"] = text
    body["message"] = message
    if event_name.startswith("user_send_group_") and group_in != "recipient.id":
        body["recipient"] = {}
        if group_in == "recipient.group_id":
            body["recipient"] = {"group_id": recipient}
        elif group_in == "message.conversation_id":
            body["recipient"] = {"id": "oa-1"}  # the OA's own id: not the group
            message["conversation_id"] = recipient
        elif group_in == "conversation.id":
            body["conversation"] = {"id": recipient}
    return body


def sign_oa(body: dict[str, Any] | bytes, *, app_id: str = "app-1", secret_key: str = "oa-secret-key") -> tuple[bytes, str]:
    """Serialise an event and compute its X-ZEvent-Signature value ("mac=<hex>")."""
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    timestamp = str(json.loads(raw)["timestamp"])
    mac = hashlib.sha256(app_id.encode() + raw + timestamp.encode() + secret_key.encode()).hexdigest()
    return raw, f"mac={mac}"
