"""Group near-duplicate unanswered questions so editors can turn them into FAQ examples.

Questions are compared the way the matcher reads them (folded, stretched letters collapsed,
abbreviations expanded), so "cap lai cccd bn" and "cấp lại căn cước công dân bao nhiêu" meet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Mapping

from rapidfuzz import fuzz, process

from bot.normalize import has_diacritics, normalize

SIMILAR = 85  # rapidfuzz token_sort_ratio of the normalised forms at which two questions are one


@dataclass
class QuestionGroup:
    text: str  # the most frequent wording
    count: int = 0
    variants: list[str] = field(default_factory=list)  # every wording, most frequent first


@lru_cache(maxsize=1)
def _shipped_abbreviations() -> dict[str, str]:
    try:
        from bot.catalog import load_catalog

        return load_catalog().abbreviations
    except Exception:  # the grouping still works without the dictionary
        return {}


def question_key(text: str, abbreviations: Mapping[str, str] | None = None) -> str:
    """The normalised form two questions are compared on."""
    return " ".join(normalize(text, abbreviations).folded)


def group_questions(texts: Iterable[str], abbreviations: Mapping[str, str] | None = None) -> list[QuestionGroup]:
    """Cluster questions whose normalised forms are near-identical; most frequent first.

    `abbreviations` defaults to the shipped dictionary. Entries starting with "[" (placeholders
    such as "[photo]") and empty ones are skipped.
    """
    abbr = _shipped_abbreviations() if abbreviations is None else abbreviations
    counts = Counter(t.strip() for t in texts if t and t.strip() and not t.strip().startswith("["))
    keys: list[str] = []
    groups: list[QuestionGroup] = []
    exact: dict[str, QuestionGroup] = {}
    # Most frequent first; on a tie, a wording with diacritics reads better as the group's name.
    for text, n in sorted(counts.items(), key=lambda kv: (-kv[1], not has_diacritics(kv[0]), len(kv[0]), kv[0])):
        key = question_key(text, abbr)
        group = exact.get(key)
        if group is None and key and keys:
            best = process.extractOne(key, keys, scorer=fuzz.token_sort_ratio, score_cutoff=SIMILAR)
            group = groups[best[2]] if best else None
        if group is None:
            group = QuestionGroup(text)
            keys.append(key)
            groups.append(group)
        group.count += n
        group.variants.append(text)
        exact[key] = group
    return sorted(groups, key=lambda g: -g.count)
