"""Helpers shared by the flows: building replies that remember their choices."""

from __future__ import annotations

from bot.conversation import Context, Event, Outcome, QueryHandled, State, Outcomes
from bot.messages import Choice, Reply


def respond(
    state: State,
    replies: list[Reply] | tuple[Reply, ...],
    *events: Event,
    log: QueryHandled | None = QueryHandled(Outcomes.COMMAND),
) -> Outcome:
    """Return an Outcome whose state remembers the payloads of the last choices offered."""
    choices: tuple[str, ...] = ()
    for reply in replies:
        if reply.choices:
            # Link buttons are never pressed by number: only the others are remembered.
            choices = tuple(c.payload for c in reply.choices if c.link is None)
    logged: tuple[Event, ...] = (log,) if log else ()
    return Outcome(state.evolve(choices=choices), tuple(replies), logged + events)


def menu_choice(ctx: Context) -> Choice:
    return Choice(ctx.catalog.msg("menu_back"), "m")


def help_choice(ctx: Context) -> Choice:
    return Choice(ctx.catalog.msg("menu_help"), "h")
