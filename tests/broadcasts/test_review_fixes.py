"""Reminders, visits and recurring broadcasts after the review of issue 13: never "ngày mai" on the day
itself, never after the appointment, stopped by /huynhac and /xoa even once handed to the sender, a
cancelled visit not announced (or its cancellation told), and recurring runs approved like any broadcast.
A fake clock moves across quiet hours; every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bot.broadcasts import visits, workflow
from bot.broadcasts.optout import load
from bot.config import Settings
from bot.messages import ChatType, Incoming
from bot.service import ChatService
from storage import broadcasts as repo
from storage import erasure, schedules
from storage.models import Broadcast, BroadcastDelivery
from tests.broadcasts.conftest import OFFICER, make_sender
from tests.broadcasts.test_reminders_and_visits import PERSON, says, texts

M = load().msg
UTC = timezone.utc


def vn(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A moment of November 2026 given in Vietnam's time (UTC+7)."""
    return datetime(2026, month, day, hour, minute, tzinfo=UTC) + timedelta(hours=-7)


@pytest.fixture
def service(world, catalog, clock) -> ChatService:
    return ChatService(world, catalog, Settings(_env_file=None), clock=clock)


async def run(sender, clock, times: int = 3) -> None:
    for _ in range(times):
        await sender.run_once()
        clock.advance(seconds=15)


def said(fake_tg, chat: int) -> list[str]:
    return [m["text"] for m in fake_tg.sent(chat)]


async def person_rows(db) -> tuple[list, list]:
    """The reminders rows and the broadcast deliveries that name the person."""
    async with db.transaction() as session:
        reminders = list((await session.execute(select(schedules.Reminder).where(schedules.Reminder.user_id == PERSON))).scalars())
        rows = list((await session.execute(select(BroadcastDelivery).where(BroadcastDelivery.chat_id == PERSON))).scalars())
    return reminders, rows


# ---------------------------------------------------------------- 1. "ngày mai" only the day before


async def test_a_reminder_set_late_at_night_for_tomorrow_says_today_in_the_morning(world, clock, fake_tg, tg_bot, service):
    clock.now = vn(2, 23)  # quiet hours: the reminder cannot go tonight
    assert texts(await service.handle(says(clock, payload="rm:2026-11-03"))) == [M("reminder_set_soon", date="03/11/2026")]
    sender = make_sender(world, tg_bot, clock)
    await run(sender, clock)
    assert said(fake_tg, int(PERSON)) == []
    clock.now = vn(3, 7, 5)
    await run(sender, clock)
    [text] = said(fake_tg, int(PERSON))
    assert text.startswith("Nhắc anh/chị: hôm nay, 03/11/2026, là ngày hẹn làm căn cước.")
    assert "ngày mai" not in text


async def test_a_tomorrow_reminder_held_past_midnight_is_not_sent(world, clock, fake_tg, tg_bot, service):
    await service.handle(says(clock, payload="rm:2026-11-05"))
    sender = make_sender(world, tg_bot, clock)
    # Made on the evening of the 4th, but the channel could not send before quiet hours began.
    from bot.broadcasts import jobs

    assert await jobs.make_due(world, vn(4, 19)) == 1
    clock.now = vn(5, 7, 5)  # the day itself: its "ngày mai" is no longer true
    await run(sender, clock)
    assert said(fake_tg, int(PERSON)) == []
    async with world.transaction() as session:
        [b] = [b for b in await repo.list_recent(session) if b.kind == "reminder"]
        assert b.status == "cancelled"
        assert {d.status for d in await repo.deliveries(session, b.id)} == {"cancelled"}


async def test_where_quiet_hours_begin_at_six_the_reminder_goes_before_them(world, clock, fake_tg, tg_bot, service):
    async with world.transaction() as session:
        await repo.set_policy(session, "xa_a", quiet_start="18:00", quiet_end="07:00")
    await service.handle(says(clock, payload="rm:2026-11-05"))
    sender = make_sender(world, tg_bot, clock)
    clock.now = vn(4, 17, 1)
    await run(sender, clock)
    [text] = said(fake_tg, int(PERSON))
    assert text.startswith("Nhắc anh/chị: ngày mai, 05/11/2026,")


async def test_a_visit_entered_during_quiet_hours_is_announced_for_today_before_it_begins(world, clock, fake_tg, tg_bot):
    clock.now = vn(2, 21, 30)
    async with world.transaction() as session:
        for start, hamlet in (("07:30", "a1"), ("07:00", "a2")):  # the second begins as quiet hours end
            await schedules.add_visit(
                session, commune="xa_a", day=date(2026, 11, 3), start=start, end=None, place="Nhà văn hoá",
                hamlets=[hamlet], by="web:officer", now=clock(),
            )
    sender = make_sender(world, tg_bot, clock)
    await run(sender, clock)
    assert fake_tg.sent() == []
    clock.now = vn(3, 7, 5)
    await run(sender, clock)
    assert said(fake_tg, -1001) == [
        M("visit_announce_today", date="03/11/2026", time=M("visit_time_from", start="07:30"), place="Nhà văn hoá", hamlets="Thôn A1")
    ]
    assert said(fake_tg, -1002) == []  # begun before anything could be sent: no announcement at all
    async with world.transaction() as session:
        assert all(v.announced_broadcast_id is not None for v in await schedules.visits(session, "xa_a", date(2026, 11, 3)))


# ---------------------------------------------------------------- 2. never after the appointment


async def test_a_reminder_whose_appointment_has_passed_is_never_sent(world, clock, fake_tg, tg_bot, service):
    await service.handle(says(clock, payload="rm:2026-11-05"))
    clock.now = vn(7, 10)  # the sender was down from before the 4th's evening until after the appointment
    await run(make_sender(world, tg_bot, clock), clock)
    assert said(fake_tg, int(PERSON)) == []
    [reminder], _ = await person_rows(world)
    assert reminder.status == schedules.EXPIRED


async def test_a_reminder_found_after_noon_on_its_day_is_not_sent(world, clock, fake_tg, tg_bot, service):
    await service.handle(says(clock, payload="rm:2026-11-05"))
    clock.now = vn(5, 13)
    await run(make_sender(world, tg_bot, clock), clock)
    assert said(fake_tg, int(PERSON)) == []


# ---------------------------------------------------------------- 3. /huynhac and /xoa after the reminder was made


async def test_huynhac_stops_a_reminder_already_handed_to_the_sender(world, clock, fake_tg, tg_bot, service):
    clock.now = vn(2, 23)
    await service.handle(says(clock, payload="rm:2026-11-03"))
    sender = make_sender(world, tg_bot, clock)
    await run(sender, clock)  # made, held by quiet hours
    assert texts(await service.handle(says(clock, "/huynhac"))) == [M("reminder_cancelled")]
    clock.now = vn(3, 7, 5)
    await run(sender, clock)
    assert said(fake_tg, int(PERSON)) == []
    _, rows = await person_rows(world)
    assert [r.status for r in rows] == ["cancelled"]


async def test_xoa_erases_a_reminder_already_handed_to_the_sender(world, clock, fake_tg, tg_bot, service):
    clock.now = vn(2, 23)
    await service.handle(says(clock, payload="rm:2026-11-03"))
    sender = make_sender(world, tg_bot, clock)
    await run(sender, clock)
    await service.handle(says(clock, "/xoa"))
    await service.handle(says(clock, payload="x:yes"))
    clock.now = vn(3, 7, 5)
    await run(sender, clock)
    assert [t for t in said(fake_tg, int(PERSON)) if t.startswith("Nhắc anh/chị")] == []
    assert await person_rows(world) == ([], [])  # neither the reminder nor the delivery with their chat id


async def test_reminders_are_deleted_a_month_after_their_appointment(world, clock, fake_tg, tg_bot, service):
    await service.handle(says(clock, payload="rm:2026-11-05"))
    clock.now = vn(4, 19)
    await run(make_sender(world, tg_bot, clock), clock)
    assert len(said(fake_tg, int(PERSON))) == 1
    async with world.transaction() as session:
        await erasure.apply_retention(session, vn(30, 12), 180)
    assert len((await person_rows(world))[0]) == 1  # 25 days after: kept
    async with world.transaction() as session:
        await erasure.apply_retention(session, vn(6, 12, month=12), 180)
    assert await person_rows(world) == ([], [])


# ---------------------------------------------------------------- 4. a cancelled visit


async def _visit(world, clock, day: date, start: str = "07:30"):
    async with world.transaction() as session:
        return await schedules.add_visit(
            session, commune="xa_a", day=day, start=start, end=None, place="Nhà văn hoá thôn A1", hamlets=["a1"],
            by="web:officer", now=clock(),
        )


async def _cancel(world, clock, visit_id: int) -> str:
    async with world.transaction() as session:
        return await visits.cancel(session, await session.get(schedules.MobileVisit, visit_id), clock())


async def test_a_visit_cancelled_before_its_announcement_went_out_is_not_announced(world, clock, fake_tg, tg_bot):
    clock.now = vn(2, 21, 30)
    v = await _visit(world, clock, date(2026, 11, 3))
    sender = make_sender(world, tg_bot, clock)
    await run(sender, clock)  # the announcement is made, held by quiet hours
    assert await _cancel(world, clock, v.id) == "stopped"
    clock.now = vn(3, 7, 5)
    await run(sender, clock)
    assert fake_tg.sent() == []


async def test_a_visit_cancelled_after_its_announcement_is_told_cancelled(world, clock, fake_tg, tg_bot):
    v = await _visit(world, clock, date(2026, 11, 3))
    clock.now = vn(2, 9)
    sender = make_sender(world, tg_bot, clock, frozen_pacer=True)  # a group's spacing follows the test's clock
    await run(sender, clock)
    assert len(said(fake_tg, -1001)) == 1
    clock.now = vn(2, 15)
    assert await _cancel(world, clock, v.id) == "notice"
    await run(sender, clock)
    assert said(fake_tg, -1001)[1] == M(
        "visit_cancelled", date="03/11/2026", time=M("visit_time_from", start="07:30"), place="Nhà văn hoá thôn A1"
    )
    assert said(fake_tg, -1002) == []


# ---------------------------------------------------------------- 5. recurring runs and approval


async def test_a_recurring_run_waits_for_approval_where_the_commune_asks_for_it(world, clock, fake_tg, tg_bot):
    async with world.transaction() as session:
        assert (await repo.policy(session, "xa_a")).approval_required
        await schedules.add_recurring(
            session, author="telegram:42", text="Nhắc lại 9 bước làm căn cước.",
            audience={"scope": "communes", "codes": ["xa_a"], "kinds": ["group"], "channels": []},
            cron="0 8 1 * *", timezone="Asia/Ho_Chi_Minh", next_run_at=vn(1, 8, month=12), now=clock(),
        )
    clock.now = vn(1, 8, 1, month=12)
    sender = make_sender(world, tg_bot, clock, frozen_pacer=True)
    await run(sender, clock)
    assert fake_tg.sent() == []
    async with world.transaction() as session:
        [b] = [b for b in await repo.list_recent(session) if b.kind == "recurring"]
    assert (b.status, b.approver) == ("awaiting_approval", None)
    with pytest.raises(workflow.NotAllowed):
        await workflow.approve(world, OFFICER, b.id, clock())  # the rule's author approves nothing of their own
    await workflow.approve(world, workflow.Actor("web:admin", officer=True), b.id, clock())
    await run(sender, clock)
    assert sorted(m["chat_id"] for m in fake_tg.sent()) == [-1002, -1001]


# ---------------------------------------------------------------- 8, 10. waiting for a date traps nobody


async def test_waiting_for_a_date_lets_the_person_opt_out_cancel_or_ask(world, catalog, clock, service):
    bad = M("reminder_bad_date", example="09/11")
    await service.handle(says(clock, payload="rm"))
    assert texts(await service.handle(says(clock, "dừng"))) == [M("optout_done")]
    assert texts(await service.handle(says(clock, "14/12"))) != [M("reminder_set", eve="13/12", date="14/12/2026")]  # no longer waiting

    await service.handle(says(clock, payload="rm"))
    assert texts(await service.handle(says(clock, "huỷ"))) == [M("reminder_cancelled")]

    await service.handle(says(clock, payload="rm"))
    answer = texts(await service.handle(says(clock, "cần mang giấy tờ gì")))
    assert answer and bad not in answer and catalog.first_part(catalog.topics["giay_to_mang_theo"]) in answer

    await service.handle(says(clock, payload="rm"))
    assert texts(await service.handle(says(clock, "ngày 15"))) == [M("reminder_set", eve="14/11", date="15/11/2026")]
    await service.handle(says(clock, payload="rm"))
    assert texts(await service.handle(says(clock, "1/11"))) == [M("reminder_past_date")]  # yesterday, not next year
    assert texts(await service.handle(says(clock, "ngày 40/13"))) == [bad]


# ---------------------------------------------------------------- 9, 11, 12


async def test_on_zalo_oa_a_reminder_beyond_the_window_is_set_with_a_note(world, clock, service):
    def zalo(text="", payload=None):
        return Incoming("zalo_oa", "z1", ChatType.PRIVATE, "z1", "Lan", text, clock(), payload=payload)

    [near] = await service.handle(zalo(payload="rm:2026-11-06"))  # reminded on the 5th: within 7 days
    assert near.text == M("reminder_set", eve="05/11", date="06/11/2026")
    [far] = await service.handle(zalo(payload="rm:2026-11-20"))
    assert far.text == M("reminder_set", eve="19/11", date="20/11/2026") + "\n" + M("reminder_window_note", days=7)
    # Telegram has no such window: no note.
    assert texts(await service.handle(says(clock, payload="rm:2026-11-20"))) == [M("reminder_set", eve="19/11", date="20/11/2026")]


async def test_huynhac_without_a_reminder_says_there_is_none(world, clock, fake_tg, tg_bot, service):
    assert texts(await service.handle(says(clock, "/huynhac"))) == [M("reminder_none")]
    await service.handle(says(clock, payload="rm:2026-11-05"))
    assert texts(await service.handle(says(clock, "/huynhac"))) == [M("reminder_cancelled")]
    assert texts(await service.handle(says(clock, payload="rm:x"))) == [M("reminder_none")]
    # Once sent, there is nothing left to stop, and the reminder does not point to /huynhac.
    await service.handle(says(clock, payload="rm:2026-11-05"))
    clock.now = vn(4, 19)
    await run(make_sender(world, tg_bot, clock), clock)
    [text] = said(fake_tg, int(PERSON))
    assert "/huynhac" not in text
    assert texts(await service.handle(says(clock, "/huynhac"))) == [M("reminder_none")]


async def test_the_next_visit_told_is_not_one_that_ended_earlier_today(world, catalog, clock, service):
    from tests.broadcasts.test_reminders_and_visits import add_visit, mobile_question

    await add_visit(world, clock, day=date(2026, 11, 2))  # today 07:30-11:00; it is 15:30
    await add_visit(world, clock, day=date(2026, 11, 9))
    replies = await service.handle(says(clock, mobile_question(catalog)))
    assert replies[1].text == M(
        "visit_next", hamlet="Thôn A1", date="09/11/2026", time=M("visit_time_range", start="07:30", end="11:00"), place="Nhà văn hoá thôn A1"
    )


# ---------------------------------------------------------------- the upgrade (migration 0020)


async def test_a_reminder_pending_before_the_upgrade_is_sent_with_one_first_line(db_url, clock, fake_tg, tg_bot):
    from sqlalchemy import text

    from storage.db import Database
    from storage.migrate import upgrade

    await upgrade(db_url, "0017")
    old = "Nhắc anh/chị: ngày mai, 05/11/2026, là ngày hẹn làm căn cước.\nĐến đúng nơi.\nMang thẻ cũ.\nKhi không cần nhắc nữa, anh/chị gõ /huynhac."
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            await session.execute(text(
                "INSERT INTO reminders (channel, user_id, hamlet_code, appointment, remind_at, text, status, created_at, updated_at)"
                " VALUES ('telegram', :u, NULL, :d, :at, :t, 'pending', :at, :at)"
            ), {"u": PERSON, "d": date(2026, 11, 5), "at": vn(4, 19), "t": old})
        await upgrade(db_url)
        clock.now = vn(4, 19)
        await run(make_sender(db, tg_bot, clock), clock)
        assert said(fake_tg, int(PERSON)) == [M("reminder_text", date="05/11/2026", body="Đến đúng nơi.\nMang thẻ cũ.")]
    finally:
        await db.close()
