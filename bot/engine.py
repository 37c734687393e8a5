"""The functional core: `step(state, message, context) -> Outcome`, with no I/O and no await."""

from __future__ import annotations

import re
import unicodedata

from bot.broadcasts import compose, optout, reminders
from bot.conversation import Context, Flow, Outcome, Outcomes, QueryHandled, State
from bot.flows import faq, guide, hamlet, menu
from bot import replies
from bot.flows.common import menu_choice, respond
from bot.messages import ChatType, Choice, Incoming, Link, Reply
from bot.normalize import fold_key

MAX_INPUT = 4000
_JUMP = re.compile(r"^(?:buoc|b)\s*(\d{1,2})$")
_COMMAND = re.compile(r"^/([a-z_]+)(?:@\S+)?(?:\s+(.*))?$", re.S)


def clean_text(text: str) -> str:
    """Drop control characters (keeping new lines) and surrounding white space."""
    text = unicodedata.normalize("NFC", text or "")
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C").strip()


def _press_from_number(text: str, state: State) -> str | None:
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if text.isdecimal() and state.choices:
        n = int(text)
        if 1 <= n <= len(state.choices):
            return state.choices[n - 1]
    return None


def _press(state: State, msg: Incoming, ctx: Context, payload: str) -> Outcome:
    """Interpret a pressed button; unknown or stale payloads get the menu back."""
    c = ctx.catalog
    kind, _, arg = payload.partition(":")
    private = msg.chat_type is ChatType.PRIVATE
    if kind == "m" and not arg:
        return menu.show_menu(state, msg, ctx)
    if kind == "q" and not arg:
        return respond(state, [Reply(c.msg("faq_prompt"))])
    if kind == "p" and not arg:
        return menu.show_info(state, ctx, "portal")
    if kind == "h" and not arg:
        return menu.show_info(state, ctx, "help")
    if kind == "pm" and not arg:
        return respond(state, [Reply(c.msg("group_private_hint"))])
    if kind in ("g", "s") and not private:
        return _group_guide(state, ctx)
    if kind == "g" and not arg:
        return guide.enter(state, ctx)
    if kind == "g" and arg[:2] in ("n:", "b:", "s:"):
        # A step button carries the step it was shown on ("g:n:<slug>"): act from there.
        action, at = arg[0], arg[2:]
        if at not in c.step_index:
            return _stale(state, msg, ctx)
        state, arg = state.evolve(step=at, finished=False, flow=Flow.GUIDE), action
    if kind == "g" and arg in ("n", "c") and state.step:
        return guide.move(state, ctx, +1 if arg == "n" else 0)
    if kind == "g" and arg == "b" and state.step:
        return guide.move(state, ctx, -1)
    if kind == "g" and arg == "r":
        return guide.show_step(state, ctx, c.steps[0].slug)
    if kind == "g" and arg == "s" and state.step:
        return guide.stuck(state, ctx)
    if kind == "s" and arg in c.step_index:
        return guide.show_step(state, ctx, arg)
    if kind == "f" and arg == "-":
        return faq.none_of_these(state, ctx)
    if kind == "f" and arg in c.topics:
        return faq.answer_topic(state, ctx, arg, msg.chat_type)
    if kind == "fm" and arg in c.topics:
        return faq.answer_more(state, ctx, arg, msg.chat_type)
    if kind == "t" and private and not arg:
        return hamlet.prompt(state, ctx)
    if kind == "t" and private and arg:
        return hamlet.choose(state, msg, ctx, arg)
    if kind == "o" and arg in guide.OUTCOMES and state.flow == Flow.OUTCOME:
        return guide.record_outcome(state, ctx, arg)
    if kind == "x" and arg in ("yes", "no") and private:
        return menu.answer_delete(state, ctx, arg)
    if kind == compose.PREFIX:
        pressed = compose.press(state, msg, ctx, arg)
        if pressed is not None:
            return pressed
    if kind == reminders.PREFIX:
        pressed = reminders.press(state, msg, ctx, arg)
        if pressed is not None:
            return pressed
    return _stale(state, msg, ctx)


def _stale(state: State, msg: Incoming, ctx: Context) -> Outcome:
    """Answer a button that no longer means anything with the current menu."""
    out = menu.show_menu(state.evolve(flow=Flow.IDLE), msg, ctx, prefix=ctx.catalog.msg("stale_button"))
    return Outcome(out.state, out.replies, (QueryHandled(Outcomes.INVALID),))


def _group_guide(state: State, ctx: Context) -> Outcome:
    """The guide is given in private: one tap opens the private chat, with the group's hamlet."""
    c = ctx.catalog
    hamlet = ctx.hamlets.get(ctx.chat_hamlet)
    link = Link(private_start=f"h_{hamlet.code}" if hamlet else "g", instead=c.msg("group_private_how"))
    return respond(state, [Reply(c.msg("group_private_hint"), (Choice(c.msg("group_private_button"), "pm", link),))])


def _start(state: State, msg: Incoming, ctx: Context, arg: str) -> Outcome:
    c = ctx.catalog
    if msg.chat_type is ChatType.PRIVATE and arg.startswith("h_"):
        return hamlet.from_start_payload(state, msg, ctx, arg[2:])
    welcome = Reply(c.msg("welcome", name=msg.sender_name or c.msg("default_name")))
    if msg.chat_type is ChatType.PRIVATE:
        if state.step and not state.finished and c.step_index.get(state.step, 0) > 0:
            out = guide.enter(state, ctx)
            return Outcome(out.state, (welcome, *out.replies), out.events)
        if arg == "g":
            out = guide.enter(state, ctx)
            return Outcome(out.state, (welcome, *out.replies), out.events)
        if not state.hamlet_asked and not ctx.user_hamlet and len(ctx.hamlets):
            return hamlet.prompt(state, ctx, (welcome,))
    return respond(state.evolve(flow=Flow.IDLE), [welcome, menu.menu_reply(state, ctx, msg.chat_type)])


def _command(state: State, msg: Incoming, ctx: Context, name: str, arg: str) -> Outcome | None:
    private = msg.chat_type is ChatType.PRIVATE
    if name == "start":
        return _start(state, msg, ctx, arg.strip())
    if name in ("menu", "help"):
        return menu.show_menu(state, msg, ctx)
    if name == "huongdan":
        return guide.enter(state, ctx) if private else _group_guide(state, ctx)
    if name == "xoa":
        return menu.ask_delete(state, ctx) if private else _group_guide(state, ctx)
    if name == "thon":
        return hamlet.link_group(state, msg, ctx, arg.strip())
    if name == "phatthanh":
        return compose.start(state, msg, ctx)
    if name == "huynhac" and private:
        return reminders.cancel(state, ctx)
    if name == "cauhoi" and arg.strip():
        return None
    return menu.show_menu(state, msg, ctx)


# Whole messages that steer wherever they come, in order of precedence.
STEERING = ("greeting", "greeting_kin", "menu", "guide", "how_to", "next", "back", "thanks", "goodbye", "ack")
SMALL_TALK = {"thanks": "smalltalk_thanks", "goodbye": "smalltalk_goodbye", "ack": "smalltalk_ack"}
# Buttons that read further: the rest of an answer, the next page of hamlets.
MORE_PAYLOADS = ("fm:", "t:p:")
OUTCOME_ANSWERS = {f"answer.outcome_{o}": o for o in guide.OUTCOMES}


def _answer(state: State, msg: Incoming, ctx: Context, text: str) -> Outcome | None:
    """Read a typed answer to the question the bot just asked ("rồi", "chưa nộp", "xóa đi")."""
    c = ctx.catalog
    more = next((p for p in state.choices if p.startswith(MORE_PAYLOADS)), None)
    if more and replies.kind_of(c, text, ("answer.more",)):
        # "xem thêm" typed instead of pressed (or its number) reads on, in a group too.
        return _press(state, msg, ctx, more)
    if msg.chat_type is not ChatType.PRIVATE:
        return None
    if state.flow == Flow.OUTCOME and state.step:
        kind = replies.kind_of(c, text, tuple(OUTCOME_ANSWERS))
        return guide.record_outcome(state, ctx, OUTCOME_ANSWERS[kind]) if kind else None
    if state.flow == Flow.DELETE:
        kind = replies.kind_of(c, text, ("answer.confirm", "answer.decline"))
        return menu.answer_delete(state, ctx, "yes" if kind == "answer.confirm" else "no") if kind else None
    if state.flow == Flow.RESUME and replies.kind_of(c, text, ("answer.restart",)):
        return guide.show_step(state, ctx, c.steps[0].slug)
    if state.flow == Flow.OFFER:
        kind = replies.kind_of(c, text, ("answer.confirm", "answer.decline"))
        return hamlet.answer_offer(state, msg, ctx, kind == "answer.confirm") if kind else None
    return None


def _small_talk(state: State, ctx: Context, kind: str) -> Outcome:
    """A short friendly reply; the guide's place is kept and offered back."""
    c = ctx.catalog
    choices = [menu_choice(ctx)]
    if state.step and not state.finished and state.flow in (Flow.GUIDE, Flow.RESUME):
        k = c.step_number(state.step)
        choices.insert(0, Choice(c.msg("step_return", k=k, n=len(c.steps)), f"s:{state.step}"))
    keep = Flow.GUIDE if state.flow in (Flow.GUIDE, Flow.RESUME) else Flow.IDLE
    reply = Reply(c.msg(SMALL_TALK[kind]), tuple(choices))
    return respond(state.evolve(flow=keep), [reply], log=QueryHandled(Outcomes.SMALL_TALK))


def _text(state: State, msg: Incoming, ctx: Context, text: str) -> Outcome:
    """Interpret typed text: answers to the bot's question, steering words, the flow's input, the FAQ."""
    private = msg.chat_type is ChatType.PRIVATE
    words = ctx.catalog.keywords
    answered = _answer(state, msg, ctx, text)
    if answered is not None:
        return answered
    kind = replies.kind_of(ctx.catalog, text, STEERING)
    if kind in ("greeting", "greeting_kin"):
        return _start(state, msg, ctx, "")
    if kind == "menu":
        return menu.show_menu(state, msg, ctx)
    if kind in ("guide", "how_to"):
        return guide.enter(state, ctx) if private else _group_guide(state, ctx)
    jump = _JUMP.match(fold_key(text))
    if jump:
        return guide.jump(state, ctx, int(jump.group(1))) if private else _group_guide(state, ctx)
    if private and state.step and not state.finished and state.flow in (Flow.GUIDE, Flow.RESUME):
        # Inside the guide "ok", "được rồi" mean "done, next".
        if kind in ("next", "ack"):
            return guide.move(state, ctx, +1 if state.flow == Flow.GUIDE else 0)
        if kind == "back":
            return guide.move(state, ctx, -1)
    if private and state.step and state.flow == Flow.OUTCOME:
        # At the last question "tiếp" or "ok" asks it again and "quay lại" shows the last step.
        if kind in ("next", "ack"):
            return guide.ask_outcome(state, ctx)
        if kind == "back":
            return guide.show_step(state, ctx, state.step)
    if kind in SMALL_TALK:
        return _small_talk(state, ctx, kind)
    if kind in ("next", "back"):
        # Steering outside the guide: open it where the person is.
        return guide.enter(state, ctx) if private else _group_guide(state, ctx)
    if private and state.flow == Flow.HAMLET and fold_key(text) in words["skip"]:
        return hamlet.choose(state, msg, ctx, "-")
    if private and state.flow == Flow.HAMLET:
        out = hamlet.typed(state, msg, ctx, text)
        if out is not None:
            return out
        state = state.evolve(flow=Flow.IDLE)
    if state.flow in (Flow.CHOOSE, Flow.DELETE, Flow.OUTCOME, Flow.RESUME, Flow.OFFER):
        state = state.evolve(flow=Flow.IDLE)
    return faq.ask(state, msg, ctx, text)


def step(state: State, msg: Incoming, ctx: Context) -> Outcome:
    """Handle one message: the only entry point of the conversation core."""
    c = ctx.catalog
    if msg.chat_type is ChatType.GROUP and not msg.addressed:
        return Outcome(state)
    text = clean_text(msg.text)
    if state.flow == Flow.COMPOSE and not msg.payload:
        # A team member writing a broadcast: the text is theirs, not a question (commands leave the flow).
        written = compose.typed(state, msg, ctx, text)
        if written is not None:
            return written
        state = state.evolve(flow=Flow.IDLE, draft={})
    # Opting out of broadcasts works from anywhere, whatever flow the person is in (waiting for a date too).
    # (Waiting for a date ends there: the date question is over.)
    kept = state.evolve(flow=Flow.IDLE) if state.flow == Flow.REMIND else state
    stop = None if msg.payload else optout.step(kept, msg, ctx, text, ctx.opted_out)
    if stop is not None:
        return stop
    if state.flow == Flow.REMIND and not msg.payload:
        dated = reminders.typed(state, msg, ctx, text)
        if dated is not None:
            return dated
        state = state.evolve(flow=Flow.IDLE)
    if msg.payload:
        return _press(state, msg, ctx, msg.payload)
    if len(text) > MAX_INPUT:
        return respond(state, [Reply(c.msg("too_long"))], log=QueryHandled(Outcomes.INVALID))
    if not any(ch.isalnum() for ch in text):
        return respond(state, [Reply(c.msg("bad_input"))], log=QueryHandled(Outcomes.INVALID))
    pressed = _press_from_number(text, state)
    if pressed:
        return _press(state, msg, ctx, pressed)
    if text.isdecimal() and len(text) <= 2:
        # A choice number where none (or not that many) is offered: an old list, not a question.
        return _stale(state, msg, ctx)
    command = _COMMAND.match(text.lower()) if text.startswith("/") else None
    if command:
        # The argument may follow a space or a new line ("/thon\nTổ dân phố 3").
        parts = text.split(None, 1)
        arg = parts[1] if len(parts) > 1 else ""
        out = _command(state, msg, ctx, command.group(1), arg)
        if out is not None:
            return out
        text = arg
    return _text(state, msg, ctx, text)
