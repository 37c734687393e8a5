"""The imperative shell around the core: lock, load, step, record, save — then hand back replies."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from bot.catalog import Catalog
from bot.config import Settings
from bot.conversation import (
    ChatHamletLinked,
    Context,
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
from bot.engine import clean_text, step
from bot.hamlets import Hamlet, HamletDirectory
from bot.masking import mask
from bot.matcher import Matcher
from bot.messages import ChatType, Incoming, Reply
from storage import conversations, deliveries, logs, people, registry
from storage.db import Database

log = logging.getLogger(__name__)
MAX_LOGGED_TEXT = 1000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
        self.catalog = catalog
        self.settings = settings or Settings()
        self.matcher = matcher or Matcher(catalog)
        self.clock = clock
        self.officers = self.settings.officer_ids()
        self._hamlets: HamletDirectory | None = None
        # Told how each query was handled (answered, choices, unanswered...): the FAQ metrics.
        self.on_query: Callable[[str], None] | None = None
        self._valid_steps = frozenset(catalog.step_index)

    def pseudonym(self, channel: str, external_id: str) -> str:
        """Return a stable pseudonymous id: statistics can count people without knowing them."""
        raw = f"{self.settings.pseudonym_salt}:{channel}:{external_id}".encode()
        return hashlib.sha256(raw).hexdigest()[:24]

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
        self.catalog = catalog
        self.matcher.reload(catalog)
        self._valid_steps = frozenset(catalog.step_index)

    async def handle(self, msg: Incoming) -> list[Reply]:
        """Process one message in its own locked transaction; return the replies to send (console, tests)."""
        if msg.chat_type is ChatType.GROUP and not msg.addressed:
            return []
        try:
            # Nothing is awaited before the lock: messages of a chat queue on it in arrival order.
            async with self.db.locked(f"{msg.channel}:{msg.chat_id}", write=True) as session:
                return await self.handle_in(session, msg)
        except Exception:
            log.exception("failed to handle a message on %s", msg.channel)
            return [Reply(self.catalog.msg("error"))]

    async def handle_in(self, session: AsyncSession, msg: Incoming, started: float | None = None) -> list[Reply]:
        """Step the core inside the caller's transaction (which holds the chat's lock) and record it all.

        Errors propagate: the caller's transaction is rolled back, so nothing half-done is stored.
        """
        if msg.chat_type is ChatType.GROUP and not msg.addressed:
            return []
        started = time.perf_counter() if started is None else started
        hamlets = await self.hamlets(session)
        now = self.clock()
        key = msg.key
        # One statement each: the state, and the user and chat rows (created on first contact).
        state = State.from_dict(await conversations.read_state(session, key), self._valid_steps)
        user_hamlet = await people.seen_user(session, msg.channel, msg.sender_id, now)
        chat_hamlet = await people.seen_chat(session, msg.channel, msg.chat_id, msg.chat_type.value, now)
        ctx = Context(
            catalog=self.catalog,
            matcher=self.matcher,
            hamlets=hamlets,
            now=now,
            user_hamlet=user_hamlet,
            is_officer=msg.sender_is_admin or (msg.channel, msg.sender_id) in self.officers,
        )
        outcome = step(state, msg, ctx)
        if any(isinstance(e, QueryHandled) and e.outcome == Outcomes.INVALID for e in outcome.events):
            log.info(
                "refused input on %s: payload=%r, %d characters",
                msg.channel,
                mask((msg.payload or "")[:64]),
                len(msg.text),
            )
        await self._record(session, msg, outcome, user_hamlet, chat_hamlet, now, started)
        return list(outcome.replies)

    async def _record(self, session, msg: Incoming, outcome: Outcome, user_hamlet, chat_hamlet, now, started) -> None:
        """Apply the core's events to the store and save the new state."""
        user_ref: str | None = self.pseudonym(msg.channel, msg.sender_id)
        forget = any(isinstance(e, ForgetUser) for e in outcome.events)
        for event in outcome.events:
            if isinstance(event, UserHamletChosen):
                user_hamlet = event.hamlet
                await people.set_user_hamlet(session, msg.channel, msg.sender_id, event.hamlet)
            elif isinstance(event, ChatHamletLinked):
                chat_hamlet = event.hamlet
                await people.set_chat_hamlet(session, msg.channel, msg.chat_id, event.hamlet)
        hamlet = chat_hamlet if msg.chat_type is ChatType.GROUP else user_hamlet
        chat_ref: str | None = self.pseudonym(msg.channel, msg.chat_id)
        if forget:
            # A private chat's id is the person's own id on most platforms: it goes with them.
            private = msg.chat_type is ChatType.PRIVATE
            await conversations.delete_states_of_user(session, msg.channel, msg.sender_id)
            # Replies still waiting to be sent to them go too (the answer to this request comes after).
            await deliveries.delete_pending_of_user(session, msg.channel, msg.sender_id)
            await logs.forget(session, user_ref, chat_ref if private else None)
            await people.delete_user(session, msg.channel, msg.sender_id)
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
                await logs.add_query(
                    session,
                    created_at=now,
                    channel=msg.channel,
                    chat_type=msg.chat_type.value,
                    chat_ref=chat_ref,
                    hamlet_code=hamlet,
                    user_ref=user_ref,
                    text=None if forget else text,
                    topic=event.topic,
                    score=event.score,
                    outcome=event.outcome,
                    handling_ms=round((time.perf_counter() - started) * 1000, 3),
                )
            elif isinstance(event, StepReached):
                await logs.add_guide_event(
                    session, created_at=now, channel=msg.channel, hamlet_code=hamlet, user_ref=user_ref, kind="step", step=event.step
                )
            elif isinstance(event, GuideFinished):
                await logs.add_guide_event(
                    session, created_at=now, channel=msg.channel, hamlet_code=hamlet, user_ref=user_ref, kind="outcome", value=event.outcome
                )
            elif isinstance(event, UnansweredRecorded) and user_ref:
                await logs.mark_unanswered(session, user_ref, event.text)
        if not forget:
            await conversations.write_state(session, msg.key, outcome.state.to_dict(), now)
