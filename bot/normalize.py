"""Normalise Vietnamese text as people type it, for matching."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}  # grave, acute, tilde, hook, dot below
MODIFIED = set("ăâêôơư")
VOWELS = set("aăâeêioôơuưy")
LOOKALIKES = str.maketrans({"\u00d0": "Đ", "\u00f0": "đ", "\u0189": "Đ", "\u0256": "đ"})
# Open syllables whose mark sits on the second vowel in the modern style ("hoà", "thuỷ").
SECOND_VOWEL_PAIRS = {"oa", "oe", "uy"}

_AMOUNT = re.compile(r"(?<![\w])(\d{1,3}(?:[.,]\d{3})+|\d+)\s*(k|đ|d|vnd|vnđ|đồng|dong|nghìn|ngàn|ngan|nghin|tr|triệu|trieu)?(?![\w])")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def fold(text: str) -> str:
    """Return text without diacritics, lower case; đ becomes d explicitly."""
    text = text.translate(LOOKALIKES).replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped).lower()


def has_diacritics(text: str) -> bool:
    """Tell whether the text carries any Vietnamese mark (or đ)."""
    return fold(text) != text.lower()


def _split_tone(syllable: str) -> tuple[str, str | None]:
    tone = None
    out = []
    for ch in unicodedata.normalize("NFD", syllable):
        if ch in TONES:
            tone = tone or ch
        else:
            out.append(ch)
    return unicodedata.normalize("NFC", "".join(out)), tone


def _tone_position(base: str) -> int | None:
    """Return the index of the letter that carries the tone mark in `base`."""
    start = 0
    if base.startswith("qu") and len(base) > 2 and base[2] in VOWELS:
        start = 2
    elif base.startswith("gi") and len(base) > 2 and base[2] in VOWELS:
        start = 2
    first = next((i for i in range(start, len(base)) if base[i] in VOWELS), None)
    if first is None:
        # "gì", "quý" style words: the i/u of gi/qu is the only vowel.
        first = next((i for i in range(len(base)) if base[i] in VOWELS), None)
        return first
    end = first
    while end < len(base) and base[end] in VOWELS:
        end += 1
    cluster = base[first:end]
    closed = end < len(base)
    modified = [i for i, ch in enumerate(cluster) if ch in MODIFIED]
    if modified:
        return first + modified[-1]
    if len(cluster) == 1:
        return first
    if closed:
        return end - 1
    if len(cluster) == 2:
        return first + 1 if cluster in SECOND_VOWEL_PAIRS else first
    return first + 1


def place_tone(syllable: str) -> str:
    """Move a syllable's tone mark to one consistent place ("hòa" -> "hoà", "hoàn" stays)."""
    base, tone = _split_tone(syllable)
    if tone is None:
        return syllable
    pos = _tone_position(base)
    if pos is None:
        return syllable
    decomposed = unicodedata.normalize("NFD", base[: pos + 1]) + tone
    return unicodedata.normalize("NFC", decomposed + base[pos + 1 :])


def _collapse_stretched(word: str) -> str:
    """Collapse runs of three or more of the same vowel ("ạaaa" -> "ạ", "điiii" -> "đi")."""
    out: list[str] = []
    run_base = ""
    run = 0
    for ch in word:
        base = fold(ch)
        if base == run_base and base in "aeiouy":
            run += 1
        else:
            run_base, run = base, 1
        out.append(ch)
        if run == 3:
            del out[-2:]
        elif run > 3:
            out.pop()
    return "".join(out)


def _amount(match: re.Match[str]) -> str:
    number = re.sub(r"[.,]", "", match.group(1))
    unit = fold(match.group(2) or "")
    unit = {"vnd": "d", "dong": "d", "nghin": "k", "ngan": "k", "trieu": "tr"}.get(unit, unit)
    return f" {number}{unit} "


@dataclass(frozen=True, slots=True)
class Normalized:
    """A message as the matcher sees it: marked tokens and their folded twins."""

    tokens: tuple[str, ...]
    folded: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.folded)

    @property
    def marked(self) -> bool:
        return any(t != f for t, f in zip(self.tokens, self.folded))


def normalize(text: str, abbreviations: Mapping[str, str] | None = None) -> Normalized:
    """Normalise free text into tokens: NFC, one tone placement, amounts, abbreviations."""
    text = unicodedata.normalize("NFC", text.translate(LOOKALIKES)).lower()
    text = _AMOUNT.sub(_amount, text)
    tokens: list[str] = []
    folded: list[str] = []
    for word in _WORD.findall(text):
        expansion = abbreviations.get(word) if abbreviations else None
        if not expansion:
            word = place_tone(_collapse_stretched(word))
            expansion = abbreviations.get(word) if abbreviations else None
        if expansion:
            for part in expansion.split():
                tokens.append(part)
                folded.append(part)
            continue
        tokens.append(word)
        folded.append(fold(word))
    return Normalized(tuple(tokens), tuple(folded))


@lru_cache(maxsize=4096)
def fold_key(text: str) -> str:
    """Return a compact folded key of text, for exact command and name comparison."""
    return " ".join(fold(w) for w in _WORD.findall(unicodedata.normalize("NFC", text).lower()))
