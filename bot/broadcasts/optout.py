"""Opt-out from broadcasts: `/dung` or a typed "dừng", "hủy đăng ký", "không nhận tin nữa" (from
anywhere, whatever flow the person is in), and back in with `/batdau`.

Pure: `step` returns an Outcome (replies and an OptOutChanged event) or None; the service applies the
event to users.opted_out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from bot.conversation import Context, Flow, Outcome, State
from bot.messages import Incoming, Reply
from storage.errors import CodedError

CONTENT = Path(__file__).resolve().parent.parent / "content" / "broadcasts.yaml"
_COMMAND = re.compile(r"^/(dung|batdau)(?:@\S+)?\s*$")
_SPACES = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.!?,;:…]+$")


@dataclass(frozen=True, slots=True)
class OptOutChanged:
    opted_out: bool


@dataclass(frozen=True)
class BroadcastContent:
    messages: dict[str, str]
    phrases: frozenset[str]
    plain: frozenset[str]
    reminder_step: str = "den_dung_hen"  # the step whose message offers a reminder
    bring_topic: str = "giay_to_mang_theo"  # the FAQ topic a reminder quotes (what to bring)
    mobile_topic: str = "cap_luu_dong"  # the FAQ topic whose answer gives the next mobile team visit
    # Whole messages (folded: lower case, no diacritics) that cancel while the bot waits for a reminder's date.
    reminder_cancel_words: frozenset[str] = frozenset()

    def msg(self, key: str, **values) -> str:
        return self.messages[key].format(**values).strip()


REQUIRED = (
    "optout_done",
    "optout_already",
    "optin_done",
    "optin_already",
    # /phatthanh (bot/broadcasts/compose.py)
    "bc_refused",
    "bc_private_only",
    "bc_ask_text",
    "bc_ask_audience",
    "bc_bad_audience",
    "bc_preview",
    "bc_submitted",
    "bc_next_approval",
    "bc_next_scheduled",
    "bc_cancelled",
    "bc_confirm_word",
    "bc_confirm_again",
    "bc_text_too_long",
    "bc_summary",
    "bc_reason_unknown",
    "bc_reason_empty",
    "bc_reason_outside",
    "bc_reason_all",
    "bc_reason_changed",
    "bc_send_label",
    "bc_cancel_label",
    "bc_all_label",
    # reminders and mobile teams' visits
    "reminder_offer",
    "reminder_ask_date",
    "reminder_bad_date",
    "reminder_past_date",
    "reminder_far_date",
    "reminder_set",
    "reminder_cancelled",
    "reminder_cancel_label",
    "reminder_text",
    "reminder_text_today",
    "reminder_window_note",
    "reminder_set_soon",
    "reminder_none",
    "visit_announce",
    "visit_announce_today",
    "visit_cancelled",
    "visit_next",
    "visit_time_from",
    "visit_time_range",
    "weekly_summary",
)


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFC", text or "").lower().strip()
    return _TRAILING.sub("", _SPACES.sub(" ", text))


class BroadcastContentError(CodedError):
    """broadcasts.yaml cannot be used; `key` is the message at fault ("-" for the file), the sentence is
    operator.yaml's `code`."""

    def __init__(self, path: Path, key: str, code: str, /, **params):
        super().__init__(code, **params)
        self.file, self.key = path.name, key


@lru_cache(maxsize=4)
def load(path: Path = CONTENT) -> BroadcastContent:
    """Load and check the broadcast content; raise BroadcastContentError naming what is wrong."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    messages = {str(k): str(v) for k, v in (raw.get("messages") or {}).items()}
    missing = [k for k in REQUIRED if not messages.get(k, "").strip()]
    if missing:
        raise BroadcastContentError(path, "messages", "check_bc_missing", names=", ".join(missing))
    for key, text in messages.items():
        # One form of address: "anh/chị", never "bạn".
        found = re.search(r"\bbạn\b", text, re.I)
        if found:
            around = text[max(0, found.start() - 20) : found.end() + 20]
            raise BroadcastContentError(path, key, "check_address", word=found.group(0), around=around)
    phrases = frozenset(_norm(p) for p in raw.get("optout_phrases") or ())
    plain = frozenset(_norm(p) for p in raw.get("optout_plain") or ())
    if not phrases or any(not p.isascii() for p in plain):
        raise BroadcastContentError(path, "optout_phrases", "check_bc_optout")
    names = {key: str(raw[key]) for key in ("reminder_step", "bring_topic", "mobile_topic") if raw.get(key)}
    from bot.normalize import fold_key

    cancel_words = frozenset(fold_key(str(w)) for w in raw.get("reminder_cancel_words") or ())
    return BroadcastContent(messages, phrases, plain, reminder_cancel_words=cancel_words, **names)


def wants(text: str, content: BroadcastContent | None = None) -> bool | None:
    """True to opt out, False to opt back in, None if the message is about something else."""
    content = content or load()
    key = _norm(text)
    command = _COMMAND.match(key)
    if command:
        return command.group(1) == "dung"
    if key in content.phrases:
        return True
    # Without diacritics only: "dung" is taken as "dừng", while "đúng" (right) keeps its marks.
    return True if key.isascii() and key in content.plain else None


def step(state: State, msg: Incoming, ctx: Context, text: str, opted_out: bool) -> Outcome | None:
    """Opt out or back in, overriding any flow; None when the message is not about it."""
    choice = wants(text)
    if choice is None:
        return None
    content = load()
    if choice:
        key = "optout_already" if opted_out else "optout_done"
    else:
        key = "optin_done" if opted_out else "optin_already"
    return Outcome(state.evolve(flow=Flow.IDLE), (Reply(content.msg(key)),), (OptOutChanged(choice),))
