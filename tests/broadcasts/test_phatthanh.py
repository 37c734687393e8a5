"""/phatthanh in a Telegram private chat: a registered team member writes a broadcast; everyone else is refused."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.broadcasts.optout import load
from bot.channels.telegram import TELEGRAM
from bot.config import Settings
from bot.server import create_app
from storage import broadcasts as repo
from storage.broadcasts import BroadcastStatus
from storage.models import Broadcast
from tests.channels.test_telegram import callback, message
from tests.fakes.telegram_api import FakeTelegramAPI

TEAM_A = {"id": 500, "is_bot": False, "first_name": "Hùng"}  # team member of commune xa_a
OFFICER = {"id": 42, "is_bot": False, "first_name": "Cán bộ"}
RESIDENT = {"id": 11, "is_bot": False, "first_name": "Lan"}
GROUP = {"id": -1001, "type": "supergroup", "title": "Thôn A1"}
TEXT = "Thông báo: sáng thứ Bảy tổ cấp căn cước lưu động đến nhà văn hoá thôn A1. Anh/chị mang theo giấy tờ."


def private(user: dict) -> dict:
    return {"id": user["id"], "type": "private", "first_name": user["first_name"]}


class Chat:
    """The bot as one person sees it in Telegram."""

    def __init__(self, fake: FakeTelegramAPI, channel, user: dict, chat: dict | None = None):
        self.fake, self.channel, self.user = fake, channel, user
        self.chat = chat or private(user)

    async def say(self, text: str) -> list[str]:
        before = len(self.fake.texts(self.chat["id"]))
        update = await self.fake.push_update(message(self.chat, self.user, text))
        await self.fake.wait_confirmed(update["update_id"])
        await self.channel.idle()
        return self.fake.texts(self.chat["id"])[before:]

    async def press(self, label: str) -> list[str]:
        for sent in reversed(self.fake.sent(self.chat["id"])):
            for text, data in sent["buttons"]:
                if text == label:
                    before = len(self.fake.texts(self.chat["id"]))
                    update = await self.fake.push_update(callback(self.user, sent["message"], data))
                    await self.fake.wait_confirmed(update["update_id"])
                    await self.channel.idle()
                    return self.fake.texts(self.chat["id"])[before:]
        raise AssertionError(f"no button {label!r}: {self.fake.sent(self.chat['id'])[-1:]}")

    def buttons(self) -> list[str]:
        return [label for label, _ in self.fake.sent(self.chat["id"])[-1]["buttons"]]


@pytest.fixture
async def bot(world, db_url, fake_tg, catalog):
    settings = Settings(
        _env_file=None,
        database_url=db_url,
        telegram_token=fake_tg.token,
        telegram_base_url=fake_tg.base_url,
        team="telegram:500:xa_a",
        officers="telegram:42",
    )
    app = create_app(settings, catalog, world, instance="srv")
    client = TestClient(TestServer(app))
    await client.start_server()
    await app[TELEGRAM].wait_ready(5)
    yield app
    await client.close()


def chat(bot, fake_tg, user: dict, chat: dict | None = None) -> Chat:
    return Chat(fake_tg, bot[TELEGRAM], user, chat)


async def broadcasts(db) -> list[Broadcast]:
    async with db.transaction() as session:
        return await repo.list_recent(session)


M = load().msg


async def test_a_resident_is_refused_politely(bot, world, fake_tg):
    lan = chat(bot, fake_tg, RESIDENT)
    assert await lan.say("/phatthanh") == [M("bc_refused")]
    assert await broadcasts(world) == []


async def test_a_team_member_in_a_group_is_asked_to_write_in_private(bot, world, fake_tg):
    group = chat(bot, fake_tg, TEAM_A, GROUP)
    assert await group.say("/phatthanh@cccd_test_bot") == [M("bc_private_only")]
    stranger = chat(bot, fake_tg, RESIDENT, GROUP)
    assert await stranger.say("/phatthanh@cccd_test_bot") == [M("bc_refused")]


async def test_a_team_member_writes_chooses_previews_and_confirms(bot, world, fake_tg):
    hung = chat(bot, fake_tg, TEAM_A)
    assert await hung.say("/phatthanh") == [M("bc_ask_text")]
    # A text that looks like a greeting or a question is the broadcast, not something to answer.
    asked = await hung.say(TEXT)
    assert asked == [M("bc_ask_audience", example="xa_a, a1")]
    assert hung.buttons() == ["Xã A", M("bc_cancel_label")]  # their own commune only
    preview = await hung.press("Xã A")
    summary = M("bc_summary", where="Xã A", groups=2, people=3)
    assert preview == [M("bc_preview", text=TEXT, summary=summary)]
    assert hung.buttons() == [M("bc_send_label"), M("bc_cancel_label")]
    assert await broadcasts(world) == []  # nothing before the confirmation
    done = await hung.say("gửi")
    [b] = await broadcasts(world)
    assert done == [M("bc_submitted", id=b.id, next=M("bc_next_approval"))]
    assert (b.author, b.text, b.status) == ("telegram:500", TEXT, BroadcastStatus.AWAITING_APPROVAL)
    assert b.audience["scope"] == "communes" and b.audience["codes"] == ["xa_a"]
    # The flow is over: the next message is an ordinary one again.
    assert await hung.say("gửi") != done


async def test_a_team_member_cannot_target_another_commune(bot, world, fake_tg):
    hung = chat(bot, fake_tg, TEAM_A)
    await hung.say("/phatthanh")
    await hung.say(TEXT)
    for typed, codes in (("b1", "b1"), ("xa_b", "xa_b"), ("a1, b1", "b1"), ):
        refused = await hung.say(typed)
        assert refused == [M("bc_bad_audience", reason=M("bc_reason_outside", codes=codes))]
    assert await hung.say("tất cả") == [M("bc_bad_audience", reason=M("bc_reason_all"))]
    assert await hung.say("thon_khong_co") == [M("bc_bad_audience", reason=M("bc_reason_unknown", codes="thon_khong_co"))]
    preview = await hung.say("A1")  # a hamlet code, typed in capitals
    assert preview == [M("bc_preview", text=TEXT, summary=M("bc_summary", where="Thôn A1", groups=1, people=2))]
    assert await broadcasts(world) == []


async def test_huy_cancels_at_any_point(bot, world, fake_tg):
    hung = chat(bot, fake_tg, TEAM_A)
    await hung.say("/phatthanh")
    await hung.say(TEXT)
    await hung.press("Xã A")
    assert await hung.press(M("bc_cancel_label")) == [M("bc_cancelled")]
    await hung.say("/phatthanh")
    assert await hung.say("/huy") == [M("bc_cancelled")]
    assert await broadcasts(world) == []


async def test_without_approval_the_broadcast_is_scheduled(bot, world, fake_tg):
    async with world.transaction() as session:
        await repo.set_policy(session, "xa_a", approval_required=False)
    hung = chat(bot, fake_tg, TEAM_A)
    await hung.say("/phatthanh")
    await hung.say(TEXT)
    await hung.say("xa_a")
    done = await hung.press(M("bc_send_label"))
    [b] = await broadcasts(world)
    assert done == [M("bc_submitted", id=b.id, next=M("bc_next_scheduled"))]
    assert b.status == BroadcastStatus.SCHEDULED


async def test_an_officer_may_broadcast_everywhere(bot, world, fake_tg):
    officer = chat(bot, fake_tg, OFFICER)
    await officer.say("/phatthanh")
    await officer.say(TEXT)
    assert officer.buttons() == ["Xã A", "Xã B", M("bc_all_label"), M("bc_cancel_label")]
    preview = await officer.press(M("bc_all_label"))
    assert preview == [M("bc_preview", text=TEXT, summary=M("bc_summary", where=M("bc_all_label").lower(), groups=3, people=4))]
    await officer.say("gửi")
    [b] = await broadcasts(world)
    assert b.audience["scope"] == "all" and b.author == "telegram:42"
