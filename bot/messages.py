"""The channel-neutral values that cross between channels and the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ChatType(StrEnum):
    PRIVATE = "private"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from a person, as any channel sees it."""

    channel: str
    chat_id: str
    chat_type: ChatType
    sender_id: str
    sender_name: str
    text: str
    time: datetime
    payload: str | None = None
    addressed: bool = True
    message_id: str | None = None
    sender_is_admin: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.channel, self.chat_id, self.sender_id)


@dataclass(frozen=True, slots=True)
class Link:
    """Where a link button leads, said without naming a platform: a web address, or the person's
    private chat with the bot opened with a start parameter (Telegram: t.me/<bot>?start=<value>)."""

    url: str = ""
    private_start: str = ""
    # What a channel that cannot show this link says instead (Zalo, the terminal).
    instead: str = ""


@dataclass(frozen=True, slots=True)
class Choice:
    """A button: a label the person sees and a short payload the core reads back, or a link."""

    label: str
    payload: str
    # A link button opens `link` instead of sending the payload back; it is never numbered.
    link: Link | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One message of the bot: text, optional choices and an optional image URL."""

    text: str
    choices: tuple[Choice, ...] = ()
    image: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can show."""

    buttons: bool
    max_text: int
    max_buttons: int = 8
    # Whether link buttons can be shown (Telegram's URL buttons).
    links: bool = False


@dataclass(frozen=True, slots=True)
class Rendered:
    """A reply made ready for one channel: text chunks and, on the last, the buttons."""

    texts: tuple[str, ...]
    buttons: tuple[Choice, ...] = ()
    image: str | None = None
    numbered: tuple[Choice, ...] = field(default=())
