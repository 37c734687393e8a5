"""What the platform channels share: ordered per-chat work, secrets, mentions and timestamps."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from bot.channels.common import OrderedWork, epoch_time, remove_mention, secret_matches


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
