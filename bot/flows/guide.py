"""The nine-step guide: one step a message, back and forth, resume, and the final outcome."""

from __future__ import annotations

from bot.conversation import Context, Flow, GuideFinished, Outcome, State, StepReached
from bot.flows.common import menu_choice, respond
from bot.messages import Choice, Reply

OUTCOMES = ("yes", "not_yet", "problem")


def show_step(state: State, ctx: Context, slug: str) -> Outcome:
    """Show one step and remember it as the person's place."""
    c = ctx.catalog
    index = c.step_index[slug]
    step = c.steps[index]
    n = len(c.steps)
    header = c.msg("step_header", k=index + 1, n=n, title=step.title)
    # The buttons name the step they were shown on, so a double tap or an old message's button
    # moves from that step, not from wherever the person is by now.
    choices = [Choice(c.msg("step_next"), f"g:n:{slug}")]
    if index > 0:
        choices.append(Choice(c.msg("step_back"), f"g:b:{slug}"))
    choices += [Choice(c.msg("step_stuck"), f"g:s:{slug}"), menu_choice(ctx)]
    from bot.broadcasts import reminders

    if slug == reminders.load().reminder_step:
        # The date was chosen at the step before: offer to remind the person of it (last, so that the
        # numbers people type for the other buttons stay the same on every step).
        choices.append(reminders.offer_choice())
    new = state.evolve(flow=Flow.GUIDE, step=slug, finished=False)
    return respond(new, [Reply(f"{header}\n{c.step_text(step)}", tuple(choices))], StepReached(slug))


def enter(state: State, ctx: Context) -> Outcome:
    """Start the guide, or ask whether to go on where the person stopped."""
    c = ctx.catalog
    if state.step and not state.finished and c.step_index.get(state.step, 0) > 0:
        k = c.step_number(state.step)
        choices = (Choice(c.msg("resume_continue"), "g:c"), Choice(c.msg("resume_restart"), "g:r"))
        text = c.msg("resume_prompt", k=k, n=len(c.steps))
        return respond(state.evolve(flow=Flow.RESUME), [Reply(text, choices)])
    return show_step(state, ctx, c.steps[0].slug)


def move(state: State, ctx: Context, delta: int) -> Outcome:
    """Go to the next or previous step; after the last, ask how it went."""
    c = ctx.catalog
    if state.step is None or state.finished:
        return show_step(state, ctx, c.steps[0].slug)
    index = c.step_index[state.step] + delta
    if index < 0:
        out = show_step(state, ctx, c.steps[0].slug)
        return Outcome(out.state, (Reply(c.msg("step_first")), *out.replies), out.events)
    if index >= len(c.steps):
        return ask_outcome(state, ctx)
    return show_step(state, ctx, c.steps[index].slug)


def jump(state: State, ctx: Context, number: int) -> Outcome:
    c = ctx.catalog
    number = min(max(number, 1), len(c.steps))
    return show_step(state, ctx, c.steps[number - 1].slug)


def stuck(state: State, ctx: Context) -> Outcome:
    """List the common problems of the current step, each leading to an FAQ answer."""
    c = ctx.catalog
    if state.step is None:
        return enter(state, ctx)
    step = c.steps[c.step_index[state.step]]
    k, n = c.step_number(step.slug), len(c.steps)
    choices = [Choice(p.label, f"f:{p.topic}") for p in step.problems]
    choices.append(Choice(c.msg("step_return", k=k, n=n), f"s:{step.slug}"))
    return respond(state, [Reply(c.msg("step_stuck_prompt", k=k, n=n), tuple(choices))])


def ask_outcome(state: State, ctx: Context) -> Outcome:
    c = ctx.catalog
    choices = tuple(Choice(c.msg(f"outcome_{o}"), f"o:{o}") for o in OUTCOMES)
    return respond(state.evolve(flow=Flow.OUTCOME), [Reply(c.msg("outcome_prompt"), choices)])


def record_outcome(state: State, ctx: Context, value: str) -> Outcome:
    c = ctx.catalog
    choices: tuple[Choice, ...] = (menu_choice(ctx),)
    if value == "problem":
        choices = (Choice(c.msg("menu_help"), "h"), menu_choice(ctx))
    new = state.evolve(flow=Flow.IDLE, finished=True)
    return respond(new, [Reply(c.msg(f"outcome_thanks_{value}"), choices)], GuideFinished(value))
