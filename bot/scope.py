"""Which neighbouring service a question is about, when it is not about ours (passports, vehicles...).

The matcher decides whether a question is ours; when it is not, this names the service it is about,
from the phrases of matching.yaml, so the reply can say where that service is done.
"""

from __future__ import annotations

from bot.catalog import Catalog
from bot.normalize import normalize


def _says(padded: str, phrases) -> bool:
    return any(f" {p} " in padded for p in phrases)


def neighbour_service(catalog: Catalog, text: str) -> str | None:
    """Return the neighbour service group a question names, or None (also when it names one of ours)."""
    padded = f" {' '.join(normalize(text, catalog.abbreviations).folded)} "
    if _says(padded, catalog.matching.our_subjects):
        return None
    for group, phrases in catalog.matching.neighbour_services.items():
        if group in catalog.services and _says(padded, phrases):
            return group
    return None
