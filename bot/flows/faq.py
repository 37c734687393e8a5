"""Questions: answer from the FAQ, offer close candidates, ask back, or say plainly we don't know."""

from __future__ import annotations

from bot.conversation import Context, Flow, Outcome, Outcomes, QueryHandled, State, UnansweredRecorded
from bot.flows import guide
from bot.flows.common import help_choice, menu_choice, respond
from bot.masking import mask
from bot.matcher import Decision
from bot.messages import ChatType, Choice, Incoming, Reply
from bot.scope import neighbour_service


def _after_answer_choices(state: State, ctx: Context, chat_type: ChatType, also: tuple[str, ...] = ()) -> tuple[Choice, ...]:
    c = ctx.catalog
    # the other question of a message that asked two things: one button, also in a group
    offered = tuple(Choice(c.topics[t].title, f"f:{t}") for t in also if t in c.topics)
    if chat_type is ChatType.GROUP:
        return offered
    return offered + _navigation(state, ctx)


def _navigation(state: State, ctx: Context) -> tuple[Choice, ...]:
    c = ctx.catalog
    if state.step and not state.finished and state.flow == Flow.GUIDE:
        k = c.step_number(state.step)
        return (Choice(c.msg("step_return", k=k, n=len(c.steps)), f"s:{state.step}"), menu_choice(ctx))
    return (menu_choice(ctx),)


def answer_topic(
    state: State, ctx: Context, topic_id: str, chat_type: ChatType, score: float = 1.0, also: tuple[str, ...] = ()
) -> Outcome:
    """Send the first part of one topic's answer (the rest waits behind "Xem thêm"), with a button for `also`,
    the topics of the message's other questions."""
    c = ctx.catalog
    topic = c.topic_on(topic_id, ctx.now)
    keep = state.flow if state.flow == Flow.GUIDE else Flow.IDLE
    new = state.evolve(flow=keep, pending="")
    choices = _after_answer_choices(new, ctx, chat_type, also)
    if topic.more:
        choices = (Choice(c.msg("faq_more"), f"fm:{topic_id}"), *choices)
    reply = Reply(c.first_part(topic), choices)
    visit = _next_visit(ctx, topic_id, chat_type)
    return respond(new, [reply, *visit], log=QueryHandled(Outcomes.ANSWERED, topic_id, score))


def _next_visit(ctx: Context, topic_id: str, chat_type: ChatType) -> tuple[Reply, ...]:
    """The answer about mobile teams, followed by the team's next visit to the person's hamlet, if planned."""
    from bot.broadcasts import visits

    if ctx.next_visit is None or topic_id != visits.load().mobile_topic:
        return ()
    hamlet = ctx.hamlets.get(ctx.chat_hamlet if chat_type is ChatType.GROUP else ctx.user_hamlet)
    if hamlet is None:
        return ()
    return (Reply(visits.next_visit_text(ctx.next_visit, hamlet.name)),)


def answer_more(state: State, ctx: Context, topic_id: str, chat_type: ChatType) -> Outcome:
    """Send the rest of an answer the person asked to read further."""
    c = ctx.catalog
    topic = c.topic_on(topic_id, ctx.now)
    keep = state.flow if state.flow == Flow.GUIDE else Flow.IDLE
    new = state.evolve(flow=keep, pending="")
    reply = Reply(topic.more or c.first_part(topic), _after_answer_choices(new, ctx, chat_type))
    return respond(new, [reply])


def ask(state: State, msg: Incoming, ctx: Context, text: str) -> Outcome:
    """Match free text against the FAQ and reply accordingly."""
    c = ctx.catalog
    match = ctx.matcher.match(text)
    top = match.candidates[0] if match.candidates else None
    if match.decision is Decision.ANSWER and top and top.topic in c.keywords.get("guide_topics", ()) and msg.chat_type is ChatType.PRIVATE:
        # "How do I do it online?" is best answered by the guide itself, one step a message.
        out = guide.enter(state.evolve(pending=""), ctx)
        others = tuple(e for e in out.events if not isinstance(e, QueryHandled))
        return Outcome(out.state, out.replies, (QueryHandled(Outcomes.ANSWERED, top.topic, top.score), *others))
    if match.decision is Decision.ANSWER and top:
        return answer_topic(state, ctx, top.topic, msg.chat_type, top.score, tuple(a.topic for a in match.also))
    keep = state.flow if state.flow == Flow.GUIDE else Flow.IDLE
    if match.decision in (Decision.CHOOSE, Decision.ASK_BACK) and match.candidates:
        candidates = match.candidates
        if msg.chat_type is ChatType.GROUP and match.long:
            # A paragraph in a group gets one suggestion, not a list of buttons under every long message.
            candidates = candidates[:1]
        choices = [Choice(c.topics[cand.topic].title, f"f:{cand.topic}") for cand in candidates]
        choices.append(Choice(c.msg("faq_none_of_these"), "f:-"))
        if match.decision is Decision.ASK_BACK:
            example = c.topics[match.candidates[0].topic].examples[0]
            prompt = c.msg("faq_ask_back", term=mask(match.term)[:60], example=example)
            outcome = Outcomes.ASKED_BACK
        else:
            prompt = c.msg("faq_choices_prompt")
            outcome = Outcomes.CHOICES
        new = state.evolve(flow=Flow.CHOOSE if keep == Flow.IDLE else keep, pending=mask(text)[:500])
        return respond(new, [Reply(prompt, tuple(choices))], log=QueryHandled(outcome, top.topic if top else None, match.score))
    service = neighbour_service(c, text) if match.decision is Decision.ABSTAIN else None
    if service:
        return out_of_scope(state.evolve(flow=keep, pending=""), ctx, service, match.score)
    return unknown(state.evolve(flow=keep), ctx, match.score)


def out_of_scope(state: State, ctx: Context, service: str, score: float = 0.0) -> Outcome:
    """Say what the bot covers and where the other service is done; no person is promised."""
    c = ctx.catalog
    where = c.services[service]
    text = f"{c.msg('out_of_scope')}\n{c.msg('out_of_scope_where', service=where.name, where=where.where)}"
    return respond(state, [Reply(text, (menu_choice(ctx),))], log=QueryHandled(Outcomes.OUT_OF_SCOPE, None, score))


def unknown(state: State, ctx: Context, score: float = 0.0, log: QueryHandled | None = None) -> Outcome:
    """Say plainly that we do not know, and point to a person."""
    c = ctx.catalog
    reply = Reply(c.msg("faq_unknown"), (help_choice(ctx), menu_choice(ctx)))
    return respond(state.evolve(pending=""), [reply], log=log or QueryHandled(Outcomes.UNANSWERED, None, score))


def none_of_these(state: State, ctx: Context) -> Outcome:
    """The person rejected every candidate: record the question as unanswered."""
    pending = state.pending
    # The question's own row becomes "unanswered"; the press is a flow command, or each such
    # question would count twice among the unanswered.
    keep = Flow.GUIDE if state.flow == Flow.GUIDE else Flow.IDLE
    out = unknown(state.evolve(flow=keep), ctx, log=QueryHandled(Outcomes.COMMAND))
    events = out.events + ((UnansweredRecorded(pending),) if pending else ())
    return Outcome(out.state, out.replies, events)
