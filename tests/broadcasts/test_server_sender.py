"""`cccd-bot serve` runs the broadcast sender: through the channels' own clients, one per deployment."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.broadcasts.runner import BROADCAST_SENDER
from bot.config import Settings
from bot.server import create_app
from storage import broadcasts as repo
from storage import leases
from storage.broadcasts import BroadcastStatus, DeliveryStatus
from tests.broadcasts.conftest import approved
from tests.fakes.telegram_api import FakeTelegramAPI

RECIPIENTS = [-1001, -1002, 11, 12, 13]  # commune A's groups and subscribers


@pytest.fixture(autouse=True)
async def no_quiet_hours(world):
    """The server runs on the real clock: quiet hours off, so that the tests pass at any time of day."""
    async with world.transaction() as session:
        for commune in ("xa_a", "xa_b"):
            await repo.set_policy(session, commune, quiet_start="00:00", quiet_end="00:00")


def server_settings(db_url: str, fake: FakeTelegramAPI, **overrides) -> Settings:
    return Settings(
        _env_file=None,
        database_url=db_url,
        telegram_token=fake.token,
        telegram_base_url=fake.base_url,
        broadcast_lease_ttl=4.0,
        **overrides,
    )


async def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def broadcast_chats(fake: FakeTelegramAPI) -> list[int]:
    return [m["chat_id"] for m in fake.sent() if m["text"].startswith("Thông báo")]


async def status_of(db, broadcast_id: int) -> tuple[str, dict]:
    async with db.transaction() as session:
        return (await repo.get(session, broadcast_id)).status, await repo.totals(session, broadcast_id)


async def test_the_server_sends_an_approved_broadcast(world, db_url, fake_tg, catalog, clock):
    b = await approved(world, clock)
    app = create_app(server_settings(db_url, fake_tg), catalog, world, instance="srv-1")
    async with TestClient(TestServer(app)) as client:
        await wait_until(lambda: len(broadcast_chats(fake_tg)) == len(RECIPIENTS))
        ready = await (await client.get("/readyz")).json()
        assert ready["broadcast_sender_here"] is True
        await wait_until(lambda: app[BROADCAST_SENDER].lease_valid())
    assert sorted(broadcast_chats(fake_tg)) == sorted(RECIPIENTS)
    status, totals = await status_of(world, b.id)
    assert totals == {DeliveryStatus.SENT: len(RECIPIENTS)}
    # A clean stop gives the lease up at once, for a successor not to wait for it to run out.
    async with world.transaction() as session:
        lease = await leases.holder_of(session, "broadcast-sender")
    assert lease.holder == "srv-1/broadcasts"
    assert lease.expires_at.replace(tzinfo=timezone.utc) <= datetime.now(timezone.utc)


async def test_a_web_only_process_sends_nothing_and_a_sender_process_does(world, db_url, fake_tg, catalog, clock):
    b = await approved(world, clock)
    web_app = create_app(server_settings(db_url, fake_tg), catalog, world, role="web", instance="web-1")
    assert BROADCAST_SENDER not in web_app
    async with TestClient(TestServer(web_app)):
        await asyncio.sleep(1.0)
        assert broadcast_chats(fake_tg) == []
        assert (await status_of(world, b.id))[0] == BroadcastStatus.SCHEDULED
        sender_app = create_app(server_settings(db_url, fake_tg), catalog, world, role="sender", instance="snd-1")
        async with TestClient(TestServer(sender_app)):
            await wait_until(lambda: len(broadcast_chats(fake_tg)) == len(RECIPIENTS))
    assert sorted(broadcast_chats(fake_tg)) == sorted(RECIPIENTS)


async def test_two_servers_one_sender(world, db_url, fake_tg, catalog, clock):
    """Two full servers on one database: the lease lets one of them send; nothing goes out twice."""
    b = await approved(world, clock)
    apps = [create_app(server_settings(db_url, fake_tg), catalog, world, instance=f"srv-{i}") for i in (1, 2)]
    async with TestClient(TestServer(apps[0])), TestClient(TestServer(apps[1])):
        await wait_until(lambda: len(broadcast_chats(fake_tg)) == len(RECIPIENTS))
        holders = [app[BROADCAST_SENDER].lease_valid() for app in apps]
        assert holders.count(True) <= 1
    assert sorted(broadcast_chats(fake_tg)) == sorted(RECIPIENTS)
    assert (await status_of(world, b.id))[1] == {DeliveryStatus.SENT: len(RECIPIENTS)}


async def test_deliveries_wait_while_the_channel_is_not_connected(world, db_url, catalog, clock):
    """A broadcast due while Telegram is unreachable is put off, not failed, and goes out once it is back."""
    fake = FakeTelegramAPI()
    fake.fail("getMe", 502, times=3)
    await fake.start()
    try:
        b = await approved(world, clock)
        app = create_app(server_settings(db_url, fake), catalog, world, instance="srv-1")
        async with TestClient(TestServer(app)):
            await wait_until(lambda: len(broadcast_chats(fake)) == len(RECIPIENTS), timeout=30)
        status, totals = await status_of(world, b.id)
        assert totals == {DeliveryStatus.SENT: len(RECIPIENTS)}
    finally:
        await fake.close()


async def test_the_server_broadcasts_on_zalo_bot(world, db_url, catalog, clock):
    """Zalo Bot through the channel's own client: sent, a chat that no longer exists (404) is marked
    blocked and left out next time, a rate limit (429) is waited out and not counted as a failure."""
    from bot.broadcasts.model import Audience
    from storage import people
    from tests.fakes.zalo_api import FakeZaloBot

    now = clock()
    async with world.transaction() as session:
        group = await people.touch_chat(session, "zalo_bot", "zg-1", "group", now)
        group.hamlet_code = "a1"
        for user_id in ("zu-1", "zu-2"):
            user = await people.touch_user(session, "zalo_bot", user_id, now)
            user.hamlet_code = "a1"
            await people.touch_chat(session, "zalo_bot", user_id, "private", now)
    fake = FakeZaloBot()
    await fake.start()
    fake.fail("sendMessage", 429, "Too many requests", status=429)
    try:
        b = await approved(world, clock, audience=Audience("hamlets", ("a1",), channels=("zalo_bot",)))
        settings = Settings(_env_file=None, database_url=db_url, zalo_bot_token=fake.token, zalo_bot_base_url=fake.base_url)
        app = create_app(settings, catalog, world, instance="srv-z")
        blocked_once = False

        def done() -> bool:
            nonlocal blocked_once
            if not blocked_once and fake.calls_to("sendMessage"):
                fake.fail("sendMessage", 404, "chat not found")  # the next call after the 429
                blocked_once = True
            return sum(1 for c in fake.calls_to("sendMessage") if c.answer.get("ok")) >= 2

        async with TestClient(TestServer(app)):
            await wait_until(done, timeout=30)
            for _ in range(100):
                if (await status_of(world, b.id))[0] == BroadcastStatus.DONE:
                    break
                await asyncio.sleep(0.1)
        status, totals = await status_of(world, b.id)
        assert status == BroadcastStatus.DONE
        assert totals == {DeliveryStatus.SENT: 2, DeliveryStatus.BLOCKED: 1}
        async with world.transaction() as session:
            rows = await repo.deliveries(session, b.id)
        blocked = next(d for d in rows if d.status == DeliveryStatus.BLOCKED)
        assert "404" in (blocked.last_error or "")
        assert all(d.attempts == 1 for d in rows)  # the 429 was not counted as an attempt
        # The blocked chat is left out of the next broadcast's audience.
        from bot.broadcasts.audience import resolve

        async with world.transaction() as session:
            chats = {r.chat_id for r in await resolve(session, Audience("hamlets", ("a1",), channels=("zalo_bot",)))}
        assert blocked.chat_id not in chats and len(chats) == 2
    finally:
        await fake.close()
