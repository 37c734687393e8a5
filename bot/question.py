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
from functools import lru_cache
from typing import Iterable

from bot.normalize import fold

# Words, and the marks that end a sentence (. ? ! ; line break; not a dot inside "01.07.2024" or
# "70.000đ") or a clause (,).
_TOKEN = re.compile(r"[^\W_]+|[?!;,\n]|\.(?!\d)", re.UNICODE)
_SENTENCE_END = frozenset("?!;\n.")


@lru_cache(maxsize=65536)
def _fold_word(word: str) -> str:
    return fold(word)


@dataclass(frozen=True, slots=True)
class Part:
    """A stretch of the message and how much the matcher should weigh it."""

    text: str
    weight: float
    asks: bool  # the part contains a question cue or a question mark, or ends in a question word


@dataclass(frozen=True, slots=True)
class Reading:
    """A message cut into weighted parts, and the clauses that ask, in order (one or more)."""

    parts: tuple[Part, ...]
    questions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Word:
    start: int
    end: int
    folded: str


def _phrases(phrases: Iterable[str]) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Phrases grouped by their first word, longest first, for a scan that only looks where a phrase
    can start."""
    by_first: dict[str, set[tuple[str, ...]]] = {}
    for phrase in phrases:
        toks = tuple(phrase.split())
        by_first.setdefault(toks[0], set()).add(toks)
    return {w: tuple(sorted(group, key=lambda p: (-len(p), p))) for w, group in by_first.items()}


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
        self.courtesy = _phrases(courtesy)
        self.endings = frozenset(endings)
        # trailing particles and forms of address ("ạ", "vậy", "mọi người"), matched from the end
        self.particles = {tuple(p.split()) for p in particles}
        self.particle_lengths = sorted({len(p) for p in self.particles}, reverse=True)
        self.context_weight = context_weight
        self.min_words = min_words

    @staticmethod
    def _found(folded: list[str], phrases: dict[str, tuple[tuple[str, ...], ...]]) -> list[tuple[int, int]]:
        """Spans (start, end) of the phrases found in `folded`, longest first at each start."""
        spans = []
        for i, w in enumerate(folded):
            for phrase in phrases.get(w, ()):
                if tuple(folded[i : i + len(phrase)]) == phrase:
                    spans.append((i, i + len(phrase)))
                    break
        return spans

    def _asks(self, words: list[_Word], question_mark: bool) -> bool:
        if question_mark:
            return True
        folded = [w.folded for w in words]
        stripped = True
        while folded and stripped:
            stripped = False
            for n in self.particle_lengths:
                if len(folded) >= n and tuple(folded[-n:]) in self.particles:
                    del folded[-n:]
                    stripped = True
                    break
        return bool(folded) and (folded[-1] in self.endings or bool(self._found(folded, self.cues)))

    def _text(self, text: str, words: list[_Word]) -> str:
        """The words of a unit as typed, without courtesy phrases (runs of kept words keep their punctuation)."""
        keep = [True] * len(words)
        for a, b in self._found([w.folded for w in words], self.courtesy):
            keep[a:b] = [False] * (b - a)
        runs: list[str] = []
        i = 0
        while i < len(words):
            if not keep[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(words) and keep[j + 1]:
                j += 1
            runs.append(text[words[i].start : words[j].end])
            i = j + 1
        return " ".join(runs)

    def asks(self, text: str) -> bool:
        """Tell whether `text` asks: a question mark, a cue phrase, or a question word at its end."""
        words = [_Word(m.start(), m.end(), _fold_word(m.group().lower())) for m in _TOKEN.finditer(text) if m.group()[0].isalnum()]
        return self._asks(words, "?" in text)

    def read(self, text: str) -> Reading:
        """Weigh the parts of `text`; a short message, or one with no asking part, is one part of weight 1."""
        sentences: list[list[list[_Word]]] = [[[]]]  # sentences of clauses of words
        marks: list[list[bool]] = [[False]]  # whether each clause ends in a question mark
        n = 0
        for m in _TOKEN.finditer(text):
            tok = m.group()
            if tok[0].isalnum():
                sentences[-1][-1].append(_Word(m.start(), m.end(), _fold_word(tok.lower())))
                n += 1
            elif tok == ",":
                sentences[-1].append([])
                marks[-1].append(False)
            else:
                marks[-1][-1] = marks[-1][-1] or tok == "?"
                sentences.append([[]])
                marks.append([False])
        if n < self.min_words:
            return Reading((Part(text, 1.0, True),), (text,))  # a short message is its own question
        units = [(sent, mk) for sent, mk in zip(sentences, marks) if any(sent)]
        if len(units) < 2:  # one long sentence: its clauses are the parts
            units = [([clause], [mark]) for sent, mk in units for clause, mark in zip(sent, mk) if clause]
        parts: list[tuple[str, bool]] = []
        questions: list[str] = []
        for clauses, mk in units:
            words = [w for c in clauses for w in c]
            asks = self._asks(words, any(mk))
            part = self._text(text, words)
            if part:
                parts.append((part, asks))
            if asks:
                # "có phải đổi thẻ không, nếu phải thì có ai đến nhà làm giúp không": two questions
                asked = [self._text(text, c) for c, q in zip(clauses, mk) if c and self._asks(c, q)] if len(clauses) > 1 else []
                questions += [q for q in asked if q] or ([part] if part else [])
        if not any(a for _, a in parts) or all(a for _, a in parts):
            return Reading(tuple(Part(p, 1.0, a) for p, a in parts), tuple(questions))
        return Reading(tuple(Part(p, 1.0 if a else self.context_weight, a) for p, a in parts), tuple(questions))


__all__ = ["Part", "QuestionFinder", "Reading"]
