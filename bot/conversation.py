"""Conversation state, the context the core reads, and the events it emits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.catalog import Catalog
from bot.hamlets import HamletDirectory
from bot.matcher import Matcher
from bot.messages import Reply

if TYPE_CHECKING:
    from bot.broadcasts.compose import Desk
    from bot.broadcasts.visits import NextVisit


class Flow:
    """Names of the places a conversation can wait in."""

    IDLE = ""
    GUIDE = "guide"
    RESUME = "resume"
    OUTCOME = "outcome"
    HAMLET = "hamlet"
    CHOOSE = "choose"
    DELETE = "delete"
    # "Are you in <the hamlet of the group you wrote in>?"
    OFFER = "offer"
    # A team member writing a broadcast (/phatthanh, bot/broadcasts/compose.py).
    COMPOSE = "compose"
    # Waiting for the date of the person's appointment (bot/broadcasts/reminders.py).
    REMIND = "remind"

    ALL = (IDLE, GUIDE, RESUME, OUTCOME, HAMLET, CHOOSE, DELETE, OFFER, COMPOSE, REMIND)


@dataclass(frozen=True, slots=True)
class State:
    """What the bot remembers of one (channel, chat, user) conversation."""

    flow: str = Flow.IDLE
    step: str | None = None
    finished: bool = False
    choices: tuple[str, ...] = ()
    hamlet_asked: bool = False
    pending: str = ""
    # The broadcast being written in the COMPOSE flow: text, then scope and codes (never changed in place).
    draft: dict = field(default_factory=dict)

    def evolve(self, **changes: Any) -> "State":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "step": self.step,
            "finished": self.finished,
            "choices": list(self.choices),
            "hamlet_asked": self.hamlet_asked,
            "pending": self.pending,
            "draft": dict(self.draft),
        }

    @classmethod
    def from_dict(cls, data: Any, valid_steps: frozenset[str] | set[str] = frozenset()) -> "State":
        """Rebuild a state; anything stale or malformed falls back to a safe default."""
        if not isinstance(data, dict):
            return cls()
        step = data.get("step")
        if not isinstance(step, str) or (valid_steps and step not in valid_steps):
            step = None
        flow = data.get("flow") if data.get("flow") in Flow.ALL else Flow.IDLE
        if flow in (Flow.GUIDE, Flow.RESUME) and step is None:
            flow = Flow.IDLE
        choices = data.get("choices")
        from bot.broadcasts.compose import clean_draft

        draft = clean_draft(data.get("draft")) if flow == Flow.COMPOSE else {}
        return cls(
            flow=flow,
            step=step,
            finished=bool(data.get("finished", False)),
            choices=tuple(str(c) for c in choices) if isinstance(choices, list) else (),
            hamlet_asked=bool(data.get("hamlet_asked", False)),
            pending=str(data.get("pending") or "")[:500],
            draft=draft,
        )


@dataclass(frozen=True, slots=True)
class Context:
    """Everything the core may read besides the state and the message; no I/O behind it."""

    catalog: Catalog
    matcher: Matcher
    hamlets: HamletDirectory
    now: datetime
    user_hamlet: str | None = None
    is_officer: bool = False
    # The hamlet of the group this message came from, or, in private, of the group the person
    # last wrote in: offered instead of the whole list.
    chat_hamlet: str | None = None
    opted_out: bool = False  # the person asked for no broadcasts (/dung)
    # For a registered team member or officer, what /phatthanh may use; None for everyone else.
    desk: Desk | None = None
    # The next visit of the mobile issuing team to the hamlet of this conversation, if one is planned.
    next_visit: NextVisit | None = None
    # How many days after the person's last message the channel lets the bot write to them unasked (a
    # reminder); None: no such limit.
    reply_window_days: int | None = None
    # Whether the person has a reminder that /huynhac can still stop (read only for /huynhac and its button).
    has_reminder: bool = True


class Outcomes:
    """Values of the query log's `outcome` column."""

    ANSWERED = "answered"
    CHOICES = "choices"
    ASKED_BACK = "asked_back"
    UNANSWERED = "unanswered"
    COMMAND = "command"
    INVALID = "invalid"
    # Thanks, greetings, goodbyes, "ok": answered, and never an unanswered question.
    SMALL_TALK = "small_talk"
    # About a neighbouring service (passports, vehicles): told where it is done.
    OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True, slots=True)
class QueryHandled:
    """One row of the query log: how the message was handled."""

    outcome: str
    topic: str | None = None
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class StepReached:
    step: str


@dataclass(frozen=True, slots=True)
class GuideFinished:
    outcome: str


@dataclass(frozen=True, slots=True)
class UserHamletChosen:
    hamlet: str


@dataclass(frozen=True, slots=True)
class ChatHamletLinked:
    hamlet: str


@dataclass(frozen=True, slots=True)
class UnansweredRecorded:
    """A question the bot could not answer after all (e.g. none of the offered choices fit)."""

    text: str


@dataclass(frozen=True, slots=True)
class ForgetUser:
    """The person asked to delete everything stored about them."""


Event = QueryHandled | StepReached | GuideFinished | UserHamletChosen | ChatHamletLinked | UnansweredRecorded | ForgetUser


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the core decided: the new state, the replies to send, and the events to record."""

    state: State
    replies: tuple[Reply, ...] = ()
    events: tuple[Event, ...] = field(default=())
