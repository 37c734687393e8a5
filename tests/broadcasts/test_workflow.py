"""Audience resolution, the dry run, approval and permissions."""

from __future__ import annotations

import pytest

from bot.broadcasts import workflow
from bot.broadcasts.audience import dry_run, resolve
from bot.broadcasts.model import Audience, AudienceError, parts_for
from bot.broadcasts.workflow import Actor, BadRequest, NotAllowed, actor_for
from bot.config import Settings
from storage import broadcasts as repo
from storage.broadcasts import BroadcastStatus
from tests.broadcasts.conftest import OFFICER, TEAM_A

RESIDENT = Actor("telegram:11")


async def recipients(db, audience):
    async with db.transaction() as session:
        return sorted((r.kind, r.chat_id) for r in await resolve(session, audience))


async def test_audience_by_scope_kind_and_channel(world):
    assert await recipients(world, Audience("hamlets", ("a1",))) == [("group", "-1001"), ("private", "11"), ("private", "12")]
    assert await recipients(world, Audience("communes", ("xa_b",))) == [("group", "-1003"), ("private", "21")]
    assert await recipients(world, Audience("communes", ("xa_a",), kinds=("group",))) == [("group", "-1001"), ("group", "-1002")]
    everyone = await recipients(world, Audience("all", kinds=("private",)))
    assert everyone == [("private", "11"), ("private", "12"), ("private", "13"), ("private", "21"), ("private", "30")]
    assert await recipients(world, Audience("all", channels=("zalo_oa",))) == []


async def test_dry_run_counts_per_hamlet_and_channel(world):
    async with world.transaction() as session:
        await repo.set_opted_out(session, "telegram", "12", True)
        lines = await dry_run(session, Audience("communes", ("xa_a",)))
    table = {(line.hamlet, line.channel, line.kind): (line.to_send, line.opted_out) for line in lines}
    assert table == {
        ("a1", "telegram", "group"): (1, 0),
        ("a1", "telegram", "private"): (1, 1),
        ("a2", "telegram", "group"): (1, 0),
        ("a2", "telegram", "private"): (1, 0),
    }


def test_bad_audiences_are_refused():
    for bad in (dict(scope="everyone"), dict(scope="hamlets"), dict(scope="all", codes=("a1",)), dict(kinds=("channel",)), dict(channels=("sms",))):
        with pytest.raises(AudienceError):
            Audience(**bad)


def test_text_is_split_per_channel_limit():
    text = "Câu một dài. " * 300  # ~3,900 characters
    assert len(parts_for("telegram", text)) == 1
    assert len(parts_for("zalo_oa", text)) == 2
    assert all(len(p) <= 2000 for p in parts_for("zalo_bot", text))


async def test_a_resident_cannot_broadcast(world, clock):
    with pytest.raises(NotAllowed):
        await workflow.create(world, RESIDENT, "Tin", Audience("hamlets", ("a1",)), clock())


async def test_a_team_member_of_commune_a_cannot_target_commune_b(world, clock):
    with pytest.raises(NotAllowed):
        await workflow.create(world, TEAM_A, "Tin", Audience("communes", ("xa_b",)), clock())
    with pytest.raises(NotAllowed):
        await workflow.create(world, TEAM_A, "Tin", Audience("hamlets", ("a1", "b1")), clock())
    with pytest.raises(NotAllowed):
        await workflow.create(world, TEAM_A, "Tin", Audience("all"), clock())
    b = await workflow.create(world, TEAM_A, "Tin", Audience("hamlets", ("a1", "a2")), clock())
    assert b.status == BroadcastStatus.DRAFT


async def test_unknown_codes_and_bad_text_are_refused(world, clock):
    with pytest.raises(BadRequest):
        await workflow.create(world, OFFICER, "Tin", Audience("hamlets", ("zz9",)), clock())
    for text in ("", "   ", "x" * 9000):
        with pytest.raises(BadRequest):
            await workflow.create(world, OFFICER, text, Audience("all"), clock())


async def test_approval_by_an_officer_who_is_not_the_author(world, clock):
    now = clock()
    b = await workflow.create(world, TEAM_A, "Tin", Audience("communes", ("xa_a",)), now)
    b = await workflow.submit(world, TEAM_A, b.id, now)
    assert b.status == BroadcastStatus.AWAITING_APPROVAL
    with pytest.raises(NotAllowed):
        await workflow.approve(world, TEAM_A, b.id, now)  # a team member does not approve
    mine = await workflow.create(world, OFFICER, "Tin", Audience("all"), now)
    await workflow.submit(world, OFFICER, mine.id, now)
    with pytest.raises(NotAllowed):
        await workflow.approve(world, OFFICER, mine.id, now)  # nor does anyone approve their own
    b = await workflow.approve(world, OFFICER, b.id, now)
    assert (b.status, b.approver) == (BroadcastStatus.SCHEDULED, "telegram:42")
    with pytest.raises(BadRequest):
        await workflow.approve(world, Actor("telegram:43", officer=True), b.id, now)


async def test_approval_can_be_switched_off_per_commune(world, clock):
    async with world.transaction() as session:
        await repo.set_policy(session, "xa_a", approval_required=False)
    b = await workflow.create(world, TEAM_A, "Tin", Audience("hamlets", ("a1",)), clock())
    assert (await workflow.submit(world, TEAM_A, b.id, clock())).status == BroadcastStatus.SCHEDULED
    # Commune B still asks for approval.
    other = await workflow.create(world, OFFICER, "Tin", Audience("communes", ("xa_a", "xa_b")), clock())
    assert (await workflow.submit(world, OFFICER, other.id, clock())).status == BroadcastStatus.AWAITING_APPROVAL


async def test_team_member_of_another_commune_cannot_cancel(world, clock):
    b = await workflow.create(world, TEAM_A, "Tin", Audience("hamlets", ("a1",)), clock())
    with pytest.raises(NotAllowed):
        await workflow.cancel(world, Actor("telegram:600", communes=frozenset({"xa_b"})), b.id, clock())


def test_team_and_officers_come_from_settings():
    settings = Settings(_env_file=None, officers="telegram:42", team="telegram:500:xa_a, telegram:501:*")
    assert actor_for(settings, "telegram", "500").communes == {"xa_a"}
    assert actor_for(settings, "telegram", "501").covers("xa_b")
    assert actor_for(settings, "telegram", "42").officer
    assert not actor_for(settings, "telegram", "11").can_broadcast
