"""`cccd-bot broadcast send`, the sender without the server, sends through the same channels as `serve`:
Telegram, Zalo Bot and Zalo OA (its tokens from the database, as the server keeps them)."""

from __future__ import annotations

import pytest

from bot.broadcasts.model import Audience
from bot.broadcasts.runner import run
from bot.broadcasts.workflow import Actor
from bot.config import Settings
from storage import broadcasts as repo
from storage import people
from storage.broadcasts import DeliveryStatus
from tests.broadcasts.conftest import approved
from tests.fakes.zalo_api import FakeZaloBot, FakeZaloOA


@pytest.fixture
async def fakes():
    oa, zbot = FakeZaloOA(), FakeZaloBot()
    await oa.start()
    await zbot.start()
    yield oa, zbot
    await oa.close()
    await zbot.close()


async def test_the_standalone_sender_sends_on_telegram_zalo_bot_and_zalo_oa(world, clock, db_url, fake_tg, fakes):
    oa, zbot = fakes
    async with world.transaction() as session:
        for commune in ("xa_a", "xa_b"):
            await repo.set_policy(session, commune, quiet_start="00:00", quiet_end="00:00")
        for channel, uid in (("zalo_oa", "oa-user"), ("zalo_bot", "zb-user")):
            (await people.touch_user(session, channel, uid, clock())).hamlet_code = "b1"
            await people.touch_chat(session, channel, uid, "private", clock())
    b = await approved(world, clock, audience=Audience("hamlets", ("b1",)), author=Actor("telegram:43", officer=True))
    access, refresh = oa.issue_pair()
    settings = Settings(
        _env_file=None, database_url=db_url,
        telegram_token=fake_tg.token, telegram_base_url=fake_tg.base_url,
        zalo_bot_token=zbot.token, zalo_bot_base_url=zbot.base_url,
        zalo_oa_app_id=oa.app_id, zalo_oa_app_secret=oa.app_secret, zalo_oa_secret_key="k",
        zalo_oa_access_token=access, zalo_oa_refresh_token=refresh, zalo_oa_api_base=oa.url, zalo_oa_oauth_base=oa.url,
    )
    await run(settings, until_idle=True)
    text = b.text
    assert fake_tg.texts(-1003) == [text] and fake_tg.texts(21) == [text]
    assert zbot.sent("zb-user") == [text]
    assert oa.texts("oa-user") == [text]
    async with world.transaction() as session:
        assert await repo.totals(session, b.id) == {DeliveryStatus.SENT: 4}
