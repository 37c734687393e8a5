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


def test_the_broadcast_commands_say_in_vietnamese_what_happened_and_what_is_wrong(tmp_path):
    from tests.conftest import EXAMPLE_CSV
    from tests.test_cli import run

    officer = {"CCCD_OFFICERS": "telegram:42"}
    assert run(["hamlets", "import", str(EXAMPLE_CSV)], tmp_path).returncode == 0
    made = run(["broadcast", "create", "--as", "telegram:42", "--text", "Thông báo thử.", "--scope", "all"], tmp_path, **officer)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().startswith("tin số 1: ")
    report = run(["broadcast", "report", "1"], tmp_path)
    assert report.returncode == 0 and "tạo bởi telegram:42, duyệt bởi" in report.stdout
    nobody = run(["broadcast", "create", "--as", "telegram:999", "--text", "Thông báo.", "--scope", "all"], tmp_path, **officer)
    assert nobody.returncode == 3 and nobody.stderr.startswith("Lỗi: không được phép:")
    unknown = run(["broadcast", "dry-run", "--scope", "hamlets", "--codes", "khong_co"], tmp_path)
    assert unknown.returncode == 1 and "Lỗi: không có mã khong_co." in unknown.stderr
    missing = run(["broadcast", "report", "7"], tmp_path)
    assert missing.returncode == 1 and "Lỗi: không có tin số 7." in missing.stderr
    bad_as = run(["broadcast", "approve", "1", "--as", "42"], tmp_path)
    assert bad_as.returncode == 2 and "kênh:mã_người_dùng" in bad_as.stderr
