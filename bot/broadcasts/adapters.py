"""One small adapter per platform: send one text to one chat and say what became of it.

The sender knows nothing of Telegram or Zalo; an adapter turns the platform's answer into a
`SendResult`. Each adapter goes through the project's real client (PTB's Bot for Telegram, the OA
channel's client for Zalo OA, the Zalo Bot channel's API client). In the server, an adapter shares its
channel's client and waits for the channel to be connected (`ready`): until then a call is put off
(RETRY_AFTER, not counted as a failed attempt).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bot.broadcasts.images import Image


class Result(StrEnum):
    SENT = "sent"
    RETRY_AFTER = "retry_after"  # the platform asked the whole channel to wait
    TRANSIENT = "transient"  # 5xx, timeout, network: retry with backoff
    BLOCKED = "blocked"  # blocked, kicked, not a follower: never again
    NO_WINDOW = "no_window"  # Zalo OA's 7-day window is closed: not retried
    MIGRATED = "migrated"  # the group has a new id: send there
    FAILED = "failed"  # the platform refused the message itself: not retried
    AMBIGUOUS = "ambiguous"  # the request may or may not have gone out: never repeated


@dataclass(frozen=True)
class SendResult:
    result: Result
    message_id: str | None = None
    retry_after: float = 0.0
    error: str = ""
    new_chat_id: str | None = None


class Adapter(Protocol):
    channel: str
    ready: asyncio.Event | None  # set once the channel is connected (None: always ready)

    async def send_text(self, chat_id: str, kind: str, text: str) -> SendResult: ...

    async def send_photo(self, chat_id: str, kind: str, image: Image, caption: str | None) -> SendResult: ...


# How long the upload of a broadcast's image (≤ 1 MB, once per broadcast) may take.
UPLOAD_TIMEOUT = 60.0
# How long a call waits for its channel to connect to its platform before it is put off.
NOT_READY_WAIT = 5.0


async def not_ready(ready: asyncio.Event | None) -> SendResult | None:
    """Wait (a while) for the channel to connect: None when it may send, else a put-off result."""
    if ready is None or ready.is_set():
        return None
    try:
        await asyncio.wait_for(ready.wait(), NOT_READY_WAIT)
        return None
    except asyncio.TimeoutError:
        return SendResult(Result.RETRY_AFTER, retry_after=NOT_READY_WAIT, error="channel not connected yet")


class TelegramAdapter:
    """Telegram through python-telegram-bot's Bot.

    An image is uploaded once (sendPhoto, multipart); the next chats get it by the file_id Telegram gave
    back, as Telegram recommends, rather than 1 MB more per chat.
    """

    channel = "telegram"

    def __init__(self, bot, ready: asyncio.Event | None = None, *, read_timeout: float | None = None):
        self.bot = bot
        self.ready = ready
        self.read_timeout = read_timeout  # None: the client's own
        self.file_ids: dict[str, str] = {}  # image key -> Telegram's file_id of it
        self._uploads: dict[str, asyncio.Lock] = {}

    async def send_text(self, chat_id: str, kind: str, text: str) -> SendResult:
        return await self._send(chat_id, lambda chat: self.bot.send_message(
            chat, text, disable_web_page_preview=True, read_timeout=self.read_timeout
        ))

    async def send_photo(self, chat_id: str, kind: str, image: Image, caption: str | None) -> SendResult:
        if image.key not in self.file_ids:
            # One upload at a time per image: the chats after it get the file_id it brings back.
            async with self._uploads.setdefault(image.key, asyncio.Lock()):
                if image.key not in self.file_ids:
                    return await self._photo(chat_id, image, caption, None)
        return await self._photo(chat_id, image, caption, self.file_ids[image.key])

    async def _photo(self, chat_id: str, image: Image, caption: str | None, file_id: str | None) -> SendResult:
        from telegram import InputFile

        photo = file_id or InputFile(image.data, filename=image.filename)
        timeouts = {} if self.read_timeout is None else {"read_timeout": self.read_timeout}
        # The one upload of a broadcast's image may take a while on a commune's slow uplink.
        timeouts["write_timeout"] = UPLOAD_TIMEOUT if file_id is None else (self.read_timeout or UPLOAD_TIMEOUT)
        outcome = await self._send(
            chat_id, lambda chat: self.bot.send_photo(chat, photo, caption=caption, **timeouts),
            keep=lambda message: self._keep_file_id(image.key, message),
        )
        if file_id is not None and outcome.result is Result.FAILED and "file" in outcome.error.lower():
            # Telegram no longer knows the file_id: upload again at the next attempt.
            self.file_ids.pop(image.key, None)
            return SendResult(Result.TRANSIENT, error=outcome.error)
        return outcome

    def _keep_file_id(self, key: str, message) -> None:
        if key not in self.file_ids and getattr(message, "photo", None):
            self.file_ids[key] = message.photo[-1].file_id

    async def _send(self, chat_id: str, call, keep=None) -> SendResult:
        waiting = await not_ready(self.ready)
        if waiting is not None:
            return waiting
        from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TimedOut

        from bot.channels.telegram import retry_seconds

        if not chat_id.lstrip("-").isdigit():
            return SendResult(Result.FAILED, error=f"not a Telegram chat id: {chat_id[:20]}")
        try:
            message = await call(int(chat_id))
        except RetryAfter as exc:
            return SendResult(Result.RETRY_AFTER, retry_after=retry_seconds(exc), error=str(exc))
        except Forbidden as exc:
            return SendResult(Result.BLOCKED, error=str(exc))
        except ChatMigrated as exc:
            return SendResult(Result.MIGRATED, new_chat_id=str(exc.new_chat_id), error=str(exc))
        except BadRequest as exc:
            text_ = str(exc).lower()
            if "chat not found" in text_ or "kicked" in text_ or "deactivated" in text_:
                return SendResult(Result.BLOCKED, error=str(exc))
            return SendResult(Result.FAILED, error=str(exc))
        except TimedOut as exc:
            return SendResult(Result.TRANSIENT, error=f"timeout: {exc}")
        except NetworkError as exc:  # 5xx answers and connection errors
            return SendResult(Result.TRANSIENT, error=str(exc))
        if keep is not None:
            keep(message)
        return SendResult(Result.SENT, message_id=str(message.message_id))


# Zalo OA errors that mean the person or group cannot be reached (platforms.md): never retried in a loop.
ZALO_OA_UNREACHABLE = frozenset({-213, -217, -227, -244, -237, -403})
ZALO_OA_NO_WINDOW = frozenset({-230, -232, -234})


NO_PUBLIC_URL = "CCCD_PUBLIC_URL is not set: Zalo fetches a broadcast's image from the server's public address"


class ZaloOAAdapter:
    """Zalo OA through the OA channel's client (tokens refreshed there).

    An image goes as OA's `media` template with the image's public address, the text (if any) with it.
    """

    channel = "zalo_oa"

    def __init__(self, oa_channel, ready: asyncio.Event | None = None, *, public_url: str | None = None):
        self.oa = oa_channel
        self.ready = ready
        self.public_url = public_url

    async def send_text(self, chat_id: str, kind: str, text: str) -> SendResult:
        return await self._send(chat_id, kind, {"text": text})

    async def send_photo(self, chat_id: str, kind: str, image: Image, caption: str | None) -> SendResult:
        url = image.url(self.public_url)
        if url is None:
            return SendResult(Result.FAILED, error=NO_PUBLIC_URL)
        media = {"type": "template", "payload": {"template_type": "media", "elements": [{"media_type": "image", "url": url}]}}
        return await self._send(chat_id, kind, {"attachment": media, **({"text": caption} if caption else {})})

    async def _send(self, chat_id: str, kind: str, message: dict) -> SendResult:
        from bot.channels import zalo_oa

        waiting = await not_ready(self.ready)
        if waiting is not None:
            return waiting

        if kind == "group":
            path, body = zalo_oa.GROUP_PATH, {"recipient": {"group_id": chat_id}, "message": message}
        else:
            path, body = zalo_oa.CS_PATH, {"recipient": {"user_id": chat_id}, "message": message}
        try:
            # One request: the sender does its own retries (and counts them).
            data = await self.oa.call("POST", path, body, retries=False)
        except zalo_oa.OAError as exc:
            return zalo_oa_result(exc.code, exc.status, str(exc))
        message_id = (data.get("data") or {}).get("message_id") if isinstance(data.get("data"), dict) else None
        return SendResult(Result.SENT, message_id=str(message_id) if message_id else None)


def zalo_oa_result(code: int, status: int, error: str) -> SendResult:
    """What an OA error means for a broadcast delivery."""
    from bot.channels import zalo_oa

    if code in ZALO_OA_NO_WINDOW:
        return SendResult(Result.NO_WINDOW, error=error)
    if code in ZALO_OA_UNREACHABLE:
        return SendResult(Result.BLOCKED, error=error)
    if code == zalo_oa.RATE_LIMIT or status == 429:
        return SendResult(Result.RETRY_AFTER, retry_after=60.0, error=error)
    if code == zalo_oa.FAILED_UNKNOWN:
        return SendResult(Result.AMBIGUOUS, error=error)
    if code == zalo_oa.NETWORK or status >= 500 or code in zalo_oa.TOKEN_ERRORS or code == zalo_oa.NO_TOKEN:
        return SendResult(Result.TRANSIENT, error=error)
    return SendResult(Result.FAILED, error=error)


class ZaloBotAdapter:
    """Zalo Bot through the Zalo Bot channel's API client (`ZaloBotApi.call_once`: no retries of its own).

    An image goes by sendPhoto with the image's public address (the platform takes no upload) and the
    text as its caption.
    """

    channel = "zalo_bot"

    def __init__(self, api, ready: asyncio.Event | None = None, *, read_timeout: float = 15.0, public_url: str | None = None):
        self.api = api
        self.ready = ready
        self.read_timeout = read_timeout
        self.public_url = public_url

    async def send_text(self, chat_id: str, kind: str, text: str) -> SendResult:
        return await self._send("sendMessage", {"chat_id": chat_id, "text": text})

    async def send_photo(self, chat_id: str, kind: str, image: Image, caption: str | None) -> SendResult:
        url = image.url(self.public_url)
        if url is None:
            return SendResult(Result.FAILED, error=NO_PUBLIC_URL)
        return await self._send("sendPhoto", {"chat_id": chat_id, "photo": url, **({"caption": caption} if caption else {})})

    async def _send(self, method: str, body: dict) -> SendResult:
        from bot.channels.zalo_bot import ZaloBotError

        waiting = await not_ready(self.ready)
        if waiting is not None:
            return waiting
        try:
            result = await self.api.call_once(method, body, self.read_timeout)
        except ZaloBotError as exc:
            return zalo_bot_result(exc.code, exc.description, exc.retry_after)
        message_id = result.get("message_id") if isinstance(result, dict) else None
        return SendResult(Result.SENT, message_id=str(message_id) if message_id is not None else None)


def zalo_bot_result(code: int, description: str, retry_after: float | None = None) -> SendResult:
    """What a Zalo Bot API error means for a broadcast delivery (codes: /work/shared/notes/platforms.md)."""
    from bot.channels import zalo_bot

    error = f"error {code}: {description}"[:300]
    if code == zalo_bot.RATE_LIMITED:
        return SendResult(Result.RETRY_AFTER, retry_after=retry_after if retry_after else 5.0, error=error)
    if code == 404:
        return SendResult(Result.BLOCKED, error=error)  # no such chat (left, removed): skipped next time
    if code == 400:
        return SendResult(Result.FAILED, error=error)  # the message itself was refused
    if code == zalo_bot.UNKNOWN:
        # No answer (timeout, broken connection): it may have been shown, and Zalo cannot take a message
        # back; like Zalo OA's, it is reported `unknown` rather than sent twice.
        return SendResult(Result.AMBIGUOUS, error=error)
    # 5xx, 408, 403 (documented as "internal server error" on this platform), 401 (the token: fixed by
    # configuration), the network, or no answer at all: retried with backoff, then failed with the reason.
    return SendResult(Result.TRANSIENT, error=error)
