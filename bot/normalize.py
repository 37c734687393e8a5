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
_TRIPLE = re.compile(r"([^\W\d_])\1\1")
_AGE = re.compile(r"(?<![\w])(\d{1,3})\s?t(?![\w])")  # "14t", "90 t": an age


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
    """Collapse runs of three or more of the same letter ("ạaaa" -> "ạ", "nhiềuuu" -> "nhiều", "okkk" -> "ok").

    Vietnamese never writes a letter three times in a row; two stay ("xoong"). Vowels collapse
    anywhere, consonants only at the end of a word, so that "cccd" stays an abbreviation.
    Marks are compared away, so "ạaaa" keeps its first, marked, letter.
    """
    if not _TRIPLE.search(fold(word)):
        return word
    tail = len(word)
    while tail > 0 and fold(word[tail - 1]) not in "aeiouy" and fold(word[tail - 1]) == fold(word[-1]):
        tail -= 1
    if len(word) - tail >= 3:
        word = word[: tail + 1]
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


_TONE_BEFORE_MODIFIER = re.compile("([\u0300\u0301\u0303\u0309\u0323]+)([\u0302\u0306\u031b]+)")
_COMBINING = re.compile("[\u0300-\u036f]")


def _nfc(text: str) -> str:
    """NFC, also when a tone mark was typed before the vowel's own mark (e + ́ + ̂ -> ế)."""
    text = unicodedata.normalize("NFC", text)
    if _COMBINING.search(text):  # marks left over: reorder them, then compose again
        text = unicodedata.normalize("NFC", _TONE_BEFORE_MODIFIER.sub(r"\2\1", unicodedata.normalize("NFD", text)))
    return text


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
    words: int = 0  # how many words the person typed, before abbreviations were expanded

    @property
    def text(self) -> str:
        return " ".join(self.folded)

    @property
    def marked(self) -> bool:
        return any(t != f for t, f in zip(self.tokens, self.folded))


def normalize(text: str, abbreviations: Mapping[str, str] | None = None) -> Normalized:
    """Normalise free text into tokens: NFC, one tone placement, amounts, abbreviations."""
    text = _nfc(text.translate(LOOKALIKES)).lower()
    text = _AMOUNT.sub(_amount, text)
    typed = len(_WORD.findall(text))  # "70.000đ" is one word, "14t" too
    text = _AGE.sub(r" \1 tuổi ", text)
    tokens: list[str] = []
    folded: list[str] = []
    for word in _WORD.findall(text):
        expansion = abbreviations.get(word) if abbreviations else None
        if not expansion:
            word, plain = _word(word)
            expansion = abbreviations.get(word) if abbreviations else None
        if expansion:
            for part in expansion.split():
                tokens.append(part)
                folded.append(part)
            continue
        tokens.append(word)
        folded.append(plain)
    return Normalized(tuple(tokens), tuple(folded), typed)


@lru_cache(maxsize=65536)
def _word(word: str) -> tuple[str, str]:
    """One word, stretched letters collapsed and tone mark placed, and its folded twin."""
    word = place_tone(_collapse_stretched(word))
    return word, fold(word)


@lru_cache(maxsize=4096)
def fold_key(text: str) -> str:
    """Return a compact folded key of text, for exact command and name comparison."""
    return " ".join(fold(w) for w in _WORD.findall(unicodedata.normalize("NFC", text).lower()))


# Folded Vietnamese syllables: an initial consonant (or none) and a rhyme, diacritics dropped.
_INITIALS = "ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|b|c|d|g|h|k|l|m|n|p|r|s|t|v|x"
_RHYMES = (
    "a ai ao au ay an ang anh ac ach am ap at "
    "e eo en eng ec em ep et enh ech eu "
    "i ia iu in inh ich im ip it ieu ien ieng iec iem iep iet "
    "o oi on ong oc om op ot oa oai oay oan oang oanh oac oach oam oap oat oe oeo oen oet oong ooc "
    "u ua ui un ung uc um up ut uy uya uyu uyen uyet uynh uych uyn uyt uan uang uat uac uay uau "
    "ue uen uet uenh uech uoi uon uong uoc uom uot uop uou uu uan uanh uo "
    "y yeu yen yet yem"
)
_SYLLABLE = re.compile(rf"^(?:{_INITIALS})?(?:{'|'.join(sorted(_RHYMES.split(), key=len, reverse=True))})$")


def is_syllable(folded: str) -> bool:
    """Tell whether a folded token could be a Vietnamese syllable ("chieu" yes, "dag" and "cccd" no)."""
    return bool(_SYLLABLE.match(folded))
