"""Pacing of a channel, and Zalo OA's unreachable people and closed 7-day window."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from bot.broadcasts.adapters import Result, SendResult, zalo_oa_result
from bot.channels import zalo_oa
from bot.broadcasts.model import Audience
from bot.broadcasts.pacing import TELEGRAM, ChannelPacer, PacingRules
from bot.broadcasts.sender import Sender, SenderConfig
from storage import broadcasts as repo
from storage import people
from storage.broadcasts import DeliveryStatus
from storage.models import User
from bot.broadcasts.workflow import Actor
from tests.broadcasts.conftest import approved


async def test_overall_rate_is_never_exceeded():
    pacer = ChannelPacer(PacingRules(rate=40.0, group_spacing=3.0, private_spacing=1.0))
    stamps = []
    for _ in range(20):
        await pacer.acquire()
        stamps.append(time.monotonic())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert min(gaps) >= 1 / 40 * 0.8  # steady, no burst above the rate
    assert stamps[-1] - stamps[0] >= 19 / 40 * 0.9


def test_spacing_per_chat_and_kind():
    now = [100.0]
    pacer = ChannelPacer(TELEGRAM, clock=lambda: now[0])
    assert pacer.chat_wait("-1", "group") == 0
    pacer.note_send("-1")
    pacer.note_send("7")
    now[0] += 0.5
    assert pacer.chat_wait("-1", "group") == 2.5  # 3 s between two messages to one group
    assert pacer.chat_wait("7", "private") == 0.5  # 1 s to one private chat
    assert pacer.chat_wait("8", "private") == 0


async def test_a_pause_holds_every_call_of_the_channel():
    pacer = ChannelPacer(PacingRules(rate=100.0, group_spacing=3.0, private_spacing=1.0))
    pacer.pause(0.4)
    started = time.monotonic()
    await pacer.acquire()
    assert time.monotonic() - started >= 0.35


def test_zalo_oa_errors():
    assert zalo_oa_result(-213, 200, "not follower").result is Result.BLOCKED
    assert zalo_oa_result(-230, 200, "no interaction 7 days").result is Result.NO_WINDOW
    assert zalo_oa_result(-232, 200, "").result is Result.NO_WINDOW
    assert zalo_oa_result(-32, 200, "rate").result is Result.RETRY_AFTER
    assert zalo_oa_result(-1002, 0, "timeout").result is Result.AMBIGUOUS
    assert zalo_oa_result(0, 503, "").result is Result.TRANSIENT
    assert zalo_oa_result(-201, 200, "bad param").result is Result.FAILED


@pytest.mark.parametrize("code", sorted(zalo_oa.UNREACHABLE))
def test_a_person_or_group_the_oa_channel_cannot_reach_is_counted_as_such_by_broadcasts(code):
    """The channel's unreachable codes (-213 -217 -227 -230 -232 -234 -244, groups -237 -403) are the
    broadcast report's "blocked" / "no_window", never a failure to retry."""
    assert zalo_oa_result(code, 200, "").result in (Result.BLOCKED, Result.NO_WINDOW)


class RecordingZalo:
    """A Zalo OA adapter double: records each send; person 77 has not written for 7 days, 78 unfollowed."""

    channel = "zalo_oa"

    def __init__(self):
        self.sent = []

    async def send_text(self, chat_id, kind, text):
        self.sent.append(chat_id)
        if chat_id == "77":
            return zalo_oa_result(-230, 200, "user has not interacted in 7 days")
        if chat_id == "78":
            return zalo_oa_result(-213, 200, "user is not a follower")
        return SendResult(Result.SENT, message_id="m1")


async def test_zalo_no_window_and_unfollowed_are_recorded_and_never_retried(world, clock):
    async with world.transaction() as session:
        for uid in ("76", "77", "78"):
            user = await people.touch_user(session, "zalo_oa", uid, clock())
            user.hamlet_code = "b1"
    audience = Audience("hamlets", ("b1",), kinds=("private",), channels=("zalo_oa",))
    b = await approved(world, clock, audience=audience, author=Actor("telegram:43", officer=True))
    zalo = RecordingZalo()
    sender = Sender(world, {"zalo_oa": zalo}, {"zalo_oa": ChannelPacer(PacingRules(200.0, 3.0, 1.0))}, config=SenderConfig(), clock=clock)
    await sender.run_once()
    clock.advance(hours=1)
    await asyncio.sleep(1.1)
    await sender.run_once()
    assert sorted(zalo.sent) == ["76", "77", "78"]  # each called once, no retry loop
    async with world.transaction() as session:
        got = {d.chat_id: d.status for d in await repo.deliveries(session, b.id)}
        inactive = set((await session.execute(select(User.external_id).where(User.active.is_(False)))).scalars())
    assert got == {"76": DeliveryStatus.SENT, "77": DeliveryStatus.NO_WINDOW, "78": DeliveryStatus.BLOCKED}
    assert inactive == {"77", "78"}


async def test_a_delivery_may_be_prepared_just_before_a_pause_ends_but_not_sent():
    """`acquire(lead)` lets the sender record a call in the last moments of a pause; `space()`, just
    before the call itself, still waits for the end."""
    now = [100.0]
    pacer = ChannelPacer(PacingRules(rate=100.0, group_spacing=3.0, private_spacing=1.0), clock=lambda: now[0])
    pacer.pause(1.0)
    now[0] = 100.9  # 0.1 s of the pause left
    await asyncio.wait_for(pacer.acquire(lead=0.2), 1.0)
    try:
        await asyncio.wait_for(pacer.space(), 0.3)
    except asyncio.TimeoutError:
        pass  # still paused: the call waits (this clock does not move by itself)
    else:
        raise AssertionError("a call went out during the pause")
    now[0] = 101.0
    await asyncio.wait_for(pacer.space(), 1.0)
