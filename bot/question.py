"""Find the question in a long message: which sentences ask, which tell the story around them.

People who write a paragraph ("Mẹ tôi năm nay 72 tuổi, thẻ cấp năm 2016, nay bị tai biến... Xin hỏi
mẹ tôi có phải đổi thẻ không?") put their question in one or two sentences and their situation in
the others. The matcher weighs the asking sentences fully and the story less, so that ages, places,
dates and courtesy ("luật sư cho hỏi", "xin cảm ơn") inform the ranking without drowning it. A
message with two asking parts is also split into its questions, so the main one can be answered and
the other offered.

The cue phrases live in bot/content/matching.yaml (`question_cues`, `courtesy`), folded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from bot.normalize import fold

# Sentences end at . ? ! ; and line breaks (not at a dot between digits: "01.07.2024", "70.000").
_SENTENCE = re.compile(r"(?<=[?!;\n])|(?<=\.)(?!\d)|(?<=\D\.)")
_CLAUSE = re.compile(r"(?<=,)")
_WORDS = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Part:
    """A stretch of the message and how much the matcher should weigh it."""

    text: str
    weight: float
    asks: bool  # the part contains a question cue or a question mark


@dataclass(frozen=True, slots=True)
class Reading:
    """A message cut into weighted parts, and the clauses that ask, in order (one or more)."""

    parts: tuple[Part, ...]
    questions: tuple[str, ...] = ()


def _phrases(phrases: Iterable[str]) -> dict[int, set[tuple[str, ...]]]:
    by_len: dict[int, set[tuple[str, ...]]] = {}
    for phrase in phrases:
        toks = tuple(phrase.split())
        by_len.setdefault(len(toks), set()).add(toks)
    return by_len


def _words(text: str) -> list[str]:
    return _WORDS.findall(fold(text))


class QuestionFinder:
    """Cut a message into sentences (or clauses, when it has no sentence breaks) and weigh them."""

    def __init__(
        self,
        cues: Iterable[str],
        courtesy: Iterable[str],
        context_weight: float,
        min_words: int,
        endings: Iterable[str] = (),
        particles: Iterable[str] = (),
    ):
        self.cues = _phrases(cues)
        self.endings = frozenset(endings)
        self.particles = frozenset(particles)
        self.courtesy = _phrases(courtesy)
        self.context_weight = context_weight
        self.min_words = min_words

    def _has(self, words: list[str], phrases: dict[int, set[tuple[str, ...]]]) -> bool:
        return any(tuple(words[i : i + n]) in group for n, group in phrases.items() for i in range(len(words) - n + 1))

    def strip_courtesy(self, text: str) -> str:
        """Drop courtesy phrases ("xin cảm ơn", "luật sư cho hỏi") that every long message carries."""
        words = _WORDS.findall(text)
        folded = _words(text)
        if len(folded) != len(words):  # marks typed apart from their letters split words differently
            folded = [fold(w) for w in words]
        keep = [True] * len(words)
        for n, group in sorted(self.courtesy.items(), reverse=True):
            for i in range(len(words) - n + 1):
                if all(keep[i : i + n]) and tuple(folded[i : i + n]) in group:
                    keep[i : i + n] = [False] * n
        if all(keep):
            return text
        return " ".join(w for w, k in zip(words, keep) if k)

    def asks(self, text: str) -> bool:
        """Tell whether a part asks: a question mark, a cue phrase, or a question word at its end."""
        if "?" in text:
            return True
        words = _words(text)
        while words and words[-1] in self.particles:
            words.pop()
        return bool(words) and (words[-1] in self.endings or self._has(words, self.cues))

    def read(self, text: str) -> Reading:
        """Weigh the parts of `text`; a short message, or one with no asking part, is one part of weight 1."""
        if len(_WORDS.findall(text)) < self.min_words:
            return Reading((Part(text, 1.0, True),), (text,))  # a short message is its own question
        pieces = [s for s in _SENTENCE.split(text) if _WORDS.search(s)]
        if len(pieces) < 2:
            pieces = [s for s in _CLAUSE.split(text) if _WORDS.search(s)]
        asking = [self.asks(p) for p in pieces]
        questions: list[str] = []
        for piece, asks in zip(pieces, asking):
            if asks:
                # "có phải đổi thẻ không, nếu phải thì có ai đến nhà làm giúp không": two questions
                clauses = [c for c in _CLAUSE.split(piece) if _WORDS.search(c)]
                asked = [self.strip_courtesy(c) for c in clauses if self.asks(c)] if len(clauses) > 1 else []
                questions += [q for q in asked if _WORDS.search(q)] or [self.strip_courtesy(piece)]
        stripped = [(self.strip_courtesy(p), a) for p, a in zip(pieces, asking)]
        kept = [(p, a) for p, a in stripped if _WORDS.search(p)]
        if not any(a for _, a in kept) or all(a for _, a in kept):
            return Reading(tuple(Part(p, 1.0, a) for p, a in kept), tuple(questions))
        return Reading(tuple(Part(p, 1.0 if a else self.context_weight, a) for p, a in kept), tuple(questions))


__all__ = ["Part", "QuestionFinder", "Reading"]
