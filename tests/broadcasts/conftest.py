"""A registry of two communes with hamlet groups and subscribers, a fake Bot API, and a sender."""

from __future__ import annotations

import os
import random
from datetime import datetime

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.broadcasts.adapters import TelegramAdapter
from bot.broadcasts.model import Audience
from bot.broadcasts.pacing import ChannelPacer, PacingRules
from bot.broadcasts.sender import Sender, SenderConfig
from bot.broadcasts.workflow import Actor, approve, create, submit
from storage import people, registry
from tests.fakes.telegram_api import FakeTelegramAPI

REGISTRY = (
    b"commune_code,commune_name,hamlet_code,hamlet_name\n"
    b"xa_a,X\xc3\xa3 A,a1,Th\xc3\xb4n A1\n"
    b"xa_a,X\xc3\xa3 A,a2,Th\xc3\xb4n A2\n"
    b"xa_b,X\xc3\xa3 B,b1,Th\xc3\xb4n B1\n"
)
TEAM_A = Actor("telegram:500", communes=frozenset({"xa_a"}))
OFFICER = Actor("telegram:42", officer=True)
# Fast pacing for tests; the spacing rules themselves are tested with their real values.
FAST = PacingRules(rate=200.0, group_spacing=3.0, private_spacing=1.0)


@pytest.fixture
async def world(database, clock):
    """Groups: a1 (-1001), a2 (-1002), b1 (-1003). People: 11, 12 in a1; 13 in a2; 21 in b1; 30 with no hamlet."""
    now = clock()
    async with database.transaction() as session:
        await registry.import_rows(session, registry.parse_csv(REGISTRY))
        for chat_id, hamlet in (("-1001", "a1"), ("-1002", "a2"), ("-1003", "b1")):
            chat = await people.touch_chat(session, "telegram", chat_id, "group", now)
            chat.hamlet_code = hamlet
        for user_id, hamlet in (("11", "a1"), ("12", "a1"), ("13", "a2"), ("21", "b1"), ("30", None)):
            user = await people.touch_user(session, "telegram", user_id, now)
            user.hamlet_code = hamlet
            await people.touch_chat(session, "telegram", user_id, "private", now)
    return database


@pytest.fixture
async def fake_tg():
    fake = await FakeTelegramAPI().start()
    yield fake
    await fake.close()


@pytest.fixture
async def tg_bot(fake_tg):
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    request = HTTPXRequest(connection_pool_size=16, read_timeout=1.0, connect_timeout=1.0)
    bot = Bot(fake_tg.token, base_url=fake_tg.base_url, request=request)
    await bot.initialize()
    yield bot
    await bot.shutdown()


def make_sender(db, bot, clock, *, rules: PacingRules = FAST, frozen_pacer: bool = False, **config) -> Sender:
    """A sender; with `frozen_pacer` the per-chat spacing follows the test clock instead of real time."""
    config.setdefault("backoff_base", 1.0)
    pacer = ChannelPacer(rules, clock=lambda: clock().timestamp()) if frozen_pacer else ChannelPacer(rules)
    return Sender(
        db,
        {"telegram": TelegramAdapter(bot)},
        {"telegram": pacer},
        config=SenderConfig(**config),
        clock=clock,
        rng=random.Random(1),
    )


async def approved(
    db, clock, text: str = "Thông báo: tổ cấp căn cước lưu động đến thôn ngày 5/12.", audience: Audience | None = None, author: Actor = TEAM_A
):
    """A broadcast (by team A unless told), approved by the officer, ready to send."""
    now: datetime = clock()
    b = await create(db, author, text, audience or Audience("communes", ("xa_a",)), now)
    await submit(db, author, b.id, now)
    return await approve(db, OFFICER, b.id, now)
