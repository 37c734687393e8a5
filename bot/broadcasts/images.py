"""A broadcast's optional image: checked when uploaded, kept in the database, sent in each channel's form.

Where it is kept: in the database (table `broadcast_images`), not in the data directory. Every process of a
deployment already shares the database (a web process takes the upload, the sender process sends it, and
any of them serves it to Zalo), while the data directory is one container's volume; a backup of the
database is then a backup of every broadcast whole; and the image is written in the same transaction as
what refers to it. The size limit keeps this cheap: 1 MB, JPEG or PNG — Zalo OA's documented limit for
images, the strictest of the three platforms (Telegram takes photos up to 10 MB), so that an image that
passes here is sendable on every channel.

How each channel sends it (bot/broadcasts/adapters.py): Telegram uploads the bytes once (sendPhoto,
multipart) and sends Telegram's file_id to the next chats; Zalo Bot (sendPhoto) and Zalo OA (a `media`
template) take the image's address, which Zalo fetches from `CCCD_PUBLIC_URL` + `/media/broadcasts/<key>`
(served by bot/web/media.py; the key is random, so nobody can list the images).
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Broadcast, BroadcastImage

MAX_BYTES = 1024 * 1024
TYPES = {"image/jpeg": "jpg", "image/png": "png"}
# Telegram refuses a photo whose width + height exceeds 10,000 or whose sides differ more than 20 times.
MAX_SIDES = 10_000
MAX_RATIO = 20
MEDIA_PATH = "/media/broadcasts"
# An image previewed but never sent is deleted after this.
UNUSED_FOR = timedelta(days=2)


class ImageError(ValueError):
    """The upload is not a usable image; `reason` is one of: empty, too_big, not_image, shape."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Image:
    key: str
    content_type: str
    data: bytes
    width: int
    height: int

    @property
    def filename(self) -> str:
        return f"{self.key}.{TYPES[self.content_type]}"

    def url(self, public_url: str | None) -> str | None:
        """Where Zalo fetches it; None without a public address."""
        return f"{public_url.rstrip('/')}{MEDIA_PATH}/{self.filename}" if public_url else None


def check(data: bytes) -> tuple[str, int, int]:
    """(content type, width, height) of a JPEG or PNG, read from its header; ImageError otherwise."""
    if not data:
        raise ImageError("empty")
    if len(data) > MAX_BYTES:
        raise ImageError("too_big")
    found = _png(data) or _jpeg(data)
    if found is None:
        raise ImageError("not_image")
    kind, width, height = found
    if width < 1 or height < 1 or width + height > MAX_SIDES or max(width, height) > MAX_RATIO * min(width, height):
        raise ImageError("shape")
    return kind, width, height


def _png(data: bytes) -> tuple[str, int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return "image/png", width, height


def _jpeg(data: bytes) -> tuple[str, int, int] | None:
    """Walk the JPEG's segments to its frame header (SOF0-SOF15 but DHT, JPG, DAC)."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # padding
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return "image/jpeg", width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


async def store(session: AsyncSession, data: bytes, now: datetime) -> Image:
    """Check and keep an uploaded image (the same bytes twice: one row); ImageError if unusable."""
    content_type, width, height = check(data)
    digest = hashlib.sha256(data).hexdigest()
    row = (await session.execute(select(BroadcastImage).where(BroadcastImage.sha256 == digest))).scalars().first()
    if row is None:
        row = BroadcastImage(
            key=secrets.token_hex(16), sha256=digest, content_type=content_type, data=data,
            width=width, height=height, size=len(data), created_at=now,
        )
        session.add(row)
        await session.flush()
    await forget_unused(session, now)
    return Image(row.key, row.content_type, row.data, row.width, row.height)


async def load(session: AsyncSession, key: str | None) -> Image | None:
    if not key or len(key) > 64:
        return None
    row = await session.get(BroadcastImage, key)
    return Image(row.key, row.content_type, row.data, row.width, row.height) if row else None


def key_of(filename: str) -> str | None:
    """The key in an address's last part (`<key>.jpg`); None if it is not one of ours."""
    key, dot, ext = filename.partition(".")
    return key if dot and ext in TYPES.values() and len(key) == 32 and all(c in "0123456789abcdef" for c in key) else None


async def forget_unused(session: AsyncSession, now: datetime) -> int:
    """Delete images uploaded for a preview and never used by a broadcast."""
    used = select(Broadcast.image).where(Broadcast.image.is_not(None))
    result = await session.execute(
        delete(BroadcastImage).where(BroadcastImage.created_at < now - UNUSED_FOR).where(BroadcastImage.key.not_in(used))
    )
    return result.rowcount or 0
