"""Choosing a person's hamlet, and linking a group to its hamlet."""

from __future__ import annotations

from bot.conversation import ChatHamletLinked, Context, Flow, Outcome, State, UserHamletChosen
from bot.flows.common import menu_choice, respond
from bot.flows.menu import menu_reply
from bot.hamlets import CODE_RE, Hamlet
from bot.matcher import Decision
from bot.messages import ChatType, Choice, Incoming, Reply

MAX_LISTED = 12  # one commune with at most this many hamlets is listed whole
PAGE = 9  # hamlets a page; with "more", "other commune" and "skip" that is 12 buttons (Telegram's limit here)


def prompt(state: State, ctx: Context, prefix: tuple[Reply, ...] = (), offer: bool = True) -> Outcome:
    """Ask once which hamlet the person lives in; skipping is always possible.

    A hamlet known from the group the person wrote in is offered first; several communes are asked
    for first; a long list is paged. Any hamlet can also be typed, in part."""
    c = ctx.catalog
    if not len(ctx.hamlets):
        return respond(state, [*prefix, Reply(c.msg("hamlet_none"), (menu_choice(ctx),))])
    guessed = ctx.hamlets.get(ctx.chat_hamlet) if offer else None
    if guessed is not None:
        return _offer(state, ctx, guessed, prefix)
    communes = ctx.hamlets.communes()
    new = state.evolve(flow=Flow.HAMLET, hamlet_asked=True)
    if len(communes) > 1:
        choices = [Choice(name or c.msg("hamlet_other_commune"), f"t:c:{hamlets[0].code}") for name, hamlets in communes]
        choices.append(Choice(c.msg("hamlet_skip"), "t:-"))
        return respond(new, [*prefix, Reply(c.msg("hamlet_commune_prompt"), tuple(choices))])
    return _page(new, ctx, communes[0], 0, prefix)


def _offer(state: State, ctx: Context, hamlet: Hamlet, prefix: tuple[Reply, ...]) -> Outcome:
    c = ctx.catalog
    choices = (
        Choice(c.msg("hamlet_offer_yes"), f"t:{hamlet.code}"),
        Choice(c.msg("hamlet_offer_other"), "t:*"),
        Choice(c.msg("hamlet_skip"), "t:-"),
    )
    new = state.evolve(flow=Flow.OFFER, hamlet_asked=True)
    return respond(new, [*prefix, Reply(c.msg("hamlet_offer", hamlet=hamlet.label), choices)])


def answer_offer(state: State, msg: Incoming, ctx: Context, yes: bool) -> Outcome:
    """A typed yes or no to "Anh/chị ở <hamlet> phải không?"."""
    if yes and state.choices and state.choices[0].startswith("t:"):
        return choose(state, msg, ctx, state.choices[0][2:])
    return prompt(state, ctx, offer=False)


def _page(state: State, ctx: Context, commune: tuple[str, tuple[Hamlet, ...]], page: int, prefix: tuple[Reply, ...] = ()) -> Outcome:
    """List one commune's hamlets, a page at a time when there are many."""
    c = ctx.catalog
    name, hamlets = commune
    several = len(ctx.hamlets.communes()) > 1
    new = state.evolve(flow=Flow.HAMLET, hamlet_asked=True)
    if len(hamlets) <= MAX_LISTED and not several:
        choices = [Choice(h.name, f"t:{h.code}") for h in hamlets]
        choices.append(Choice(c.msg("hamlet_skip"), "t:-"))
        return respond(new, [*prefix, Reply(c.msg("hamlet_prompt"), tuple(choices))])
    pages = max(1, -(-len(hamlets) // PAGE))
    page = min(max(page, 0), pages - 1)
    shown = hamlets[page * PAGE : (page + 1) * PAGE]
    choices = [Choice(h.name, f"t:{h.code}") for h in shown]
    if page + 1 < pages:
        choices.append(Choice(c.msg("hamlet_more"), f"t:p:{hamlets[0].code}:{page + 1}"))
    if several:
        choices.append(Choice(c.msg("hamlet_other_commune"), "t:*"))
    choices.append(Choice(c.msg("hamlet_skip"), "t:-"))
    first = page * PAGE + 1
    text = c.msg("hamlet_page_prompt", commune=name, first=first, last=first + len(shown) - 1, total=len(hamlets))
    return respond(new, [*prefix, Reply(text, tuple(choices))])


def choose(state: State, msg: Incoming, ctx: Context, code: str) -> Outcome:
    """Record the pressed hamlet (or the skip) and show the menu; or move in the list."""
    c = ctx.catalog
    if code == "*":
        return prompt(state, ctx, offer=False)
    if code.startswith(("c:", "p:")):
        ref, _, page = code[2:].partition(":")
        commune = ctx.hamlets.commune_of(ref)
        if commune is None:
            return prompt(state, ctx, (Reply(c.msg("stale_button")),), offer=False)
        return _page(state, ctx, commune, int(page) if page.isdecimal() else 0)
    new = state.evolve(flow=Flow.IDLE, hamlet_asked=True)
    if code == "-":
        return respond(new, [Reply(c.msg("hamlet_skipped")), menu_reply(new, ctx, msg.chat_type)])
    hamlet = ctx.hamlets.get(code)
    if hamlet is None:
        return prompt(state, ctx, (Reply(c.msg("stale_button")),), offer=False)
    return respond(
        new,
        [Reply(c.msg("hamlet_set", hamlet=hamlet.label)), menu_reply(new, ctx, msg.chat_type)],
        UserHamletChosen(hamlet.code),
    )


def typed(state: State, msg: Incoming, ctx: Context, text: str) -> Outcome | None:
    """Try a typed hamlet name, or part of one; None means it was not a hamlet name (a question)."""
    c = ctx.catalog
    hamlet = ctx.hamlets.find(text)
    if hamlet:
        return choose(state, msg, ctx, hamlet.code)
    short = len(text.split()) <= 4
    found = ctx.hamlets.search(text) if short else ()
    if len(found) == 1:
        return choose(state, msg, ctx, found[0].code)
    if found:
        choices = [Choice(h.label, f"t:{h.code}") for h in found]
        choices += [Choice(c.msg("hamlet_offer_other"), "t:*"), Choice(c.msg("hamlet_skip"), "t:-")]
        new = state.evolve(flow=Flow.HAMLET, hamlet_asked=True)
        return respond(new, [Reply(c.msg("hamlet_several", text=text[:60]), tuple(choices))])
    # A short text is read as a mistyped name, unless the FAQ recognises it ("mất thẻ", "otp"):
    # the hamlet question must never keep a question from its answer. A weak "choose" is not
    # enough, since place names often look a little like some topic.
    if short and ctx.matcher.match(text).decision not in (Decision.ANSWER, Decision.ASK_BACK):
        out = prompt(state, ctx, offer=False)
        first = Reply(c.msg("hamlet_not_found", text=text[:60]))
        return Outcome(out.state, (first, *out.replies), out.events)
    return None


def from_start_payload(state: State, msg: Incoming, ctx: Context, code: str) -> Outcome:
    """Set the hamlet from a `h_<code>` start payload, or explain a wrong code."""
    c = ctx.catalog
    hamlet = ctx.hamlets.get(code) if CODE_RE.match(code) else None
    welcome = Reply(c.msg("welcome", name=msg.sender_name or c.msg("default_name")))
    if hamlet is None:
        return prompt(state, ctx, (welcome, Reply(c.msg("hamlet_bad_code"))), offer=False)
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
