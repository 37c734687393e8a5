"""The registry of communes and hamlets as the core sees it, with fuzzy lookup by name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from bot.normalize import fold_key

CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# Words people put before a hamlet's name; they carry no information for matching.
KIND_WORDS = {"thon", "to", "dan", "pho", "tdp", "xom", "ban", "ap", "khu", "so", "lang", "phuong", "xa", "o"}


@dataclass(frozen=True, slots=True)
class Hamlet:
    code: str
    name: str
    commune: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}, {self.commune}" if self.commune else self.name


def _core_words(text: str) -> str:
    words = [w for w in fold_key(text).split() if w not in KIND_WORDS]
    return " ".join(words)


class HamletDirectory:
    """An immutable snapshot of the hamlets, for lookups inside the pure core."""

    def __init__(self, hamlets: list[Hamlet] | tuple[Hamlet, ...] = ()):
        self.hamlets = tuple(hamlets)
        self.by_code = {h.code.lower(): h for h in self.hamlets}
        self._keys = [_core_words(h.name) or fold_key(h.name) for h in self.hamlets]
        self._communes: tuple[tuple[str, tuple[Hamlet, ...]], ...] | None = None

    def communes(self) -> tuple[tuple[str, tuple[Hamlet, ...]], ...]:
        """Return each commune with its hamlets, in the registry's order (grouped once: the directory never changes)."""
        if self._communes is None:
            grouped: dict[str, list[Hamlet]] = {}
            for hamlet in self.hamlets:
                grouped.setdefault(hamlet.commune, []).append(hamlet)
            self._communes = tuple((commune, tuple(hamlets)) for commune, hamlets in grouped.items())
        return self._communes

    def commune_of(self, code: str) -> tuple[str, tuple[Hamlet, ...]] | None:
        """Return the commune (with its hamlets) of the hamlet `code`."""
        hamlet = self.get(code)
        if hamlet is None:
            return None
        return hamlet.commune, tuple(h for h in self.hamlets if h.commune == hamlet.commune)

    def search(self, text: str, limit: int = 12) -> tuple[Hamlet, ...]:
        """Return the hamlets whose name (or commune) has every typed word, numbers whole, other words
        as the start of a word ("đông" finds "Đông Sơn" and "Đông Hòa"); up to `limit`."""
        words = _core_words(text).split()
        if not words:
            return ()
        found = []
        for hamlet, key in zip(self.hamlets, self._keys):
            names = f"{key} {fold_key(hamlet.commune)}".split()
            if all(any(n == w if w.isdigit() else n.startswith(w) for n in names) for w in words):
                found.append(hamlet)
        return tuple(found[:limit])

    def __len__(self) -> int:
        return len(self.hamlets)

    def get(self, code: str | None) -> Hamlet | None:
        return self.by_code.get(code.lower()) if code else None

    def find(self, text: str) -> Hamlet | None:
        """Return the hamlet a typed name or code means, or None when unsure."""
        text = text.strip()
        if not text:
            return None
        if hamlet := self.get(text):
            return hamlet
        query = _core_words(text)
        if not query:
            return None
        numbers = re.findall(r"\d+", query)
        pool = [
            i for i, key in enumerate(self._keys)
            if re.findall(r"\d+", key) == numbers or not numbers
        ]
        if not pool:
            return None
        keys = [self._keys[i] for i in pool]
        exact = [pool[j] for j, key in enumerate(keys) if key == query]
        if len(exact) == 1:
            return self.hamlets[exact[0]]
        found = process.extract(query, keys, scorer=fuzz.ratio, limit=2, score_cutoff=75)
        if not found:
            return None
        if len(found) > 1 and found[0][1] - found[1][1] < 5:
            return None
        return self.hamlets[pool[found[0][2]]]
