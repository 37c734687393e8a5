"""Opt-out with /dung or typed words, from anywhere; back in with /batdau; never sent a broadcast."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.broadcasts.model import Audience
from bot.broadcasts.optout import load, wants
from bot.messages import ChatType, Incoming
from storage.broadcasts import DeliveryStatus
from storage import broadcasts as repo
from storage.models import User
from tests.broadcasts.conftest import approved, make_sender


def msg(clock, text, *, user="11", chat_type=ChatType.PRIVATE, chat=None, payload=None):
    return Incoming("telegram", chat or user, chat_type, user, "Bà Lan", text, clock(), payload=payload)


async def opted_out(db, user="11") -> bool:
    async with db.transaction() as session:
        return (await session.execute(select(User.opted_out).where(User.external_id == user))).scalar_one()


@pytest.mark.parametrize("text", ["/dung", "/dung@cccd_test_bot", "dừng", "Dừng!", "hủy đăng ký", "huỷ đăng ký", "không nhận tin nữa", "ko nhan tin nua", "dung", "HUY DANG KY"])
def test_stop_words(text):
    assert wants(text) is True


@pytest.mark.parametrize("text", ["đúng", "đúng rồi", "dừng ở bước 3 thì làm gì", "hướng dẫn", "/start", "bắt đầu"])
def test_not_stop_words(text):
    assert wants(text) is None


def test_back_in_only_by_command():
    assert wants("/batdau") is False


def test_a_broken_broadcasts_file_is_named_in_vietnamese(tmp_path):
    # What the IT person reads when an edit of broadcasts.yaml goes wrong: the message at fault, in Vietnamese.
    from bot.broadcasts.optout import CONTENT, BroadcastContentError
    from bot.startup import say

    shipped = CONTENT.read_text(encoding="utf-8")
    edited = tmp_path / "broadcasts.yaml"
    edited.write_text(shipped.replace("Anh/chị", "Bạn", 1), encoding="utf-8")
    with pytest.raises(BroadcastContentError) as err:
        load(edited)
    assert err.value.file == "broadcasts.yaml" and err.value.code == "check_address"
    assert "gọi người dân là “anh/chị”, tự xưng “tôi”" in say(err.value.code, **err.value.params)
    edited.write_text(shipped.replace("\noptout_phrases:", "\noptout_phrases_old:", 1), encoding="utf-8")
    with pytest.raises(BroadcastContentError) as err:
        load(edited)
    assert err.value.key == "optout_phrases" and say(err.value.code, **err.value.params) == (
        "phải có optout_phrases (câu xin dừng nhận tin), và optout_plain phải viết không dấu"
    )


def test_texts_address_the_resident_as_anh_chi():
    content = load()
    for key in ("optout_done", "optin_done", "bc_refused"):
        assert "anh/chị" in content.msg(key).lower() or "Anh/chị" in content.msg(key)
        assert "bạn" not in content.msg(key).lower()


async def test_typed_stop_in_the_middle_of_the_guide_opts_out(world, catalog, settings, clock):
    from bot.service import ChatService

    service = ChatService(world, catalog, settings, clock=clock)
    await service.handle(msg(clock, "hướng dẫn"))
    replies = await service.handle(msg(clock, "dừng"))
    assert await opted_out(world)
    assert "/batdau" in replies[0].text
    again = await service.handle(msg(clock, "/dung"))
    assert await opted_out(world) and "đã dừng nhận tin" in again[0].text
    # The guide still works for them; only broadcasts stop.
    assert (await service.handle(msg(clock, "hướng dẫn")))[0].text != again[0].text
    back = await service.handle(msg(clock, "/batdau"))
    assert not await opted_out(world)
    assert "/dung" in back[0].text


async def test_command_opt_out_is_never_sent_a_broadcast(world, catalog, settings, clock, fake_tg, tg_bot):
    from bot.service import ChatService

    service = ChatService(world, catalog, settings, clock=clock)
    await service.handle(msg(clock, "/dung", user="12"))
    b = await approved(world, clock, audience=Audience("hamlets", ("a1",)))
    await make_sender(world, tg_bot, clock).run_once()
    assert 12 not in [m["chat_id"] for m in fake_tg.sent()]
    assert sorted(m["chat_id"] for m in fake_tg.sent()) == [-1001, 11]
    async with world.transaction() as session:
        assert (await repo.totals(session, b.id)) == {DeliveryStatus.SENT: 2, DeliveryStatus.OPTED_OUT: 1}
