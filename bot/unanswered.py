"""Group near-duplicate unanswered questions so editors can turn them into FAQ examples."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from bot.normalize import fold_key

SIMILAR = 85


@dataclass
class QuestionGroup:
    text: str
    count: int = 0
    variants: list[str] = field(default_factory=list)


def group_questions(texts: list[str]) -> list[QuestionGroup]:
    """Cluster questions whose folded forms are near-identical; most frequent first."""
    counts = Counter(t.strip() for t in texts if t and t.strip() and not t.startswith("["))
    groups: list[tuple[str, QuestionGroup]] = []
    for text, n in counts.most_common():
        key = fold_key(text)
        for gkey, group in groups:
            if fuzz.token_sort_ratio(key, gkey) >= SIMILAR:
                group.count += n
                group.variants.append(text)
                break
        else:
            groups.append((key, QuestionGroup(text, n, [text])))
    return sorted((g for _, g in groups), key=lambda g: -g.count)
