"""Choosing a person's hamlet, and linking a group to its hamlet."""

from __future__ import annotations

from bot.conversation import ChatHamletLinked, Context, Flow, Outcome, State, UserHamletChosen
from bot.flows.common import menu_choice, respond
from bot.flows.menu import menu_reply
from bot.hamlets import CODE_RE
from bot.matcher import Decision
from bot.messages import ChatType, Choice, Incoming, Reply

MAX_LISTED = 12  # enough for most communes; more are typed by name


def prompt(state: State, ctx: Context, prefix: tuple[Reply, ...] = ()) -> Outcome:
    """Ask once which hamlet the person lives in; skipping is always possible."""
    c = ctx.catalog
    if not len(ctx.hamlets):
        return respond(state, [*prefix, Reply(c.msg("hamlet_none"), (menu_choice(ctx),))])
    choices = [Choice(h.name, f"t:{h.code}") for h in ctx.hamlets.hamlets[:MAX_LISTED]]
    choices.append(Choice(c.msg("hamlet_skip"), "t:-"))
    new = state.evolve(flow=Flow.HAMLET, hamlet_asked=True)
    return respond(new, [*prefix, Reply(c.msg("hamlet_prompt"), tuple(choices))])


def choose(state: State, msg: Incoming, ctx: Context, code: str) -> Outcome:
    """Record the pressed hamlet (or the skip) and show the menu."""
    c = ctx.catalog
    new = state.evolve(flow=Flow.IDLE, hamlet_asked=True)
    if code == "-":
        return respond(new, [Reply(c.msg("hamlet_skipped")), menu_reply(new, ctx, msg.chat_type)])
    hamlet = ctx.hamlets.get(code)
    if hamlet is None:
        return prompt(state, ctx, (Reply(c.msg("stale_button")),))
    return respond(
        new,
        [Reply(c.msg("hamlet_set", hamlet=hamlet.label)), menu_reply(new, ctx, msg.chat_type)],
        UserHamletChosen(hamlet.code),
    )


def typed(state: State, msg: Incoming, ctx: Context, text: str) -> Outcome | None:
    """Try a typed hamlet name; None means it was not a hamlet name (treat it as a question)."""
    hamlet = ctx.hamlets.find(text)
    if hamlet:
        return choose(state, msg, ctx, hamlet.code)
    # A short text is read as a mistyped name, unless the FAQ recognises it ("mất thẻ", "otp"):
    # the hamlet question must never keep a question from its answer. A weak "choose" is not
    # enough, since place names often look a little like some topic.
    if len(text.split()) <= 4 and ctx.matcher.match(text).decision not in (Decision.ANSWER, Decision.ASK_BACK):
        c = ctx.catalog
        out = prompt(state, ctx)
        first = Reply(c.msg("hamlet_not_found", text=text[:60]))
        return Outcome(out.state, (first, *out.replies), out.events)
    return None


def from_start_payload(state: State, msg: Incoming, ctx: Context, code: str) -> Outcome:
    """Set the hamlet from a `h_<code>` start payload, or explain a wrong code."""
    c = ctx.catalog
    hamlet = ctx.hamlets.get(code) if CODE_RE.match(code) else None
    welcome = Reply(c.msg("welcome", name=msg.sender_name or c.msg("default_name")))
    if hamlet is None:
        return prompt(state, ctx, (welcome, Reply(c.msg("hamlet_bad_code"))))
    new = state.evolve(flow=Flow.IDLE, hamlet_asked=True)
    return respond(
        new,
        [welcome, Reply(c.msg("hamlet_set", hamlet=hamlet.label)), menu_reply(new, ctx, msg.chat_type)],
        UserHamletChosen(hamlet.code),
    )


def link_group(state: State, msg: Incoming, ctx: Context, arg: str) -> Outcome:
    """Link a group to a hamlet; only group admins and registered officers may."""
    c = ctx.catalog
    if msg.chat_type is not ChatType.GROUP:
        return respond(state, [Reply(c.msg("group_only"))])
    if not (ctx.is_officer):
        return respond(state, [Reply(c.msg("group_hamlet_refused"))])
    if not arg:
        return respond(state, [Reply(c.msg("group_hamlet_usage"))])
    hamlet = ctx.hamlets.find(arg)
    if hamlet is None:
        return respond(state, [Reply(c.msg("hamlet_not_found", text=arg[:60])), Reply(c.msg("group_hamlet_usage"))])
    return respond(state, [Reply(c.msg("group_hamlet_set", hamlet=hamlet.label))], ChatHamletLinked(hamlet.code))
