"""`/phatthanh`: a digital-tech team member writes a broadcast in a private chat with the bot.

text → audience → preview → confirm. Pure, like every flow: `start`, `typed` and `press` return an
Outcome; the confirmation is a `BroadcastComposed` event, which the service turns into a broadcast
(bot/broadcasts/workflow.py checks the permissions again there and says whether it awaits approval).
What the flow may know of the registry and of the recipients comes in a `Desk`, which the service loads
only for a registered team member or officer; without one, the person is refused politely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.broadcasts.model import MAX_TEXT, check_text
from bot.broadcasts.optout import load
from bot.conversation import Context, Flow, Outcome, State
from bot.flows.common import respond
from bot.messages import ChatType, Choice, Incoming, Reply
from bot.normalize import fold_key

PREFIX = "bc"
EVERYWHERE = "*"
MAX_CODES = 200
_SPLIT = re.compile(r"[\s,;]+")
_ALL_WORDS = {"tat ca", "ca tinh", "tat ca cac xa"}


@dataclass(frozen=True, slots=True)
class BroadcastComposed:
    """The team member confirmed: make it a broadcast (scope and codes as in model.Audience)."""

    text: str
    scope: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Desk:
    """What `/phatthanh` may use: where the person may broadcast, the registry, and how many each hamlet reaches."""

    communes: frozenset[str]  # commune codes the person may target; "*": every commune (officers)
    commune_names: dict[str, str] = field(default_factory=dict)  # code -> name
    hamlet_communes: dict[str, str] = field(default_factory=dict)  # hamlet code -> commune code
    hamlet_names: dict[str, str] = field(default_factory=dict)  # hamlet code -> name
    reach: dict[str, tuple[int, int]] = field(default_factory=dict)  # hamlet code -> (groups, subscribers)

    @property
    def everywhere(self) -> bool:
        return EVERYWHERE in self.communes

    def covers(self, commune: str | None) -> bool:
        return self.everywhere or (commune is not None and commune in self.communes)

    def own_communes(self) -> list[str]:
        """The communes offered as buttons: the person's own, or every commune for an officer."""
        codes = sorted(self.commune_names) if self.everywhere else sorted(c for c in self.communes if c in self.commune_names)
        return codes


def _msg(key: str, **values) -> str:
    return load().msg(key, **values)


def _cancel_choice() -> Choice:
    return Choice(_msg("bc_cancel_label"), f"{PREFIX}:x")


def start(state: State, msg: Incoming, ctx: Context) -> Outcome:
    """`/phatthanh`: refuse who may not broadcast; in private, ask for the text."""
    desk = ctx.desk
    if desk is None or not desk.communes:
        return respond(state, [Reply(_msg("bc_refused"))])
    if msg.chat_type is not ChatType.PRIVATE:
        return respond(state, [Reply(_msg("bc_private_only"))])
    return respond(state.evolve(flow=Flow.COMPOSE, draft={}), [Reply(_msg("bc_ask_text"), (_cancel_choice(),))])


def cancel(state: State) -> Outcome:
    return respond(state.evolve(flow=Flow.IDLE, draft={}), [Reply(_msg("bc_cancelled"))], log=None)


def typed(state: State, msg: Incoming, ctx: Context, text: str) -> Outcome | None:
    """A message while composing; None for a command other than /huy (it leaves the flow)."""
    desk = ctx.desk
    if desk is None or msg.chat_type is not ChatType.PRIVATE:
        return None
    if text.startswith("/"):
        command = text.split(None, 1)[0].split("@")[0].lower()
        return cancel(state) if command == "/huy" else None
    draft = dict(state.draft)
    if "text" not in draft:
        if not text.strip():  # a photo or a sticker: text is needed
            return _say(state, Reply(_msg("bc_ask_text"), (_cancel_choice(),)))
        try:
            draft["text"] = check_text(text)
        except ValueError:
            return _say(state, Reply(_msg("bc_text_too_long", limit=MAX_TEXT)), Reply(_msg("bc_ask_text"), (_cancel_choice(),)))
        return _ask_audience(state.evolve(draft=draft), desk)
    if "scope" not in draft:
        return _audience_typed(state, desk, text)
    if fold_key(text) == fold_key(_msg("bc_confirm_word")):
        return confirm(state)
    return _say(state, Reply(_msg("bc_confirm_again"), _preview_choices()))


def _say(state: State, *replies: Reply) -> Outcome:
    # What a team member types here is a broadcast being written, not a question: not in the query log.
    return respond(state, list(replies), log=None)


def press(state: State, msg: Incoming, ctx: Context, arg: str) -> Outcome | None:
    """A button of the flow (bc:c:<commune>, bc:all, bc:send, bc:x); None when it no longer applies."""
    desk = ctx.desk
    if arg == "x":
        return cancel(state) if state.flow == Flow.COMPOSE else None
    if desk is None or state.flow != Flow.COMPOSE or msg.chat_type is not ChatType.PRIVATE or "text" not in state.draft:
        return None
    if arg == "send" and "scope" in state.draft:
        return confirm(state)
    if "scope" in state.draft:
        return None
    if arg == "all":
        return _audience(state, desk, "all", ())
    if arg.startswith("c:"):
        return _audience(state, desk, "communes", (arg[2:],))
    return None


def confirm(state: State) -> Outcome:
    draft = state.draft
    event = BroadcastComposed(draft["text"], draft["scope"], tuple(draft.get("codes") or ()))
    # The reply (the broadcast's number, whether it awaits approval) is added by the service.
    return Outcome(state.evolve(flow=Flow.IDLE, draft={}, choices=()), (), (event,))


def _ask_audience(state: State, desk: Desk, prefix: tuple[Reply, ...] = ()) -> Outcome:
    own = desk.own_communes()
    choices = [Choice(desk.commune_names.get(code, code), f"{PREFIX}:c:{code}") for code in own[:8]]
    if desk.everywhere:
        choices.append(Choice(_msg("bc_all_label"), f"{PREFIX}:all"))
    choices.append(_cancel_choice())
    examples = own[:1] + [h for h, c in sorted(desk.hamlet_communes.items()) if c in own[:1]][:1]
    example = ", ".join(examples) or "xa_a"
    return _say(state, *prefix, Reply(_msg("bc_ask_audience", example=example), tuple(choices)))


def _audience_typed(state: State, desk: Desk, text: str) -> Outcome:
    if fold_key(text) in _ALL_WORDS:
        return _audience(state, desk, "all", ())
    raw = [c for c in _SPLIT.split(text.strip()) if c][: MAX_CODES + 1]
    communes, hamlets, unknown = [], [], []
    for code in raw:
        for candidate in (code, code.lower()):
            if candidate in desk.commune_names:
                communes.append(candidate)
                break
            if candidate in desk.hamlet_communes:
                hamlets.append(candidate)
                break
        else:
            unknown.append(code)
    if unknown or not raw or len(raw) > MAX_CODES:
        reason = _msg("bc_reason_unknown", codes=", ".join(unknown[:5])[:120]) if unknown else _msg("bc_reason_empty")
        return _say(state, Reply(_msg("bc_bad_audience", reason=reason), (_cancel_choice(),)))
    if hamlets and communes:
        # Mixed: the communes are taken as all their hamlets.
        hamlets += [h for h, c in desk.hamlet_communes.items() if c in communes and h not in hamlets]
        return _audience(state, desk, "hamlets", tuple(dict.fromkeys(hamlets)))
    if hamlets:
        return _audience(state, desk, "hamlets", tuple(dict.fromkeys(hamlets)))
    return _audience(state, desk, "communes", tuple(dict.fromkeys(communes)))


def _audience(state: State, desk: Desk, scope: str, codes: tuple[str, ...]) -> Outcome:
    """Check the audience against what the person may target, then show the preview."""
    if scope == "all":
        if not desk.everywhere:
            return _say(state, Reply(_msg("bc_bad_audience", reason=_msg("bc_reason_all")), (_cancel_choice(),)))
        hamlets, outside = list(desk.hamlet_communes), []
    elif scope == "communes":
        unknown = [c for c in codes if c not in desk.commune_names]
        if unknown:
            reason = _msg("bc_reason_unknown", codes=", ".join(unknown[:5])[:120])
            return _say(state, Reply(_msg("bc_bad_audience", reason=reason), (_cancel_choice(),)))
        hamlets = [h for h, c in desk.hamlet_communes.items() if c in codes]
        outside = [c for c in codes if not desk.covers(c)]
    else:
        hamlets = list(codes)
        outside = [h for h in codes if not desk.covers(desk.hamlet_communes.get(h))]
    if outside:
        reason = _msg("bc_reason_outside", codes=", ".join(outside[:5])[:120])
        return _say(state, Reply(_msg("bc_bad_audience", reason=reason), (_cancel_choice(),)))
    draft = {**state.draft, "scope": scope, "codes": list(codes)}
    groups = sum(desk.reach.get(h, (0, 0))[0] for h in hamlets)
    people = sum(desk.reach.get(h, (0, 0))[1] for h in hamlets)
    where = _where(desk, scope, codes)
    summary = _msg("bc_summary", where=where, groups=groups, people=people)
    preview = Reply(_msg("bc_preview", text=draft["text"], summary=summary), _preview_choices())
    return _say(state.evolve(draft=draft), preview)


def _where(desk: Desk, scope: str, codes: tuple[str, ...]) -> str:
    if scope == "all":
        return _msg("bc_all_label").lower()
    names = [(desk.commune_names if scope == "communes" else desk.hamlet_names).get(c, c) for c in codes]
    shown = ", ".join(names[:6]) + ("…" if len(names) > 6 else "")
    return shown


def _preview_choices() -> tuple[Choice, ...]:
    return (Choice(_msg("bc_send_label"), f"{PREFIX}:send"), _cancel_choice())


def clean_draft(data: object) -> dict:
    """A stored draft, checked (anything malformed is dropped)."""
    if not isinstance(data, dict):
        return {}
    out: dict = {}
    text = data.get("text")
    if isinstance(text, str) and 0 < len(text) <= MAX_TEXT:
        out["text"] = text
        scope = data.get("scope")
        codes = data.get("codes")
        if scope in ("all", "communes", "hamlets") and isinstance(codes, list) and len(codes) <= MAX_CODES:
            if all(isinstance(c, str) and len(c) <= 40 for c in codes) and (scope == "all") == (not codes):
                out["scope"] = scope
                out["codes"] = list(codes)
    return out
