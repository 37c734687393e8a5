"""What the platform channels share: ordered per-chat work, durable deliveries, secrets, mentions and timestamps."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from bot.channels.common import (
    DeliveryLedger,
    OrderedWork,
    epoch_time,
    recover_forever,
    recover_once,
    remove_mention,
    secret_matches,
)
from storage import deliveries
from storage.db import Database
from storage.migrate import upgrade
from tests.fakes.deliveries import delivery, leave_unfinished


async def test_jobs_of_one_chat_run_in_order_and_chats_do_not_wait_for_each_other():
    work = OrderedWork("test")
    release = asyncio.Event()
    done: list[str] = []

    def job(name: str, wait: bool = False):
        async def run() -> None:
            if wait:
                await release.wait()
            done.append(name)

        return run

    work.submit("a", job("a1", wait=True))
    work.submit("a", job("a2"))
    work.submit("b", job("b1"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert done == ["b1"]  # b is not held up by a
    release.set()
    await work.drain()
    assert done == ["b1", "a1", "a2"]


async def test_a_failing_job_does_not_stop_the_chat():
    work = OrderedWork("test")
    done: list[str] = []

    async def fails() -> None:
        raise RuntimeError("boom")

    async def works() -> None:
        done.append("ok")

    work.submit("a", fails)
    work.submit("a", works)
    await work.drain()
    assert done == ["ok"]


async def test_a_chat_is_served_again_after_its_worker_was_cancelled():
    work = OrderedWork("test")
    done: list[str] = []

    async def cancelled() -> None:
        raise asyncio.CancelledError  # e.g. a library cancelling the request it was awaiting

    async def works() -> None:
        done.append("ok")

    work.submit("a", cancelled)
    await work.drain()
    work.submit("a", works)
    await work.drain()
    assert done == ["ok"] and work.busy == 0


async def test_jobs_wait_for_the_gate():
    gate = asyncio.Event()
    work = OrderedWork("test", gate=gate)
    done: list[str] = []

    async def job() -> None:
        done.append("ran")

    work.submit("a", job)
    for _ in range(5):
        await asyncio.sleep(0)
    assert done == []
    gate.set()
    await work.drain()
    assert done == ["ran"]


async def test_close_cancels_what_does_not_finish_in_time():
    work = OrderedWork("test")
    never = asyncio.Event()

    async def stuck() -> None:
        await never.wait()

    work.submit("a", stuck)
    await work.close(timeout=0)
    assert work.busy == 0


def test_secret_matches_only_the_exact_secret():
    assert secret_matches("s3cret-token", "s3cret-token")
    assert not secret_matches("s3cret-toke", "s3cret-token")
    assert not secret_matches(None, "s3cret-token")
    assert not secret_matches("", "")
    assert not secret_matches("\udcff\udcfe", "s3cret-token")  # undecodable header bytes, as aiohttp keeps them


def test_remove_mention():
    assert remove_mention("@CCCD Bot mất căn cước", ["CCCD Bot"]) == "mất căn cước"
    assert remove_mention("hỏi @cccd bot: mất căn cước", ["CCCD Bot"]) == "hỏi mất căn cước"
    assert remove_mention("mất căn cước", ["CCCD Bot"]) is None
    assert remove_mention("@CCCD Bot", ["", "CCCD Bot"]) == ""


def test_epoch_time_reads_seconds_and_milliseconds():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    fallback = datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert epoch_time(int(when.timestamp()), lambda: fallback) == when
    assert epoch_time(str(int(when.timestamp() * 1000)), lambda: fallback) == when
    for bad in (None, "", "soon", True, -5, 10**30, float("nan")):
        assert epoch_time(bad, lambda: fallback) == fallback


# -- durable deliveries ----------------------------------------------------------------------------


class FakeChannel:
    """A channel as recovery sees it: a ledger, a gate, ordered work, and resubmit."""

    def __init__(self, db, clock, **ledger_options) -> None:
        self.ready = asyncio.Event()
        self.ready.set()
        self.work = OrderedWork("fake", gate=self.ready)
        self.ledger = DeliveryLedger(db, "fake", clock=clock, **ledger_options)
        self.handled: list[dict] = []
        self.hold: asyncio.Event | None = None

    async def accept(self, key: str, payload: dict) -> bool:
        if not await self.ledger.claim(key, payload):
            return False
        self.work.submit(payload["chat"], self.ledger.finishing(key, lambda: self.process(payload)))
        return True

    async def resubmit(self, key: str, payload: dict) -> bool:
        if payload.get("poison"):
            raise ValueError("cannot be read")
        self.work.submit(payload["chat"], self.ledger.finishing(key, lambda: self.process(payload)))
        return True

    async def process(self, payload: dict) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if payload.get("fails"):
            raise RuntimeError("a handled error")
        self.handled.append(payload)


async def test_a_finished_delivery_is_not_recovered_and_its_payload_is_dropped(database, clock):
    channel = FakeChannel(database, clock, recover_after=timedelta(seconds=120))
    assert await channel.accept("u1", {"chat": "a", "text": "hi"})
    assert await channel.accept("u2", {"chat": "a", "fails": True})  # a handled error finishes it too
    await channel.work.drain()
    assert channel.handled == [{"chat": "a", "text": "hi"}]
    for key in ("u1", "u2"):
        row = await delivery(database, "fake", key)
        assert row.done and row.payload is None
    clock.advance(hours=1)
    assert await recover_once(channel) == 0
    assert channel.handled == [{"chat": "a", "text": "hi"}]


async def test_a_cancelled_delivery_is_recovered_once_after_a_restart(database, clock):
    first = FakeChannel(database, clock)
    first.hold = asyncio.Event()  # never released: the process "crashes" while handling it
    assert await first.accept("u1", {"chat": "a", "text": "hi"})
    assert await first.accept("u2", {"chat": "a", "text": "again"})  # queued behind it
    for _ in range(5):
        await asyncio.sleep(0)
    await first.work.close(timeout=0)
    first.ledger.forget_pending()
    assert first.handled == []
    row = await delivery(database, "fake", "u1")
    assert not row.done and row.payload == {"chat": "a", "text": "hi"}

    # A duplicate of the unfinished delivery is still dropped.
    restarted = FakeChannel(database, clock)
    assert not await restarted.accept("u1", {"chat": "a", "text": "hi"})
    assert await recover_once(restarted) == 0  # not older than recover_after yet
    clock.advance(seconds=121)
    assert await recover_once(restarted) == 2
    assert await recover_once(restarted) == 0  # taken: not taken twice
    await restarted.work.drain()
    assert restarted.handled == [{"chat": "a", "text": "hi"}, {"chat": "a", "text": "again"}]  # in order
    clock.advance(hours=1)
    assert await recover_once(restarted) == 0
    assert len(restarted.handled) == 2
    row = await delivery(database, "fake", "u1")
    assert row.done and row.payload is None and row.attempts == 1


async def test_a_slow_delivery_still_queued_here_is_not_taken_for_a_lost_one(database, clock):
    channel = FakeChannel(database, clock)
    channel.hold = asyncio.Event()
    assert await channel.accept("u1", {"chat": "a", "text": "slow"})
    other = FakeChannel(database, clock)  # another process
    for _ in range(3):
        clock.advance(seconds=61)
        assert await recover_once(channel) == 0  # renews its own queued delivery
        assert await recover_once(other) == 0
    channel.hold.set()
    await channel.work.drain()
    await other.work.drain()
    assert channel.handled == [{"chat": "a", "text": "slow"}] and other.handled == []


async def test_deliveries_waiting_for_the_channel_to_be_ready_stay_ours(database, clock):
    channel = FakeChannel(database, clock, recover_every=0.01)
    channel.ready.clear()  # e.g. getMe keeps failing: queued deliveries wait for the gate
    assert await channel.accept("u1", {"chat": "a", "text": "early"})
    loop = asyncio.create_task(recover_forever(channel))
    try:
        clock.advance(seconds=121)
        await asyncio.sleep(0.1)  # a few rounds: renewed, not recovered
        other = FakeChannel(database, clock)
        assert await recover_once(other) == 0
        channel.ready.set()
        await asyncio.sleep(0.05)
        await channel.work.drain()
        assert channel.handled == [{"chat": "a", "text": "early"}]  # once
        assert (await delivery(database, "fake", "u1")).done
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_a_delivery_that_never_ends_is_given_up_after_max_attempts(database, clock, caplog):
    channel = FakeChannel(database, clock, max_attempts=2)
    channel.hold = asyncio.Event()  # every attempt "crashes"
    assert await channel.accept("u1", {"chat": "a", "text": "poison"})
    for attempt in (1, 2):
        await channel.work.close(timeout=0)
        channel.ledger.forget_pending()
        clock.advance(seconds=121)
        assert await recover_once(channel) == 1
        assert (await delivery(database, "fake", "u1")).attempts == attempt
    await channel.work.close(timeout=0)
    channel.ledger.forget_pending()
    clock.advance(seconds=121)
    with caplog.at_level("ERROR"):
        assert await recover_once(channel) == 0
    assert "given up" in caplog.text
    row = await delivery(database, "fake", "u1")
    assert row.done and row.payload is None
    clock.advance(hours=1)
    assert await recover_once(channel) == 0
    assert channel.handled == []


async def test_a_payload_that_cannot_be_rebuilt_is_given_up_at_once(database, clock):
    await leave_unfinished(database, "fake", "bad", {"chat": "a", "poison": True})
    channel = FakeChannel(database, clock)
    clock.now = datetime.now(timezone.utc)
    assert await recover_once(channel) == 0
    assert (await delivery(database, "fake", "bad")).done


async def test_two_ledgers_never_take_the_same_delivery(db_url, clock):
    dbs = [Database(db_url), Database(db_url)]
    await dbs[0].migrate()
    try:
        for i in range(40):
            await leave_unfinished(dbs[0], "fake", f"k{i:02d}", {"chat": str(i % 4), "n": i})
        clock.now = datetime.now(timezone.utc)
        ledgers = [DeliveryLedger(db, "fake", clock=clock, batch=25) for db in dbs]
        rounds = await asyncio.gather(*(ledger.take_unfinished() for ledger in ledgers for _ in range(3)))
        keys = [key for taken in rounds for key, _ in taken]
        assert sorted(keys) == [f"k{i:02d}" for i in range(40)]  # each taken exactly once
    finally:
        for db in dbs:
            await db.close()


async def test_a_taker_holding_rows_never_stalls_another(db_url, clock):
    if db_url.startswith("sqlite"):
        pytest.skip("row locks are PostgreSQL's; SQLite serialises its writers")
    dbs = [Database(db_url), Database(db_url)]
    await dbs[0].migrate()
    try:
        for i in range(40):
            await leave_unfinished(dbs[0], "fake", f"k{i:02d}", {"chat": "a", "n": i})
        await leave_unfinished(dbs[0], "fake", "worn", {"chat": "a"})
        async with dbs[0].transaction() as session:
            await session.execute(text("UPDATE processed_updates SET attempts = 3 WHERE update_key = 'worn'"))
        clock.now = datetime.now(timezone.utc)
        other = DeliveryLedger(dbs[1], "fake", clock=clock, batch=25)
        async with dbs[0].transaction() as session:
            # This transaction stays open, holding its 25 rows and the exhausted one.
            held = await deliveries.take_unfinished(session, "fake", clock.now, timedelta(seconds=120), limit=25)
            taken = await asyncio.wait_for(other.take_unfinished(), 5)
        assert len(held) == 25 and len(taken) == 15
        assert not {k for k, _ in held} & {k for k, _ in taken}
        assert (await delivery(dbs[0], "fake", "worn")).done  # given up by the holder
    finally:
        for db in dbs:
            await db.close()


async def test_prune_keeps_unfinished_deliveries(database, clock):
    await leave_unfinished(database, "fake", "old-unfinished", {"chat": "a"}, age=timedelta(days=30))
    ledger = DeliveryLedger(database, "fake", clock=clock)
    clock.now = datetime.now(timezone.utc) - timedelta(days=30)
    assert await ledger.claim("old-done")
    clock.now = datetime.now(timezone.utc)
    assert await ledger.claim("new", {"chat": "a"})  # prunes
    assert await delivery(database, "fake", "old-done") is None
    assert (await delivery(database, "fake", "old-unfinished")) is not None


async def test_rows_from_before_the_migration_count_as_done(db_url):
    await upgrade(db_url, "0001")
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            await session.execute(
                text("INSERT INTO processed_updates (channel, update_key, created_at) VALUES ('fake', 'k', '2026-01-01 00:00:00')")
            )
        await db.migrate()
        row = await delivery(db, "fake", "k")
        assert row.done and row.payload is None and row.attempts == 0
    finally:
        await db.close()
