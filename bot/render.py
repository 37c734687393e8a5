"""Render the core's replies for a channel: numbered choices and text split to its limit."""

from __future__ import annotations

import re

from bot.messages import Capabilities, Choice, Rendered, Reply

_SENTENCE_END = re.compile(r"(?<=[.!?…:;])\s+")


def _hard_split(text: str, limit: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for word in text.split(" "):
        while len(word) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:limit])
            word = word[limit:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) > limit:
            parts.append(current)
            current = word
        else:
            current = candidate
    if current:
        parts.append(current)
    return parts


def split_text(text: str, limit: int) -> list[str]:
    """Split text into chunks of at most `limit` characters, at paragraph or sentence ends."""
    if limit < 1:
        raise ValueError("limit must be positive")
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    pieces: list[str] = []
    for paragraph in text.split("\n"):
        for sentence in _SENTENCE_END.split(paragraph.strip()):
            pieces.extend(_hard_split(sentence, limit) if len(sentence) > limit else [sentence])
        pieces.append("\n")
    chunks: list[str] = []
    current = ""
    for piece in pieces[:-1]:
        joiner = "" if not current or current.endswith("\n") or piece == "\n" else " "
        candidate = current + joiner + piece
        if len(candidate.rstrip("\n")) <= limit:
            current = candidate
            continue
        if current.strip():
            chunks.append(current.strip())
        current = "" if piece == "\n" else piece
    if current.strip():
        chunks.append(current.strip())
    return chunks


def numbered_lines(choices: tuple[Choice, ...]) -> str:
    """Render choices as "1. label" lines, for channels without buttons."""
    return "\n".join(f"{i}. {c.label}" for i, c in enumerate(choices, 1))


def render(reply: Reply, caps: Capabilities, hint: str = "") -> Rendered:
    """Fit one reply to a channel's capabilities."""
    text = reply.text
    buttons: tuple[Choice, ...] = ()
    numbered: tuple[Choice, ...] = ()
    choices = reply.choices
    as_buttons = caps.buttons and len(choices) <= caps.max_buttons
    if not (caps.links and as_buttons) and any(c.link for c in choices):
        # No link buttons here: say how to get there instead; numbers count pressable choices only.
        instead = [c.link.instead for c in choices if c.link and c.link.instead]
        choices = tuple(c for c in choices if c.link is None)
        text = "\n".join([text, *instead])
    if choices and as_buttons:
        buttons = choices
    elif choices:
        numbered = choices
        text = f"{text}\n\n{numbered_lines(choices)}"
        if hint:
            text = f"{text}\n{hint}"
    return Rendered(tuple(split_text(text, caps.max_text)), buttons, reply.image, numbered)
