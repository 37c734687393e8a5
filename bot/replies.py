"""Reading everyday replies: which steering word or answer a short message means, typos forgiven.

People answer "rồi", "tiep theoo", "dc roi a", "hd lam cccd": the phrases of keywords.yaml are
compared with the message as typed (folded), with the abbreviations expanded, and without the
particles people add at the end ("tiếp đi", "chưa ạ"). Exact matches win; then a close spelling
(rapidfuzz ratio) of a phrase of the same negation, so "chưa nộp được" never reads as "đã nộp được".
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rapidfuzz import fuzz

from bot.catalog import Catalog
from bot.normalize import fold_key, normalize

# Longer messages are questions, not replies: they go to the FAQ.
MAX_WORDS = 8
# A close spelling: "tiep theoo" ~ "tiep theo" (95), "cam onn" ~ "cam on" (92).
FUZZY_CUTOFF = 88
# Shorter keys are compared exactly only: "roi" and "toi" differ by one letter.
FUZZY_MIN_LENGTH = 5
NEGATIONS = frozenset({"chua", "khong", "ko", "k", "kg", "hok", "khg", "khum"})


def _strip_particles(words: list[str], particles: frozenset[str]) -> list[str]:
    while len(words) > 1 and words[-1] in particles:
        words = words[:-1]
    return words


@lru_cache(maxsize=4096)
def _keys_cached(text: str, abbreviations: tuple[tuple[str, str], ...], particles: frozenset[str]) -> tuple[str, ...]:
    typed = fold_key(text).split()
    expanded = list(normalize(text, dict(abbreviations)).folded)
    keys: list[str] = []
    for words in (typed, expanded):
        for variant in (words, _strip_particles(words, particles)):
            key = " ".join(variant)
            if key and key not in keys:
                keys.append(key)
    return tuple(keys)


def keys(catalog: Catalog, text: str) -> tuple[str, ...]:
    """The folded forms of a message that are compared with the phrases."""
    if len(text) > 200 or len(text.split()) > MAX_WORDS:
        return ()
    abbreviations = tuple(sorted(catalog.abbreviations.items()))
    return _keys_cached(text, abbreviations, catalog.keywords.get("particles", frozenset()))


@lru_cache(maxsize=8192)
def _negated(key: str) -> bool:
    return any(w in NEGATIONS for w in key.split())


def kind_of(catalog: Catalog, text: str, kinds: Sequence[str]) -> str | None:
    """Return the first of `kinds` whose phrases the message says, exactly or with a small typo."""
    forms = keys(catalog, text)
    if not forms:
        return None
    words = catalog.keywords
    for kind in kinds:
        phrases = words.get(kind, frozenset())
        if any(form in phrases for form in forms):
            return kind
    best: tuple[float, str] | None = None
    for kind in kinds:
        for phrase in words.get(kind, frozenset()):
            for form in forms:
                if len(form) < FUZZY_MIN_LENGTH or len(phrase) < FUZZY_MIN_LENGTH:
                    continue
                if _negated(form) != _negated(phrase):
                    continue
                score = fuzz.ratio(form, phrase, score_cutoff=FUZZY_CUTOFF)
                if score and (best is None or score > best[0]):
                    best = (score, kind)
    return best[1] if best else None
