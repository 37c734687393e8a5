"""The sender against a fake Bot API over real HTTP, through python-telegram-bot's Bot."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bot.broadcasts import workflow
from bot.broadcasts.model import Audience
from bot.broadcasts.pacing import TELEGRAM
from storage import broadcasts as repo
from storage.broadcasts import BroadcastStatus, DeliveryStatus
from storage.models import Chat, User
from tests.broadcasts.conftest import OFFICER, TEAM_A, approved, make_sender


async def statuses(db, broadcast_id):
    async with db.transaction() as session:
        return {(d.chat_id): d.status for d in await repo.deliveries(session, broadcast_id)}


async def test_sends_once_to_every_recipient_of_the_commune(world, fake_tg, tg_bot, clock):
    b = await approved(world, clock)
    sender = make_sender(world, tg_bot, clock)
    assert await sender.run_once() == 5
    sent = sorted(m["chat_id"] for m in fake_tg.sent())
    assert sent == sorted([-1001, -1002, 11, 12, 13])  # commune A only: not b1's group, not 21, not 30
    assert all(m["text"].startswith("Thông báo") for m in fake_tg.sent())
    assert set((await statuses(world, b.id)).values()) == {DeliveryStatus.SENT}
    async with world.transaction() as session:
        assert (await repo.get(session, b.id)).status == BroadcastStatus.DONE
    # A second pass sends nothing again.
    assert await sender.run_once() == 0
    assert len(fake_tg.sent()) == 5


async def test_opted_out_person_is_skipped_and_reported(world, fake_tg, tg_bot, clock):
    async with world.transaction() as session:
        await repo.set_opted_out(session, "telegram", "12", True)
    b = await approved(world, clock)
    await make_sender(world, tg_bot, clock).run_once()
    assert 12 not in [m["chat_id"] for m in fake_tg.sent()]
    assert (await statuses(world, b.id))["12"] == DeliveryStatus.OPTED_OUT


async def test_opt_out_after_the_start_is_still_honoured(world, fake_tg, tg_bot, clock):
    b = await approved(world, clock)
    sender = make_sender(world, tg_bot, clock)
    await sender.start_due()
    async with world.transaction() as session:
        await repo.set_opted_out(session, "telegram", "11", True)
    await sender.run_once()
    assert 11 not in [m["chat_id"] for m in fake_tg.sent()]
    assert (await statuses(world, b.id))["11"] == DeliveryStatus.OPTED_OUT


async def test_forbidden_marks_blocked_and_the_chat_is_skipped_next_time(world, fake_tg, tg_bot, clock):
    fake_tg.block(13)
    b = await approved(world, clock)
    await make_sender(world, tg_bot, clock).run_once()
    assert (await statuses(world, b.id))["13"] == DeliveryStatus.BLOCKED
    async with world.transaction() as session:
        user = (await session.execute(select(User).where(User.external_id == "13"))).scalar_one()
        assert user.active is False
    b2 = await approved(world, clock, "Tin thứ hai.")
    await make_sender(world, tg_bot, clock).run_once()
    assert "13" not in await statuses(world, b2.id)


async def test_retry_after_pauses_the_channel_for_the_time_asked(world, fake_tg, tg_bot, clock):
    fake_tg.fail("sendMessage", 429, retry_after=1, times=1)
    b = await approved(world, clock, audience=Audience("hamlets", ("a1",), kinds=("private",)))
    sender = make_sender(world, tg_bot, clock, concurrency=1)
    await sender.run_once()
    first, second = fake_tg.calls_of("sendMessage")
    assert getattr(first, "refused", False) and not getattr(second, "refused", False)
    # The other recipient waited out the pause the server asked for, though the rate allowed more.
    assert second.at - first.at >= 1.0
    clock.advance(seconds=1)
    await asyncio.sleep(1.0)  # the refused chat's own spacing
    await sender.run_once()
    assert sorted(m["chat_id"] for m in fake_tg.sent()) == [11, 12]
    async with world.transaction() as session:
        rows = await repo.deliveries(session, b.id)
    assert {d.status for d in rows} == {DeliveryStatus.SENT}
    assert [d.attempts for d in rows] == [1, 1]  # the 429 does not count as a failed attempt


async def test_server_errors_back_off_then_fail_with_the_reason(world, fake_tg, tg_bot, clock):
    fake_tg.fail("sendMessage", 500, times=None, chat_id=13)
    b = await approved(world, clock, audience=Audience("hamlets", ("a2",), kinds=("private",)))
    sender = make_sender(world, tg_bot, clock, max_attempts=3, backoff_base=10.0, frozen_pacer=True)
    delays = []
    for _ in range(3):
        await sender.run_once()
        async with world.transaction() as session:
            d = (await repo.deliveries(session, b.id))[0]
        if d.status != DeliveryStatus.PENDING:
            break
        delays.append((repo_aware(d.next_attempt_at) - clock()).total_seconds())
        assert await sender.run_once() == 0  # not due yet
        clock.advance(seconds=delays[-1] + 0.01)
    assert d.status == DeliveryStatus.FAILED
    assert "gave up after 3 attempts" in d.last_error and "Internal Server Error" in d.last_error
    assert 5 <= delays[0] <= 15 and 10 <= delays[1] <= 30  # 10 s then 20 s, with jitter of 0.5-1.5
    assert len(fake_tg.calls_of("sendMessage")) == 3


def repo_aware(value):
    from bot.broadcasts.sender import aware

    return aware(value)


async def test_timeouts_are_retried(world, fake_tg, tg_bot, clock):
    fake_tg.chaos(rate_timeout=1.0, hang=2.0)
    b = await approved(world, clock, audience=Audience("hamlets", ("a2",), kinds=("private",)))
    sender = make_sender(world, tg_bot, clock)
    await sender.run_once()
    fake_tg._chaos = None
    async with world.transaction() as session:
        d = (await repo.deliveries(session, b.id))[0]
    assert d.status == DeliveryStatus.PENDING and "timeout" in d.last_error.lower()
    clock.advance(seconds=5)
    await sender.run_once()
    assert [m["chat_id"] for m in fake_tg.sent()] == [13]
    assert (await statuses(world, b.id))["13"] == DeliveryStatus.SENT


async def test_group_upgraded_to_supergroup_is_sent_to_the_new_id(world, fake_tg, tg_bot, clock):
    fake_tg.upgrade_to_supergroup(-1002, -100777)
    await approved(world, clock, audience=Audience("hamlets", ("a2",), kinds=("group",)))
    sender = make_sender(world, tg_bot, clock)
    await sender.run_once()
    await sender.run_once()
    assert [m["chat_id"] for m in fake_tg.sent()] == [-100777]
    async with world.transaction() as session:
        chat = (await session.execute(select(Chat).where(Chat.external_id == "-100777"))).scalar_one()
        assert chat.hamlet_code == "a2"


async def test_long_text_is_split_and_parts_to_a_group_are_spaced(world, fake_tg, tg_bot, clock):
    text = ("Bước một: chuẩn bị giấy tờ. " * 200).strip()  # ~5,600 characters: two Telegram messages
    b = await approved(world, clock, text, audience=Audience("hamlets", ("a2",), kinds=("group",)))
    sender = make_sender(world, tg_bot, clock)
    await sender.run_once()
    assert len(fake_tg.sent(-1002)) == 1
    async with world.transaction() as session:
        d = (await repo.deliveries(session, b.id))[0]
    assert d.status == DeliveryStatus.PENDING and d.parts_sent == 1
    clock.advance(seconds=3)
    await asyncio.sleep(3.0)  # the pacer's own spacing runs on the monotonic clock
    await sender.run_once()
    parts = fake_tg.sent(-1002)
    assert len(parts) == 2 and all(len(p["text"]) <= 4096 for p in parts)
    assert " ".join(p["text"] for p in parts).split() == text.split()
    gap = fake_tg.calls_of("sendMessage")[1].at - fake_tg.calls_of("sendMessage")[0].at
    assert gap >= TELEGRAM.group_spacing
    assert (await statuses(world, b.id))["-1002"] == DeliveryStatus.SENT


async def test_cancel_mid_run_stops_the_rest(world, fake_tg, tg_bot, clock):
    b = await approved(world, clock)
    sender = make_sender(world, tg_bot, clock, batch=2, concurrency=1)
    await sender.start_due()
    await sender.run_once()
    assert len(fake_tg.sent()) == 2
    await workflow.cancel(world, TEAM_A, b.id, clock())
    await sender.run_once()
    assert len(fake_tg.sent()) == 2
    s = await statuses(world, b.id)
    assert sorted(s.values()) == sorted([DeliveryStatus.SENT] * 2 + [DeliveryStatus.CANCELLED] * 3)
    async with world.transaction() as session:
        assert (await repo.get(session, b.id)).status == BroadcastStatus.CANCELLED


async def test_pause_and_resume(world, fake_tg, tg_bot, clock):
    b = await approved(world, clock)
    sender = make_sender(world, tg_bot, clock, batch=2, concurrency=1)
    await sender.run_once()
    await workflow.pause(world, TEAM_A, b.id, clock())
    await sender.run_once()
    assert len(fake_tg.sent()) == 2
    await workflow.resume(world, OFFICER, b.id, clock())
    for _ in range(3):
        await sender.run_once()
    assert len(fake_tg.sent()) == 5
    assert len({m["chat_id"] for m in fake_tg.sent()}) == 5


async def test_quiet_hours_pause_and_resume_after(world, fake_tg, tg_bot, clock):
    # 14:30 UTC is 21:30 in Asia/Ho_Chi_Minh: inside the default quiet hours (21:00-07:00).
    clock.now = clock.now.replace(hour=14, minute=30)
    b = await approved(world, clock)
    sender = make_sender(world, tg_bot, clock)
    await sender.run_once()
    assert fake_tg.sent() == []
    async with world.transaction() as session:
        rows = await repo.deliveries(session, b.id)
    # Resumes at 07:00 local = 00:00 UTC the next day.
    assert {repo_aware(d.next_attempt_at).isoformat() for d in rows} == {"2026-11-03T00:00:00+00:00"}
    clock.now = clock.now.replace(day=3, hour=0, minute=0)
    await sender.run_once()
    assert len(fake_tg.sent()) == 5


async def test_quiet_hours_are_set_per_commune(world, fake_tg, tg_bot, clock):
    clock.now = clock.now.replace(hour=14, minute=30)  # 21:30 local
    async with world.transaction() as session:
        await repo.set_policy(session, "xa_a", quiet_start="22:00", quiet_end="06:00")
    await approved(world, clock)
    await make_sender(world, tg_bot, clock).run_once()
    assert len(fake_tg.sent()) == 5


async def test_run_until_idle_sends_everything_and_gives_the_lease_back(world, fake_tg, tg_bot, clock):
    from storage import leases

    b = await approved(world, clock)
    sender = make_sender(world, tg_bot, clock, batch=2, concurrency=3)
    await asyncio.wait_for(sender.run(asyncio.Event(), until_idle=True), 30)
    assert sorted(m["chat_id"] for m in fake_tg.sent()) == sorted([-1001, -1002, 11, 12, 13])
    async with world.transaction() as session:
        assert (await repo.get(session, b.id)).status == BroadcastStatus.DONE
        assert await leases.acquire(session, "broadcast-sender", "someone-else", clock(), __import__("datetime").timedelta(seconds=5))


async def test_a_communes_own_quiet_hours_hold_while_the_sender_reads_them_again(world, fake_tg, tg_bot, clock):
    """The sender reads the communes' quiet hours again every minute; deliveries claimed before that
    must still follow their commune's rule, not the default (here: off, at 21:30 local time)."""
    clock.now = clock.now.replace(hour=14, minute=30)  # 21:30 local: inside the default quiet hours
    async with world.transaction() as session:
        await repo.set_policy(session, "xa_a", quiet_start="00:00", quiet_end="00:00")  # no quiet hours
    b = await approved(world, clock)
    sender = make_sender(world, tg_bot, clock, batch=5, concurrency=1)
    base = clock.now

    class Ticking:
        """A clock that moves 30 s each time it is read: the minute passes while the batch is sent."""

        def __init__(self):
            self.n = 0

        def __call__(self):
            self.n += 1
            return base + __import__("datetime").timedelta(seconds=30 * self.n)

    sender.clock = Ticking()
    await asyncio.wait_for(sender.run(asyncio.Event(), until_idle=True), 60)
    assert sorted(m["chat_id"] for m in fake_tg.sent()) == sorted([-1001, -1002, 11, 12, 13])
    async with world.transaction() as session:
        assert (await repo.get(session, b.id)).status == BroadcastStatus.DONE
