"""Group near-duplicate unanswered questions so editors can turn them into FAQ examples.

Questions are compared the way the matcher reads them (folded, stretched letters collapsed,
abbreviations expanded), so "cap lai cccd bn" and "cấp lại căn cước công dân bao nhiêu" meet.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Mapping

from rapidfuzz import fuzz, process

from bot.normalize import has_diacritics, normalize
from storage import questions

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


def sorted_key(key: str) -> str:
    """The form groups are compared on: token_sort_ratio is the plain ratio of the sorted tokens."""
    return " ".join(sorted(key.split()))


class Grouper:
    """Puts each new wording of a low-confidence question in a group of near-duplicates, once.

    The wordings are counted as they are logged (storage/stats.py); this assigns the ones not grouped
    yet, comparing each with the groups found so far the way `group_questions` does, and keeps the
    groups' keys in memory between runs (reading only the groups other processes added since). One
    process groups at a time (a lock in the database); a page that finds the lock taken reads the
    groups as they are, and a wording not grouped yet shows on its own until the next run.
    """

    def __init__(self, abbreviations: Mapping[str, str] | None = None):
        self._abbr = abbreviations
        self._keys: list[str] = []
        self._ids: list[int] = []
        self._exact: dict[str, int] = {}
        self._last_id = 0
        self._running = asyncio.Lock()

    def _add(self, group_id: int, key: str) -> None:
        self._keys.append(key)
        self._ids.append(group_id)
        self._exact.setdefault(key, group_id)
        self._last_id = max(self._last_id, group_id)

    async def _refresh(self, session) -> None:
        for group_id, key in await questions.groups_after(session, self._last_id):
            self._add(group_id, key)
        top, live = await questions.groups_state(session)
        if live != len(self._keys):  # groups were retired (or this copy is stale): read them all again
            self._keys, self._ids, self._exact, self._last_id = [], [], {}, 0
            for group_id, key in await questions.groups_after(session, 0):
                self._add(group_id, key)
        self._last_id = max(self._last_id, top)

    def _place(self, key: str) -> int | None:
        found = self._exact.get(key)
        if found is None and key and self._keys:
            best = process.extractOne(key, self._keys, scorer=fuzz.ratio, score_cutoff=SIMILAR)
            found = self._ids[best[2]] if best else None
            if found is not None:  # the same form again (another spelling of it) is then found at once
                self._exact[key] = found
        return found

    async def run(self, db, limit: int, *, wait: bool = False) -> int:
        """Group up to `limit` new wordings (most asked first); return how many. Without `wait`, gives
        up at once when another run (this process or another) is grouping."""
        if self._running.locked() and not wait:
            return 0
        async with self._running:
            async with db.transaction() as session:  # the usual case, read only: nothing new
                if not await questions.any_ungrouped(session):
                    return 0
            async with db.writing() as session:
                if not await questions.try_lock(session):
                    return 0
                return await self._group(session, limit)

    async def _group(self, session, limit: int) -> int:
        todo = await questions.ungrouped(session, limit)
        if not todo:
            await questions.copy_groups(session)
            return 0
        await self._refresh(session)
        abbr = _shipped_abbreviations() if self._abbr is None else self._abbr
        new_groups, assigned = [], []
        for wording_id, text_hash, text in todo:
            key = question_key(text, abbr)
            compared = sorted_key(key)
            group_id = self._place(compared)
            if group_id is None:
                group_id = self._last_id + 1
                self._add(group_id, compared)
                new_groups.append((group_id, compared))
            assigned.append((wording_id, text_hash, key, group_id))
        await questions.save(session, new_groups, assigned)
        return len(assigned)

    async def catch_up(self, db, batch: int = 2000) -> int:
        """Group every wording not grouped yet, batch after batch (at start, and in the background)."""
        total = 0
        while True:
            n = await self.run(db, batch, wait=True)
            total += n
            if n < batch:
                return total
