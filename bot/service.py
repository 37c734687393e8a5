"""The imperative shell around the core: lock, load, step, record, save — then hand back replies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts import compose, reminders, visits
from bot.broadcasts.optout import OptOutChanged
from bot.catalog import Catalog, with_added_examples
from bot.config import Settings
from bot.conversation import (
    ChatHamletLinked,
    Context,
    Flow,
    ForgetUser,
    GuideFinished,
    Outcome,
    Outcomes,
    QueryHandled,
    State,
    StepReached,
    UnansweredRecorded,
    UserHamletChosen,
)
from bot.engine import MAX_INPUT, clean_text, step
from bot.hamlets import Hamlet, HamletDirectory
from bot.masking import mask
from bot.matcher import Match, Matcher
from bot.messages import ChatType, Incoming, Reply
from bot.privacy import erasure_ref, load_salt, pseudonym
from storage import batch, conversations, deliveries, erasure, logs, people, registry, unanswered_marks
from storage.db import Database

log = logging.getLogger(__name__)
# Channels that let the bot write to a person only for some days after the person's last message (Zalo
# OA's interaction window): a reminder beyond it may not arrive, and the person is told so.
REPLY_WINDOW_DAYS = {"zalo_oa": 7}
MAX_LOGGED_TEXT = 1000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RememberedMatches:
    """The matcher, answering from the matches worked out before a chat's write lock was taken.

    Matching is the slow part of handling a message and a pure function of the text and the content,
    so `ChatService.prematch` runs it first, outside the write transaction (on SQLite, a write lock on
    the whole database), and the step inside the transaction finds the result here. A text the step
    matches that was not foreseen is matched then, as before. Bounded; emptied when the content changes.
    """

    SIZE = 256

    def __init__(self, matcher: Matcher):
        self.matcher = matcher
        self._known: OrderedDict[str, Match] = OrderedDict()

    def match(self, text: str) -> Match:
        found = self._known.get(text)
        if found is None:
            found = self.matcher.match(text)
            self._known[text] = found
            if len(self._known) > self.SIZE:
                self._known.popitem(last=False)
        return found

    def forget(self) -> None:
        self._known.clear()


class ChatService:
    """Handle incoming messages for every channel; state lives only in the database."""

    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        settings: Settings | None = None,
        *,
        matcher: Matcher | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.db = db
        self.content = catalog  # as read from the content files
        self.catalog = catalog  # what the bot uses: the files plus the examples accepted on the dashboard
        self._added_examples: dict[str, list[str]] = {}
        self._examples_version: int | None = None
        self._examples_lock = asyncio.Lock()
        self.settings = settings or Settings()
        self.matcher = matcher or Matcher(catalog)
        self.matches = RememberedMatches(self.matcher)
        self.clock = clock
        self.officers = self.settings.officer_ids()
        self.team = self.settings.team_members()
        self._hamlets: HamletDirectory | None = None
        # Told how each query was handled (answered, choices, unanswered...): the FAQ metrics.
        self.on_query: Callable[[str], None] | None = None
        self._valid_steps = frozenset(catalog.step_index)
        self._salt: str | None = self.settings.pseudonym_salt or None
        self._salt_lock = asyncio.Lock()
        # hamlet code -> its next mobile team visit; read again at most once a minute (VISITS_TTL).
        self._visits: dict[str, visits.NextVisit] = {}
        self._visits_read: float | None = None

    async def load_salt(self) -> str:
        """Load (or create, once per installation) the pseudonym salt; cached afterwards."""
        if self._salt is None:
            async with self._salt_lock:
                if self._salt is None:
                    self._salt = await load_salt(self.db, self.settings.pseudonym_salt, self.clock())
        return self._salt

    def pseudonym(self, channel: str, external_id: str) -> str:
        """Return a stable pseudonymous id: statistics can count people without knowing them."""
        if self._salt is None:
            raise RuntimeError("the pseudonym salt is not loaded yet (await ChatService.load_salt())")
        return pseudonym(self._salt, channel, external_id)

    def erasure_ref(self, channel: str, external_id: str) -> str:
        if self._salt is None:
            raise RuntimeError("the pseudonym salt is not loaded yet (await ChatService.load_salt())")
        return erasure_ref(self._salt, channel, external_id)

    async def erased_after(self, session: AsyncSession, channel: str, external_id: str, sent: datetime) -> bool:
        """Whether the person was erased after `sent`: what they sent before must not bring them back."""
        when = await erasure.erased_at(session, self.erasure_ref(channel, external_id))
        return when is not None and erasure.aware(sent) < when

    async def hamlets(self, session: AsyncSession | None = None) -> HamletDirectory:
        """Return the cached registry, loading it (in `session` when given) on first use."""
        if self._hamlets is None:
            if session is None:
                async with self.db.transaction() as own:
                    rows = await registry.list_hamlets(own)
            else:
                rows = await registry.list_hamlets(session)
            self._hamlets = HamletDirectory([Hamlet(code, name, commune) for code, name, commune in rows])
        return self._hamlets

    def forget_hamlets(self) -> None:
        """Drop the cached registry (after an import)."""
        self._hamlets = None

    def reload_content(self, catalog: Catalog) -> None:
        """Use new content; states pointing at removed steps fall back safely on their next load."""
        self.content = catalog
        self._use(with_added_examples(catalog, self._added_examples))

    def _use(self, catalog: Catalog, matcher: Matcher | None = None) -> None:
        self.catalog = catalog
        if matcher is None:
            self.matcher.reload(catalog)
        else:
            self.matcher = matcher
        # Matches remembered before the change were made with the old content.
        self.matches = RememberedMatches(self.matcher)
        self._valid_steps = frozenset(catalog.step_index)

    async def load_examples(self) -> bool:
        """Use the examples admins accepted on the dashboard, when they changed since the last look.

        Cheap when nothing changed (one key read); otherwise the matcher's index is rebuilt in a
        thread, so the chats keep being answered meanwhile. Returns whether anything changed."""
        async with self._examples_lock:
            async with self.db.transaction() as session:
                version = await unanswered_marks.examples_version(session)
                if version == self._examples_version:
                    return False
                added = await unanswered_marks.accepted_examples(session)
            content = self.content
            catalog = with_added_examples(content, added)
            matcher = await asyncio.to_thread(Matcher, catalog, self.matcher.thresholds, self.matcher.weights)
            self._added_examples, self._examples_version = added, version
            if self.content is content:
                self._use(catalog, matcher)
            else:  # the files were reloaded meanwhile, with the examples known before
                self.reload_content(self.content)
            log.info("examples accepted on the dashboard: %d in %d topic(s)", sum(map(len, added.values())), len(added))
            return True

    def prematch(self, msg: Incoming) -> None:
        """Match the text of a message before its write transaction (see RememberedMatches).

        Only typed text that can reach the FAQ is matched: not a button press, a command (but the
        question after /cauhoi), a number, or text the core refuses. Synchronous, so a chat's messages
        keep their order on its lock.
        """
        if msg.payload or (msg.chat_type is ChatType.GROUP and not msg.addressed):
            return
        text = clean_text(msg.text)
        if text.startswith("/"):
            parts = text.split(None, 1)
            if len(parts) < 2 or parts[0].split("@")[0].lower() != "/cauhoi":
                return
            text = parts[1]
        if len(text) > MAX_INPUT or text.isdecimal() or not any(ch.isalnum() for ch in text):
            return
        self.matches.match(text)

    async def handle(self, msg: Incoming) -> list[Reply]:
        """Process one message in its own locked transaction; return the replies to send (console, tests)."""
        if msg.chat_type is ChatType.GROUP and not msg.addressed:
            return []
        try:
            if self._salt is None:  # once per process; the server loads it at start
                await self.load_salt()
            # Nothing else is awaited before the lock: messages of a chat queue on it in arrival order.
            # The slow part, matching, is done first, so that the write lock is held only to record.
            self.prematch(msg)
            async with self.db.locked(f"{msg.channel}:{msg.chat_id}", write=True) as session:
                return await self.handle_in(session, msg)
        except Exception:
            log.exception("failed to handle a message on %s", msg.channel)
            return [Reply(self.catalog.msg("error"))]

    async def handle_in(self, session: AsyncSession, msg: Incoming, started: float | None = None) -> list[Reply]:
        """Step the core inside the caller's transaction (which holds the chat's lock) and record it all.

        Errors propagate: the caller's transaction is rolled back, so nothing half-done is stored.
        """
        return (await self.handle_many(session, [msg], [started]))[0]

    async def handle_many(
        self,
        session: AsyncSession,
        msgs: Sequence[Incoming],
        started: Sequence[float | None] | None = None,
        *,
        leave: batch.Writes | None = None,
    ) -> list[list[Reply]]:
        """`handle_in` for several messages at once: their reads in one go, and their writes in another
        (storage/batch.py: one statement each on PostgreSQL).

        The caller's transaction holds the locks of all their chats. Messages that share a chat or a
        person are handled one after the other in the order given, each seeing what the one before it
        recorded; the others side by side, which is the same as one after the other because they read
        and write nothing in common but counters. Returns each message's replies, in order. With
        `leave`, the rows of the last of them to write are added to it instead, for the caller to write
        with its own (the pipeline writes them with the outbox rows, `batch.write`).
        """
        begun = [time.perf_counter() if t is None else t for t in (started or [None] * len(msgs))]
        replies: list[list[Reply]] = [[] for _ in msgs]
        waiting = list(range(len(msgs)))
        while waiting:
            together: list[int] = []
            later: list[int] = []
            seen: set[tuple[str, str, str]] = set()
            for i in waiting:
                msg = msgs[i]
                keys = {("chat", msg.channel, msg.chat_id), ("person", msg.channel, msg.sender_id)}
                (later if keys & seen else together).append(i)
                seen |= keys
            records = leave if leave is not None and not later else batch.Writes()
            answers = await self._handle_together(session, [msgs[i] for i in together], [begun[i] for i in together], records)
            if records is not leave:
                await batch.write(session, records, [], self.clock())
            for i, answer in zip(together, answers, strict=True):
                replies[i] = answer
            waiting = later
        return replies

    async def _handle_together(
        self, session: AsyncSession, msgs: list[Incoming], started: list[float], records: batch.Writes
    ) -> list[list[Reply]]:
        """Handle messages of distinct chats and people: read everything, step each, add their rows to `records`."""
        replies: list[list[Reply]] = [[] for _ in msgs]
        live = [i for i, msg in enumerate(msgs) if msg.chat_type is not ChatType.GROUP or msg.addressed]
        if not live:
            return replies
        hamlets = await self.hamlets(session)
        now = self.clock()
        # One go for all the messages (storage/batch.py): the erasures, the states, the user and chat rows
        # (created on first contact) and, in private, the hamlet of the group the person last wrote in,
        # offered instead of the list.
        seen = [
            batch.Message(
                msgs[i].channel, msgs[i].chat_id, msgs[i].chat_type.value, msgs[i].sender_id,
                self.erasure_ref(msgs[i].channel, msgs[i].sender_id), self.pseudonym(msgs[i].channel, msgs[i].sender_id),
                msgs[i].time,
            )
            for i in live
        ]
        reads = await batch.read(session, seen, now)
        for _ in reads.erased:
            # Sent before the person's /xoa, delivered or recovered after it: no row, no reply.
            log.info("%s: a message sent before its sender's erasure was dropped", msgs[0].channel)
        person = {i: m.person_ref for i, m in zip(live, seen, strict=True)}
        live = [i for n, i in enumerate(live) if n not in reads.erased]
        if not live:
            return replies
        users, chats, states, last_group = reads.users, reads.chats, reads.states, reads.last_group
        next_visits = await self._next_visits(session)  # once for the batch (cached for a minute)
        for i in live:
            msg = msgs[i]
            user_hamlet, opted_out = users[(msg.channel, msg.sender_id)]
            chat_hamlet = chats[(msg.channel, msg.chat_id)]
            state = State.from_dict(states.get(msg.key), self._valid_steps)
            ctx = Context(
                catalog=self.catalog,
                matcher=self.matches,
                hamlets=hamlets,
                now=now,
                user_hamlet=user_hamlet,
                is_officer=msg.sender_is_admin or (msg.channel, msg.sender_id) in self.officers,
                chat_hamlet=chat_hamlet if msg.chat_type is ChatType.GROUP else last_group.get(person[i]),
                opted_out=opted_out,
                desk=await self._desk(session, msg, state),
                next_visit=next_visits.get(chat_hamlet if msg.chat_type is ChatType.GROUP else user_hamlet or ""),
                reply_window_days=REPLY_WINDOW_DAYS.get(msg.channel),
                has_reminder=await self._has_reminder(session, msg),
            )
            outcome = step(state, msg, ctx)
            if any(isinstance(e, QueryHandled) and e.outcome == Outcomes.INVALID for e in outcome.events):
                log.info(
                    "refused input on %s: payload=%r, %d characters",
                    msg.channel,
                    mask((msg.payload or "")[:64]),
                    len(msg.text),
                )
            await self._record(session, msg, outcome, user_hamlet, chat_hamlet, now, started[i], records)
            replies[i] = list(outcome.replies) + await self._broadcasts_composed(session, msg, outcome, now)
        return replies

    VISITS_TTL = 60.0

    async def _next_visits(self, session: AsyncSession) -> dict[str, visits.NextVisit]:
        """The next visit of each hamlet, cached: read again once a minute (an officer's change shows within it)."""
        started = time.monotonic()
        if self._visits_read is None or started - self._visits_read > self.VISITS_TTL:
            from storage import schedules

            local = self.clock().astimezone(reminders.LOCAL)
            today, hhmm = local.date(), local.strftime("%H:%M")
            upcoming: dict[str, visits.NextVisit] = {}
            for v in await schedules.visits(session, None, today):
                if v.cancelled or (v.visit_date == today and v.end_time and v.end_time <= hhmm):
                    continue  # cancelled, or ended already today (one without an end time is told all day)
                for hamlet in v.hamlets:
                    upcoming.setdefault(hamlet, visits.NextVisit(v.visit_date, v.start_time, v.end_time, v.place))
            self._visits, self._visits_read = upcoming, started
        return self._visits

    def forget_visits(self) -> None:
        """Read the visits again at the next message (after a change in the dashboard)."""
        self._visits_read = None

    def broadcaster_communes(self, channel: str, user_id: str) -> frozenset[str]:
        """The communes a registered team member may broadcast to ("*" for an officer); empty for anyone else."""
        communes = set(self.team.get((channel, user_id), ()))
        if (channel, user_id) in self.officers:
            communes.add(compose.EVERYWHERE)
        return frozenset(communes)

    async def _desk(self, session: AsyncSession, msg: Incoming, state: State) -> compose.Desk | None:
        """Loaded only for a team member or officer who is writing a broadcast (or starting to)."""
        communes = self.broadcaster_communes(msg.channel, msg.sender_id)
        if not communes:
            return None
        wanted = (
            state.flow == Flow.COMPOSE
            or (msg.payload or "").startswith(f"{compose.PREFIX}:")
            or clean_text(msg.text).lower().startswith("/phatthanh")
        )
        if not wanted:
            return None
        from bot.broadcasts.audience import desk

        return await desk(session, communes)

    async def _has_reminder(self, session: AsyncSession, msg: Incoming) -> bool:
        """Read only for /huynhac and its button: whether the person has a reminder to stop."""
        if msg.payload != f"{reminders.PREFIX}:x" and not clean_text(msg.text).lower().startswith("/huynhac"):
            return True
        from storage import schedules

        return await schedules.has_open_reminder(session, msg.channel, msg.sender_id)

    async def _reminder(self, session: AsyncSession, msg: Incoming, event, hamlet: str | None, now: datetime) -> None:
        """Store or cancel the person's appointment reminder; its text is written now, from today's content."""
        from storage import schedules

        if isinstance(event, reminders.ReminderCancelled):
            await schedules.cancel_reminders(session, msg.channel, msg.sender_id, now)
            return
        content = reminders.load()
        catalog = self.catalog
        step = catalog.steps[catalog.step_index[content.reminder_step]] if content.reminder_step in catalog.step_index else None
        bring = catalog.topics.get(content.bring_topic)
        # Where to go and what to bring; the first line ("ngày mai" or "hôm nay") is written when it is sent.
        go = catalog.step_text(step).strip() if step else ""
        text = "\n".join(part for part in (go, catalog.first_part(bring).strip() if bring else "") if part)
        from storage import broadcasts as repo

        commune = (await repo.hamlet_communes(session)).get(hamlet or "")
        p = await repo.policy(session, commune)
        await schedules.set_reminder(
            session, channel=msg.channel, user_id=msg.sender_id, hamlet=hamlet, appointment=event.day,
            remind_at=reminders.remind_at(event.day, now, p.quiet_start), text=text, now=now,
        )

    async def _broadcasts_composed(self, session: AsyncSession, msg: Incoming, outcome: Outcome, now: datetime) -> list[Reply]:
        """Make the broadcasts confirmed in /phatthanh (permissions checked again), and say what became of them."""
        from bot.broadcasts import workflow
        from bot.broadcasts.model import Audience, AudienceError
        from bot.broadcasts.optout import load

        content = load()
        replies: list[Reply] = []
        for event in outcome.events:
            if not isinstance(event, compose.BroadcastComposed):
                continue
            communes = self.broadcaster_communes(msg.channel, msg.sender_id)
            actor = workflow.Actor(
                f"{msg.channel}:{msg.sender_id}", officer=compose.EVERYWHERE in communes, communes=communes - {compose.EVERYWHERE}
            )
            try:
                audience = Audience(event.scope, event.codes)
                async with session.begin_nested():
                    b = await workflow.create_in(session, actor, event.text, audience, now)
                    b = await workflow.submit_in(session, actor, b, now)
            except (AudienceError, workflow.BadRequest, workflow.NotAllowed) as exc:
                log.warning("/phatthanh: broadcast refused: %s", exc)
                replies.append(Reply(content.msg("bc_bad_audience", reason=content.msg("bc_reason_changed"))))
                continue
            waiting = b.status == workflow.BroadcastStatus.AWAITING_APPROVAL
            nxt = content.msg("bc_next_approval" if waiting else "bc_next_scheduled")
            replies.append(Reply(content.msg("bc_submitted", id=b.id, next=nxt)))
        return replies

    async def _record(self, session, msg: Incoming, outcome: Outcome, user_hamlet, chat_hamlet, now, started, records: batch.Writes) -> None:
        """Apply the core's events to the store; the log rows and the new state go to `records`."""
        user_ref: str | None = self.pseudonym(msg.channel, msg.sender_id)
        forget = any(isinstance(e, ForgetUser) for e in outcome.events)
        for event in outcome.events:
            if isinstance(event, UserHamletChosen):
                user_hamlet = event.hamlet
                await people.set_user_hamlet(session, msg.channel, msg.sender_id, event.hamlet)
            elif isinstance(event, ChatHamletLinked):
                chat_hamlet = event.hamlet
                await people.set_chat_hamlet(session, msg.channel, msg.chat_id, event.hamlet)
            elif isinstance(event, OptOutChanged):
                await people.set_user_opted_out(session, msg.channel, msg.sender_id, event.opted_out)
            elif isinstance(event, (reminders.ReminderWanted, reminders.ReminderCancelled)):
                await self._reminder(session, msg, event, user_hamlet, now)
        hamlet = chat_hamlet if msg.chat_type is ChatType.GROUP else user_hamlet
        chat_ref: str | None = self.pseudonym(msg.channel, msg.chat_id)
        if forget:
            # A private chat's id is the person's own id on most platforms: it goes with them.
            private = msg.chat_type is ChatType.PRIVATE
            await conversations.delete_states_of_user(session, msg.channel, msg.sender_id)
            from storage import schedules

            await schedules.forget_reminders(session, msg.channel, msg.sender_id)
            # Replies still waiting to be sent to them go too (the answer to this request comes after).
            await deliveries.delete_pending_of_user(session, msg.channel, msg.sender_id)
            await logs.forget(session, user_ref, chat_ref if private else None)
            await people.delete_user(session, msg.channel, msg.sender_id)
            # Nothing they sent before now brings them back (a redelivery by the platform is dropped).
            await erasure.record(session, self.erasure_ref(msg.channel, msg.sender_id), now)
            if private:
                await people.delete_chat(session, msg.channel, msg.chat_id)
                chat_ref = None
            user_ref = None
            hamlet = None
        for event in outcome.events:
            if isinstance(event, QueryHandled):
                if self.on_query is not None:
                    self.on_query(event.outcome)
                text = mask(f"[{msg.payload}]" if msg.payload else clean_text(msg.text))[:MAX_LOGGED_TEXT]
                records.queries.append(
                    {
                        "created_at": now,
                        "channel": msg.channel,
                        "chat_type": msg.chat_type.value,
                        "chat_ref": chat_ref,
                        "hamlet_code": hamlet,
                        "user_ref": user_ref,
                        "text": None if forget else text,
                        "topic": event.topic,
                        "score": event.score,
                        "outcome": event.outcome,
                        "handling_ms": round((time.perf_counter() - started) * 1000, 3),
                    }
                )
            elif isinstance(event, StepReached):
                records.events.append(
                    dict(created_at=now, channel=msg.channel, hamlet_code=hamlet, user_ref=user_ref, kind="step", step=event.step)
                )
            elif isinstance(event, GuideFinished):
                records.events.append(
                    dict(created_at=now, channel=msg.channel, hamlet_code=hamlet, user_ref=user_ref, kind="outcome", value=event.outcome)
                )
            elif isinstance(event, UnansweredRecorded) and user_ref:
                await logs.mark_unanswered(session, user_ref, event.text)
        if not forget:
            # The core masks what it keeps of a question; masking again here makes it a rule of the store.
            state = outcome.state.evolve(pending=mask(outcome.state.pending)) if outcome.state.pending else outcome.state
            records.states.append((msg.key, state.to_dict()))
