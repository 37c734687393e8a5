"""Who may do what with a broadcast: create, submit, approve, pause, resume, cancel.

Team members broadcast to their own commune(s); officers (CCCD_OFFICERS) broadcast anywhere and
approve. Nobody approves their own broadcast. A commune can switch approval off (broadcast_policies).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.broadcasts import images
from bot.broadcasts.audience import unknown_codes
from bot.broadcasts.model import Audience, check_text
from bot.config import Settings
from storage import broadcasts as repo
from storage.broadcasts import BroadcastStatus, DeliveryStatus
from storage.db import Database
from storage.models import Broadcast


class NotAllowed(Exception):
    """The actor may not do this; the message says why (in English, for logs and the command line)."""


class BadRequest(ValueError):
    """The request cannot be carried out (wrong status, bad text, unknown code)."""


@dataclass(frozen=True)
class Actor:
    id: str  # "channel:user id" or a dashboard account name
    officer: bool = False
    communes: frozenset[str] = frozenset()  # "*" for all

    @property
    def can_broadcast(self) -> bool:
        return self.officer or bool(self.communes)

    def covers(self, commune: str | None) -> bool:
        return self.officer or "*" in self.communes or (commune is not None and commune in self.communes)


def actor_for(settings: Settings, channel: str, user_id: str) -> Actor:
    officer = (channel, user_id) in settings.officer_ids()
    communes = frozenset(settings.team_members().get((channel, user_id), ()))
    return Actor(f"{channel}:{user_id}", officer=officer, communes=communes)


def check_audience(actor: Actor, audience: Audience, hamlet_communes: dict[str, str]) -> None:
    """A team member may only target hamlets and communes of their own commune(s)."""
    if not actor.can_broadcast:
        raise NotAllowed("only digital-tech team members and officers may broadcast")
    if actor.officer or "*" in actor.communes:
        return
    if audience.scope == "all":
        raise NotAllowed("a team member may not broadcast to every commune")
    targets = audience.codes if audience.scope == "communes" else [hamlet_communes.get(h) for h in audience.codes]
    outside = [code for code, commune in zip(audience.codes, targets) if not actor.covers(commune)]
    if outside:
        raise NotAllowed(f"outside the team member's commune: {', '.join(outside)}")


async def create(
    db: Database, actor: Actor, text: str, audience: Audience, now: datetime, *, scheduled_at: datetime | None = None,
    image: str | None = None,
) -> Broadcast:
    async with db.writing() as session:
        return await create_in(session, actor, text, audience, now, scheduled_at=scheduled_at, image=image)


async def create_in(
    session, actor: Actor, text: str, audience: Audience, now: datetime, *, scheduled_at: datetime | None = None,
    image: str | None = None,
) -> Broadcast:
    """`create` inside the caller's transaction (the chat service's, for /phatthanh)."""
    try:
        text = check_text(text)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    check_audience(actor, audience, await repo.hamlet_communes(session))
    unknown = await unknown_codes(session, audience)
    if unknown:
        raise BadRequest(f"unknown code(s): {', '.join(unknown)}")
    if image is not None and await images.load(session, image) is None:
        raise BadRequest("no such image (uploaded more than two days ago and not used?)")
    return await repo.create(
        session, author=actor.id, text=text, audience=audience.to_dict(), now=now, scheduled_at=scheduled_at, image=image
    )


async def _load(session, broadcast_id: int) -> Broadcast:
    b = await repo.get(session, broadcast_id, lock=True)
    if b is None:
        raise BadRequest(f"no broadcast {broadcast_id}")
    return b


def _check_owner(actor: Actor, b: Broadcast, communes: dict[str, str]) -> None:
    if actor.officer or actor.id == b.author:
        return
    check_audience(actor, Audience.from_dict(b.audience), communes)


async def needs_approval(session, audience: Audience, communes_of: dict[str, str]) -> bool:
    """Whether a broadcast to `audience` waits for an officer's approval (one of its communes asks for it)."""
    if audience.scope == "all":
        communes = set(communes_of.values())
    elif audience.scope == "communes":
        communes = set(audience.codes)
    else:
        communes = {communes_of[h] for h in audience.codes if h in communes_of}
    if not communes:
        return (await repo.policy(session, None)).approval_required
    return any([(await repo.policy(session, c)).approval_required for c in communes])


async def submit(db: Database, actor: Actor, broadcast_id: int, now: datetime) -> Broadcast:
    """Draft -> awaiting approval, or straight to scheduled where the communes do not ask for approval."""
    async with db.writing() as session:
        return await submit_in(session, actor, await _load(session, broadcast_id), now)


async def submit_in(session, actor: Actor, b: Broadcast, now: datetime) -> Broadcast:
    """`submit` inside the caller's transaction."""
    communes = await repo.hamlet_communes(session)
    _check_owner(actor, b, communes)
    if b.status != BroadcastStatus.DRAFT:
        raise BadRequest(f"broadcast {b.id} is {b.status}, not a draft")
    if await needs_approval(session, Audience.from_dict(b.audience), communes):
        b.status = BroadcastStatus.AWAITING_APPROVAL
    else:
        b.status = BroadcastStatus.SCHEDULED
    b.updated_at = now
    return b


async def approve(db: Database, actor: Actor, broadcast_id: int, now: datetime) -> Broadcast:
    async with db.writing() as session:
        b = await _load(session, broadcast_id)
        if not actor.officer:
            raise NotAllowed("only an officer may approve a broadcast")
        if actor.id == b.author:
            raise NotAllowed("nobody approves their own broadcast")
        if b.status != BroadcastStatus.AWAITING_APPROVAL:
            raise BadRequest(f"broadcast {b.id} is {b.status}, not awaiting approval")
        b.status = BroadcastStatus.SCHEDULED
        b.approver = actor.id
        b.updated_at = now
        return b


async def pause(db: Database, actor: Actor, broadcast_id: int, now: datetime) -> Broadcast:
    return await _move(db, actor, broadcast_id, now, {BroadcastStatus.SENDING}, BroadcastStatus.PAUSED)


async def resume(db: Database, actor: Actor, broadcast_id: int, now: datetime) -> Broadcast:
    return await _move(db, actor, broadcast_id, now, {BroadcastStatus.PAUSED}, BroadcastStatus.SENDING)


async def cancel(db: Database, actor: Actor, broadcast_id: int, now: datetime) -> Broadcast:
    """Stop a broadcast for good: deliveries not yet started are cancelled (a call under way finishes)."""
    open_ = {
        BroadcastStatus.DRAFT,
        BroadcastStatus.AWAITING_APPROVAL,
        BroadcastStatus.SCHEDULED,
        BroadcastStatus.SENDING,
        BroadcastStatus.PAUSED,
    }
    b = await _move(db, actor, broadcast_id, now, open_, BroadcastStatus.CANCELLED)
    async with db.writing() as session:
        await repo.cancel_open(session, broadcast_id, now)
    return b


async def _move(db: Database, actor: Actor, broadcast_id: int, now: datetime, allowed: set, to: BroadcastStatus) -> Broadcast:
    async with db.writing() as session:
        b = await _load(session, broadcast_id)
        _check_owner(actor, b, await repo.hamlet_communes(session))
        if b.status not in allowed:
            raise BadRequest(f"broadcast {b.id} is {b.status}: cannot become {to}")
        b.status = to
        b.updated_at = now
        if to == BroadcastStatus.CANCELLED:
            b.finished_at = now
        return b


REPORTED = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.BLOCKED,
    DeliveryStatus.NO_WINDOW,
    DeliveryStatus.OPTED_OUT,
    DeliveryStatus.UNKNOWN,
    DeliveryStatus.PENDING,
    DeliveryStatus.SENDING,
    DeliveryStatus.CANCELLED,
)
