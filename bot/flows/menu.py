"""The main menu, portal addresses, help from a person, and forgetting a person."""

from __future__ import annotations

from bot.conversation import Context, Flow, ForgetUser, Outcome, State
from bot.flows.common import menu_choice, respond
from bot.messages import ChatType, Choice, Incoming, Reply


def menu_reply(state: State, ctx: Context, chat_type: ChatType, prefix: str = "") -> Reply:
    """Return the menu, with the guide button saying where the person stopped."""
    c = ctx.catalog
    if state.step and not state.finished and chat_type is ChatType.PRIVATE:
        k = c.step_number(state.step)
        guide = Choice(c.msg("menu_resume", k=k, n=len(c.steps)), "g")
    else:
        guide = Choice(c.msg("menu_guide"), "g")
    choices = [guide, Choice(c.msg("menu_faq"), "q"), Choice(c.msg("menu_portal"), "p"), Choice(c.msg("menu_help"), "h")]
    if chat_type is ChatType.PRIVATE and len(ctx.hamlets):
        choices.append(Choice(c.msg("menu_hamlet"), "t"))
    text = c.msg("menu_prompt")
    return Reply(f"{prefix}\n{text}".strip(), tuple(choices))


def show_menu(state: State, msg: Incoming, ctx: Context, prefix: str = "") -> Outcome:
    keep = state.flow if state.flow in (Flow.GUIDE,) else Flow.IDLE
    return respond(state.evolve(flow=keep), [menu_reply(state, ctx, msg.chat_type, prefix)])


def show_info(state: State, ctx: Context, key: str) -> Outcome:
    return respond(state, [Reply(ctx.catalog.msg(key), (menu_choice(ctx),))])


def ask_delete(state: State, ctx: Context) -> Outcome:
    c = ctx.catalog
    choices = (Choice(c.msg("delete_yes"), "x:yes"), Choice(c.msg("delete_no"), "x:no"))
    return respond(state.evolve(flow=Flow.DELETE), [Reply(c.msg("delete_prompt"), choices)])


def answer_delete(state: State, ctx: Context, value: str) -> Outcome:
    c = ctx.catalog
    if value == "yes" and state.flow == Flow.DELETE:
        return respond(State(hamlet_asked=True), [Reply(c.msg("delete_done"))], ForgetUser())
    return respond(state.evolve(flow=Flow.IDLE), [Reply(c.msg("delete_cancelled"), (menu_choice(ctx),))])
