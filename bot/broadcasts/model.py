"""What a broadcast is: statuses, its audience, and its text cut to each channel's limit."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.render import split_text
from storage.broadcasts import BroadcastStatus, DeliveryStatus

__all__ = ["Audience", "AudienceError", "BroadcastStatus", "DeliveryStatus", "CHANNEL_LIMITS", "Part", "messages_for", "parts_for", "MAX_TEXT"]

# The longest text one message may carry on each channel (Telegram counts UTF-16 units).
CHANNEL_LIMITS = {"telegram": 4096, "zalo_bot": 2000, "zalo_oa": 2000}
# The longest caption under a photo: Telegram's sendPhoto 1024 (UTF-16 units); Zalo Bot's sendPhoto takes
# 1-2000 characters; Zalo OA's media message carries its `text` (≤ 2000) with the image.
CAPTION_LIMITS = {"telegram": 1024, "zalo_bot": 2000, "zalo_oa": 2000}
CHANNELS = tuple(CHANNEL_LIMITS)
KINDS = ("group", "private")
SCOPES = ("all", "communes", "hamlets")
# A broadcast longer than this is a document, not a message: refuse it rather than send ten parts.
MAX_TEXT = 8000
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class AudienceError(ValueError):
    """The audience is not valid; the message says why."""


@dataclass(frozen=True)
class Audience:
    """Who receives a broadcast: a scope (all, some communes, some hamlets), kinds of chat, channels."""

    scope: str = "all"
    codes: tuple[str, ...] = ()
    kinds: tuple[str, ...] = KINDS
    channels: tuple[str, ...] = field(default=())  # empty: every channel

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise AudienceError(f"scope must be one of {', '.join(SCOPES)}")
        if self.scope == "all" and self.codes:
            raise AudienceError("scope 'all' takes no codes")
        if self.scope != "all" and not self.codes:
            raise AudienceError(f"scope '{self.scope}' needs at least one code")
        bad = [c for c in self.codes if not _CODE.match(c)]
        if bad:
            raise AudienceError(f"bad code(s): {', '.join(bad[:5])}")
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise AudienceError(f"kinds must be some of {', '.join(KINDS)}")
        if any(c not in CHANNELS for c in self.channels):
            raise AudienceError(f"channels must be some of {', '.join(CHANNELS)}")

    def to_dict(self) -> dict:
        return {"scope": self.scope, "codes": list(self.codes), "kinds": list(self.kinds), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict) -> Audience:
        return cls(
            scope=data.get("scope", "all"),
            codes=tuple(data.get("codes") or ()),
            kinds=tuple(data.get("kinds") or KINDS),
            channels=tuple(data.get("channels") or ()),
        )


def parts_for(channel: str, text: str) -> list[str]:
    """The messages `text` becomes on `channel`: one if it fits, else split at paragraph or sentence ends."""
    limit = CHANNEL_LIMITS.get(channel, 2000)
    if channel == "telegram":
        from bot.channels.telegram import fit_utf16

        return fit_utf16(split_text(text, limit), limit)
    return split_text(text, limit)


@dataclass(frozen=True)
class Part:
    """One message of a broadcast on a channel: a text, or the image with its caption (None: no caption)."""

    text: str | None
    image: bool = False


def _length(channel: str, text: str) -> int:
    return len(text.encode("utf-16-le")) // 2 if channel == "telegram" else len(text)


def messages_for(channel: str, text: str, image: bool = False) -> list[Part]:
    """The messages a broadcast becomes on `channel`, in order.

    With an image: the image first, the text as its caption if it fits the channel's caption limit;
    otherwise the image alone, then the text in as many messages as it takes.
    """
    if not image:
        return [Part(t) for t in parts_for(channel, text)]
    if _length(channel, text) <= CAPTION_LIMITS.get(channel, 1024):
        return [Part(text, image=True)]
    return [Part(None, image=True)] + [Part(t) for t in parts_for(channel, text)]


def check_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValueError("the text is empty")
    if len(text) > MAX_TEXT:
        raise ValueError(f"the text is longer than {MAX_TEXT} characters")
    if "\x00" in text:
        raise ValueError("the text contains binary data")
    return text
