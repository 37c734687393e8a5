"""The rows are the truth: a sender that dies at any point is continued by the next, nothing twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.broadcasts import workflow
from bot.broadcasts.model import Audience
from storage import broadcasts as repo
from storage import leases
from storage.broadcasts import BroadcastStatus, DeliveryStatus
from tests.broadcasts.conftest import OFFICER, TEAM_A, approved, make_sender


async def test_only_one_sender_holds_the_lease_until_it_expires(world, clock):
    async with world.transaction() as session:
        assert await leases.acquire(session, "job", "a", clock(), timedelta(seconds=10))
    async with world.transaction() as session:
        assert not await leases.acquire(session, "job", "b", clock(), timedelta(seconds=10))
        assert await leases.acquire(session, "job", "a", clock(), timedelta(seconds=10))  # renewal
    clock.advance(seconds=11)
    async with world.transaction() as session:
        assert await leases.acquire(session, "job", "b", clock(), timedelta(seconds=10))  # takeover
        lease = await leases.holder_of(session, "job")
        assert (lease.holder, lease.epoch) == ("b", 2)
    async with world.transaction() as session:
        assert not await leases.acquire(session, "job", "a", clock(), timedelta(seconds=10))


async def test_a_second_sender_waits_while_the_first_is_alive(world, fake_tg, tg_bot, clock):
    await approved(world, clock)
    first = make_sender(world, tg_bot, clock, lease_ttl=30)
    second = make_sender(world, tg_bot, clock, lease_ttl=30)
    assert await first.hold_lease()
    assert await second.run_once() == 0
    assert fake_tg.sent() == []


class DiesInFlight:
    """An adapter whose process dies during its Nth call: the call never returns."""

    channel = "telegram"
    ready = None

    def __init__(self, inner, die_at: int):
        self.inner = inner
        self.die_at = die_at
        self.calls = 0
        self.hung = asyncio.Event()

    async def send_text(self, chat_id, kind, text):
        self.calls += 1
        if self.calls == self.die_at:
            self.hung.set()
            await asyncio.Event().wait()
        return await self.inner.send_text(chat_id, kind, text)


async def crash_mid_batch(world, tg_bot, clock, sent_before_crash: int):
    """A sender sends some, then dies (cancelled: no cleanup at all) during the next call."""
    dead = make_sender(world, tg_bot, clock, lease_ttl=5, concurrency=1)
    adapter = DiesInFlight(dead.adapters["telegram"], sent_before_crash + 1)
    dead.adapters["telegram"] = adapter
    task = asyncio.create_task(dead.run_once())
    await asyncio.wait_for(adapter.hung.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("sent_before_crash", [0, 2])
async def test_resume_after_a_crash_while_sending(world, fake_tg, tg_bot, clock, sent_before_crash):
    b = await approved(world, clock)
    await crash_mid_batch(world, tg_bot, clock, sent_before_crash)
    assert len(fake_tg.sent()) == sent_before_crash
    successor = make_sender(world, tg_bot, clock, lease_ttl=5)
    assert await successor.run_once() == 0  # the dead sender's lease is still live
    clock.advance(seconds=6)
    await successor.run_once()
    chats = [m["chat_id"] for m in fake_tg.sent()]
    assert len(chats) == len(set(chats)) == 4  # nothing twice; the one in flight is not repeated
    async with world.transaction() as session:
        totals = await repo.totals(session, b.id)
        assert totals == {DeliveryStatus.SENT: 4, DeliveryStatus.UNKNOWN: 1}
        assert (await repo.get(session, b.id)).status == BroadcastStatus.DONE
    assert successor.recovered_unknown == 1


@pytest.mark.parametrize("status", ["draft", "awaiting_approval", "scheduled", "paused", "done", "cancelled"])
async def test_resume_after_a_crash_at_every_status(world, fake_tg, tg_bot, clock, status):
    now = clock()
    b = await workflow.create(world, TEAM_A, "Tin", Audience("communes", ("xa_a",)), now)
    if status != "draft":
        await workflow.submit(world, TEAM_A, b.id, now)
    if status not in ("draft", "awaiting_approval"):
        await workflow.approve(world, OFFICER, b.id, now)
    dead = make_sender(world, tg_bot, clock, lease_ttl=5, batch=2, concurrency=1)
    if status in ("paused", "done", "cancelled"):
        await dead.run_once()  # two sent
        if status == "paused":
            await workflow.pause(world, TEAM_A, b.id, now)
        elif status == "cancelled":
            await workflow.cancel(world, TEAM_A, b.id, now)
        else:
            for _ in range(3):
                await dead.run_once()
    else:
        assert await dead.hold_lease()
    before = len(fake_tg.sent())
    # The sender dies (no release); another takes over after the lease runs out.
    clock.advance(seconds=6)
    successor = make_sender(world, tg_bot, clock, lease_ttl=5)
    for _ in range(2):
        await successor.run_once()
    async with world.transaction() as session:
        after = (await repo.get(session, b.id)).status
    chats = [m["chat_id"] for m in fake_tg.sent()]
    assert len(chats) == len(set(chats))
    expected = {
        "draft": (BroadcastStatus.DRAFT, 0),
        "awaiting_approval": (BroadcastStatus.AWAITING_APPROVAL, 0),
        "scheduled": (BroadcastStatus.DONE, 5),
        "paused": (BroadcastStatus.PAUSED, 2),
        "done": (BroadcastStatus.DONE, 5),
        "cancelled": (BroadcastStatus.CANCELLED, 2),
    }[status]
    assert (after, len(chats)) == expected
    assert len(chats) >= before
    if status == "paused":
        await workflow.resume(world, TEAM_A, b.id, clock())
        for _ in range(2):
            await successor.run_once()
        chats = [m["chat_id"] for m in fake_tg.sent()]
        assert len(chats) == len(set(chats)) == 5


async def test_a_start_cut_short_is_done_again_without_duplicate_rows(world, fake_tg, tg_bot, clock):
    """A sender died while writing a broadcast's rows (some written, the broadcast still scheduled):
    the next start writes them all again, once, and everyone gets the message once."""
    from bot.broadcasts.audience import resolve

    b = await approved(world, clock)
    async with world.transaction() as session:
        recipients = await resolve(session, Audience("communes", ("xa_a",)))
        await repo.add_deliveries(session, b.id, recipients[:3], clock(), staged_by="dead-sender")
        await repo.recover(session, clock())  # what a successor's lease takeover does first
    successor = make_sender(world, tg_bot, clock, lease_ttl=5)
    await successor.run_once()
    chats = [m["chat_id"] for m in fake_tg.sent()]
    assert sorted(chats) == sorted([-1001, -1002, 11, 12, 13])
    async with world.transaction() as session:
        assert await repo.totals(session, b.id) == {DeliveryStatus.SENT: 5}
        assert (await repo.get(session, b.id)).status == BroadcastStatus.DONE


async def test_a_broadcast_cancelled_while_it_starts_sends_nothing(world, fake_tg, tg_bot, clock):
    """The team cancels just as the sender starts the broadcast (its rows written one per transaction):
    whichever comes first, nothing is sent and no row is left waiting."""
    b = await approved(world, clock)
    sender = make_sender(world, tg_bot, clock, start_chunk=1)
    cancelling = asyncio.create_task(workflow.cancel(world, TEAM_A, b.id, clock()))
    await sender.start_due()
    await cancelling
    await sender.run_once()
    assert fake_tg.sent() == []
    async with world.transaction() as session:
        assert set(await repo.totals(session, b.id)) <= {DeliveryStatus.CANCELLED}
        assert (await repo.get(session, b.id)).status == BroadcastStatus.CANCELLED


async def test_writes_queued_together_share_one_commit_and_a_bad_one_fails_alone(world, clock):
    from bot.broadcasts.sender import DeliveryWriter

    b = await approved(world, clock)
    holder = "sender-1"
    async with world.transaction() as session:
        from bot.broadcasts.audience import resolve

        await repo.add_deliveries(session, b.id, await resolve(session, Audience("communes", ("xa_a",))), clock(), staged_by=holder)
        ids = [d.id for d in await repo.deliveries(session, b.id)]
    writer = DeliveryWriter(world, holder)
    await asyncio.gather(*(writer.settle(i, clock(), {"status": DeliveryStatus.SENT}) for i in ids[:3]))
    assert (writer.commits, writer.writes) == (1, 3)

    async def broken(session):
        raise RuntimeError("a bug in a side effect")

    results = await asyncio.gather(
        writer.settle(ids[3], clock(), {"status": DeliveryStatus.FAILED, "last_error": "x"}),
        writer.settle(ids[4], clock(), {"status": DeliveryStatus.SENT}, broken),
        return_exceptions=True,
    )
    assert results[0] is None and isinstance(results[1], RuntimeError)
    async with world.transaction() as session:
        rows = {d.id: d for d in await repo.deliveries(session, b.id)}
    assert [rows[i].status for i in ids] == ["sent", "sent", "sent", "failed", "pending"]
    assert rows[ids[4]].claimed_by == holder and rows[ids[0]].claimed_by is None
