"""Match a free-text question to an FAQ topic, or decide not to answer."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterable

from rapidfuzz import fuzz, process

from bot.catalog import Catalog
from bot.normalize import Normalized, normalize


class Decision(StrEnum):
    ANSWER = "answer"
    CHOOSE = "choose"
    ASK_BACK = "ask_back"
    ABSTAIN = "abstain"


@dataclass(frozen=True, slots=True)
class Candidate:
    topic: str
    score: float


@dataclass(frozen=True, slots=True)
class Match:
    """The matcher's verdict: what to do, and the ranked candidates behind it."""

    decision: Decision
    candidates: tuple[Candidate, ...] = ()
    term: str = ""

    @property
    def topic(self) -> str | None:
        return self.candidates[0].topic if self.decision is Decision.ANSWER else None

    @property
    def score(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0


@dataclass(frozen=True, slots=True)
class Thresholds:
    answer: float = 0.55
    margin: float = 0.08
    choose: float = 0.35
    max_choices: int = 3


def features(folded: Iterable[str]) -> list[str]:
    """Return syllables and adjacent syllable pairs of a folded token sequence."""
    tokens = list(folded)
    return tokens + [f"{a}_{b}" for a, b in zip(tokens, tokens[1:])]


class Matcher:
    """An index over the FAQ examples; `match` is pure and takes well under a millisecond."""

    def __init__(self, catalog: Catalog, thresholds: Thresholds | None = None):
        self.thresholds = thresholds or Thresholds()
        self.reload(catalog)

    def reload(self, catalog: Catalog) -> None:
        """Rebuild the index from (possibly edited) content."""
        self.abbreviations = catalog.abbreviations
        docs: list[tuple[str, Counter[str]]] = []
        for topic in catalog.topics.values():
            for text in (topic.title, *topic.examples):
                norm = normalize(text, self.abbreviations)
                if norm.folded:
                    docs.append((topic.id, Counter(features(norm.folded))))
        df: Counter[str] = Counter()
        for _, feats in docs:
            df.update(set(feats))
        n = len(docs) or 1
        self.idf = {f: math.log(1 + (n - d + 0.5) / (d + 0.5)) for f, d in df.items()}
        self.unknown_idf = math.log(1 + (n + 0.5) / 0.5)
        self.docs = [(tid, feats, sum(self.idf[f] for f in feats)) for tid, feats in docs]
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, (_, feats, _) in enumerate(self.docs):
            for f in feats:
                self.postings[f].append(i)
        self.vocabulary = sorted({f for f in df if "_" not in f and len(f) >= 3})
        self.topic_ids = [t for t in catalog.topics]

    def _repair(self, folded: tuple[str, ...]) -> tuple[str, ...]:
        """Replace misspelt syllables with the closest FAQ syllable."""
        out = []
        for tok in folded:
            if tok in self.idf or len(tok) < 4 or tok.isdigit():
                out.append(tok)
                continue
            best = process.extractOne(tok, self.vocabulary, scorer=fuzz.ratio, score_cutoff=80)
            out.append(best[0] if best else tok)
        return tuple(out)

    def rank(self, norm: Normalized) -> list[Candidate]:
        """Score every topic against a normalised query, best first."""
        folded = self._repair(norm.folded)
        qfeats = Counter(features(folded))
        qweight = sum(self.idf.get(f, self.unknown_idf) for f in qfeats)
        if not qweight:
            return []
        overlap: dict[int, float] = defaultdict(float)
        for f in qfeats:
            for i in self.postings.get(f, ()):
                overlap[i] += self.idf[f]
        best: dict[str, float] = {}
        for i, shared in overlap.items():
            tid, _, dweight = self.docs[i]
            precision, recall = shared / dweight, shared / qweight
            score = 2 * precision * recall / (precision + recall)
            if score > best.get(tid, 0.0):
                best[tid] = score
        return sorted((Candidate(t, round(s, 4)) for t, s in best.items()), key=lambda c: -c.score)

    def match(self, text: str) -> Match:
        """Decide whether to answer, offer choices, ask back or abstain."""
        norm = normalize(text, self.abbreviations)
        ranked = self.rank(norm)
        th = self.thresholds
        if not ranked:
            return Match(Decision.ABSTAIN)
        top = ranked[0]
        if len(norm.folded) == 1 or (len(set(norm.folded)) <= 3 and " ".join(norm.folded) in {"can cuoc", "can cuoc cong dan", "chung minh nhan dan", "vneid"}):
            return Match(Decision.ASK_BACK, tuple(ranked[: th.max_choices]), term=text.strip())
        runner = ranked[1].score if len(ranked) > 1 else 0.0
        if top.score >= th.answer and top.score - runner >= th.margin:
            return Match(Decision.ANSWER, tuple(ranked[: th.max_choices]))
        if top.score >= th.choose:
            return Match(Decision.CHOOSE, tuple(c for c in ranked[: th.max_choices] if c.score >= th.choose * 0.8))
        return Match(Decision.ABSTAIN, tuple(ranked[: th.max_choices]))
