"""The Vietnamese texts of the web chat page and of the posters (bot/content/web.yaml), checked at load.

The conversation's own sentences stay in messages.yaml (the catalog); this file holds only what the
page and the poster add around it, so that a commune can edit every word without touching code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.catalog import CONTENT_DIR, placeholder_problem, read_problem

FILE = "web.yaml"

# Every id the code uses, with the placeholders it fills in.
FIELDS: dict[str, frozenset[str]] = {
    key: frozenset(fields.split())
    for key, fields in {
        "page_title": "", "page_heading": "", "page_intro": "", "input_label": "", "input_placeholder": "",
        "send": "", "sending": "", "no_script": "", "privacy_note": "", "error_network": "", "error_rate": "",
        "error_too_long": "", "error_empty": "", "error_bad_request": "", "error_forbidden": "",
        "widget_open": "", "widget_close": "", "poster_title": "", "poster_for": "hamlet", "poster_scan": "",
        "poster_telegram": "", "poster_zalo": "", "poster_web": "", "poster_zalo_hint": "hamlet",
        "poster_steps": "", "poster_step": "k title", "poster_help": "", "poster_safety": "",
    }.items()
}


class TextsError(ValueError):
    """web.yaml is missing, unreadable, or lacks an id the code needs; the message says which."""


@dataclass(frozen=True)
class WebTexts:
    messages: dict[str, str]

    def get(self, key: str, **values: Any) -> str:
        return self.messages[key].format(**values).strip()


def load_texts(directory: Path | None = None) -> WebTexts:
    """Read web.yaml from the content directory (the shipped content by default); raise TextsError if wrong."""
    path = Path(directory or CONTENT_DIR) / FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TextsError(f"{FILE}: -: {read_problem(exc)}".replace("\n", " ")) from None
    raw = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise TextsError(f"{FILE}: -: cần các cặp mã: nội dung dưới 'messages'")
    messages = {str(k): v.strip() for k, v in raw.items() if isinstance(v, str)}
    problems = []
    for key, allowed in FIELDS.items():
        text = messages.get(key, "")
        problem = placeholder_problem(text, allowed) if text else "thiếu nội dung bắt buộc, hoặc nội dung đang trống"
        if problem:
            problems.append(f"{FILE}: {key}: {problem}")
    if problems:
        raise TextsError("\n".join(problems))
    return WebTexts(messages)
