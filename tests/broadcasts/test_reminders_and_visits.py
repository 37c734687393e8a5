"""Appointment reminders (set in the chat, sent the evening before, across a restart, cancelled anytime)
and mobile teams' visits (the FAQ answer gives the next one; announced to the hamlets' groups the day before)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from bot.broadcasts.optout import load
from bot.config import Settings
from bot.matcher import Decision, Matcher
from bot.messages import ChatType, Incoming
from bot.service import ChatService
from storage import broadcasts as repo
from storage import schedules
from storage.db import Database
from tests.broadcasts.conftest import make_sender

M = load().msg
PERSON = "11"  # in hamlet a1 (commune xa_a)


def says(clock, text: str = "", payload: str | None = None, *, user: str = PERSON, chat: str | None = None, group: bool = False) -> Incoming:
    kind = ChatType.GROUP if group else ChatType.PRIVATE
    return Incoming("telegram", chat or user, kind, user, "Lan", text, clock(), payload=payload)


@pytest.fixture
def service(world, catalog, clock) -> ChatService:
    return ChatService(world, catalog, Settings(_env_file=None), clock=clock)


def texts(replies) -> list[str]:
    return [r.text for r in replies]


async def test_the_step_after_the_date_offers_a_reminder(service, clock, catalog):
    replies = await service.handle(says(clock, payload="s:den_dung_hen"))
    assert M("reminder_offer") in [c.label for c in replies[0].choices]
    asked = await service.handle(says(clock, payload="rm"))
    assert texts(asked) == [M("reminder_ask_date", example="09/11")]  # 2 November, 15:30 in Vietnam
    assert [c.label for c in asked[0].choices] == ["03/11", "04/11", "05/11", M("reminder_cancel_label")]


async def test_a_reminder_is_sent_the_evening_before_even_after_a_restart(world, catalog, clock, db_url, fake_tg, tg_bot, service):
    await service.handle(says(clock, payload="rm"))
    assert texts(await service.handle(says(clock, "5/11"))) == [M("reminder_set", eve="04/11", date="05/11/2026")]
    # The server restarts: a new database handle, a new service and a new sender.
    await service.db.close()
    db = Database(db_url)
    try:
        sender = make_sender(db, tg_bot, clock, lease_ttl=5)
        clock.now = datetime(2026, 11, 4, 11, 30, tzinfo=timezone.utc)  # 18:30 in Vietnam: not yet
        await sender.run_once()
        assert fake_tg.sent(int(PERSON)) == []
        clock.now = datetime(2026, 11, 4, 12, 0, tzinfo=timezone.utc)  # 19:00: the evening before
        await sender.run_once()
        [sent] = fake_tg.sent(int(PERSON))
        assert sent["text"].startswith("Nhắc anh/chị: ngày mai, 05/11/2026, là ngày hẹn làm căn cước.")
        step = catalog.steps[catalog.step_index["den_dung_hen"]]
        assert catalog.step_text(step).strip() in sent["text"]  # where to go
        assert catalog.first_part(catalog.topics["giay_to_mang_theo"]).strip() in sent["text"]  # what to bring
        clock.advance(minutes=30)
        await sender.run_once()
        assert len(fake_tg.sent(int(PERSON))) == 1  # once
    finally:
        await db.close()


async def test_a_reminder_can_be_cancelled_anytime(world, clock, fake_tg, tg_bot, service):
    await service.handle(says(clock, payload="rm:2026-11-05"))
    assert texts(await service.handle(says(clock, "/huynhac"))) == [M("reminder_cancelled")]
    await service.handle(says(clock, payload="rm:2026-11-06"))
    await service.handle(says(clock, payload="rm:x"))  # the button under the confirmation
    clock.now = datetime(2026, 11, 5, 13, 0, tzinfo=timezone.utc)
    await make_sender(world, tg_bot, clock).run_once()
    assert fake_tg.sent(int(PERSON)) == []


async def test_a_new_date_replaces_the_old_one(world, clock, service):
    await service.handle(says(clock, payload="rm:2026-11-05"))
    await service.handle(says(clock, payload="rm:2026-11-09"))
    async with world.transaction() as session:
        r = await schedules.pending_reminder(session, "telegram", PERSON)
    assert r.appointment == date(2026, 11, 9)


async def test_dates_that_cannot_be_reminded(clock, service):
    await service.handle(says(clock, payload="rm"))
    assert texts(await service.handle(says(clock, "ngày 40/13"))) == [M("reminder_bad_date", example="09/11")]
    assert texts(await service.handle(says(clock, "2/11"))) == [M("reminder_past_date")]  # today
    assert texts(await service.handle(says(clock, "31/02/2027"))) == [M("reminder_bad_date", example="09/11")]
    assert texts(await service.handle(says(clock, "ngày 3 tháng 11"))) == [M("reminder_set", eve="02/11", date="03/11/2026")]


async def test_forgetting_a_person_forgets_their_reminder(world, clock, service):
    await service.handle(says(clock, payload="rm:2026-11-05"))
    await service.handle(says(clock, "/xoa"))
    await service.handle(says(clock, payload="x:yes"))
    async with world.transaction() as session:
        assert await schedules.pending_reminder(session, "telegram", PERSON) is None


# ---------------------------------------------------------------- mobile teams' visits


def mobile_question(catalog) -> str:
    matcher = Matcher(catalog)
    for example in catalog.topics["cap_luu_dong"].examples:
        found = matcher.match(example)
        if found.decision is Decision.ANSWER and found.topic == "cap_luu_dong":
            return example
    raise AssertionError("no example of cap_luu_dong is answered outright")


async def add_visit(db, clock, day=date(2026, 11, 3), hamlets=("a1",), **extra):
    async with db.transaction() as session:
        return await schedules.add_visit(
            session, commune="xa_a", day=day, start="07:30", end="11:00", place="Nhà văn hoá thôn A1",
            hamlets=list(hamlets), by="web:officer", now=clock(), **extra,
        )


async def test_the_faq_answer_about_mobile_teams_gives_the_next_visit_of_the_persons_hamlet(world, catalog, clock, service):
    await add_visit(world, clock, day=date(2026, 11, 9))
    await add_visit(world, clock, day=date(2026, 11, 3))
    await add_visit(world, clock, day=date(2026, 11, 4), hamlets=("b1",))
    question = mobile_question(catalog)
    replies = await service.handle(says(clock, question))
    assert replies[0].text == catalog.first_part(catalog.topics["cap_luu_dong"])
    assert replies[1].text == M("visit_next", hamlet="Thôn A1", date="03/11/2026", time=M("visit_time_range", start="07:30", end="11:00"), place="Nhà văn hoá thôn A1")
    # In a2 no visit is planned: the answer alone.
    replies = await service.handle(says(clock, question, user="13"))
    assert len(replies) == 1


async def test_a_visit_is_announced_to_its_hamlets_groups_the_day_before_once(world, clock, fake_tg, tg_bot):
    await add_visit(world, clock, day=date(2026, 11, 3), hamlets=("a1", "a2"))
    cancelled = await add_visit(world, clock, day=date(2026, 11, 3), hamlets=("b1",))
    async with world.transaction() as session:
        from bot.broadcasts import visits

        await visits.cancel(session, await session.get(schedules.MobileVisit, cancelled.id), clock())
    later = await add_visit(world, clock, day=date(2026, 11, 4), hamlets=("b1",))
    sender = make_sender(world, tg_bot, clock)
    clock.now = datetime(2026, 11, 2, 0, 30, tzinfo=timezone.utc)  # 07:30 in Vietnam: too early
    await sender.run_once()
    assert fake_tg.sent() == []
    clock.now = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)  # 09:00
    for _ in range(2):
        await sender.run_once()
        clock.advance(seconds=15)
    announced = {m["chat_id"]: m["text"] for m in fake_tg.sent()}
    assert set(announced) == {-1001, -1002}  # the groups of a1 and a2; not b1 (cancelled, or not tomorrow)
    expected = M("visit_announce", date="03/11/2026", time=M("visit_time_range", start="07:30", end="11:00"), place="Nhà văn hoá thôn A1", hamlets="Thôn A1, Thôn A2")
    assert announced[-1001] == expected
    async with world.transaction() as session:
        b = (await repo.list_recent(session))[0]
        assert (b.kind, b.audience["kinds"]) == ("visit", ["group"])
        assert (await session.get(schedules.MobileVisit, later.id)).announced_broadcast_id is None
    await sender.run_once()
    assert len(fake_tg.sent()) == 2


# ---------------------------------------------------------------- recurring broadcasts


async def test_a_recurring_broadcast_goes_out_at_each_run_and_once_after_a_long_stop(world, clock, fake_tg, tg_bot):
    from bot.broadcasts.jobs import next_run

    text = "Nhắc lại 9 bước làm căn cước trực tuyến: anh/chị gõ /huongdan để xem từng bước."
    first = next_run("0 8 1 * *", "Asia/Ho_Chi_Minh", clock())
    assert first == datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)  # 08:00 on 1 December in Vietnam
    async with world.transaction() as session:
        await repo.set_policy(session, "xa_a", approval_required=False)  # runs go out without approval (see test_review_fixes)
        rule = await schedules.add_recurring(
            session, author="web:officer", text=text, audience={"scope": "communes", "codes": ["xa_a"], "kinds": ["group"], "channels": []},
            cron="0 8 1 * *", timezone="Asia/Ho_Chi_Minh", next_run_at=first, now=clock(),
        )
    sender = make_sender(world, tg_bot, clock, frozen_pacer=True)  # a group's spacing follows the test's clock
    await sender.run_once()
    assert fake_tg.sent() == []
    clock.now = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)
    await sender.run_once()
    assert sorted(m["chat_id"] for m in fake_tg.sent()) == [-1002, -1001] and all(m["text"] == text for m in fake_tg.sent())
    # The sender was stopped from January to March: one broadcast when it is back, then the next on 1 April.
    clock.now = datetime(2027, 3, 15, 3, 0, tzinfo=timezone.utc)
    for _ in range(2):
        await sender.run_once()
        clock.advance(seconds=20)
    assert len(fake_tg.sent()) == 4
    async with world.transaction() as session:
        row = await session.get(schedules.RecurringBroadcast, rule.id)
        made = [b for b in await repo.list_recent(session) if b.kind == "recurring"]
    assert len(made) == 2 and all(b.status == "done" for b in made)
    assert row.next_run_at.replace(tzinfo=timezone.utc) == datetime(2027, 4, 1, 1, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- the weekly summary


async def test_the_weekly_summary_tells_each_hamlet_group_how_many_used_the_guide(world, clock, fake_tg, tg_bot):
    from datetime import timedelta

    from storage import logs

    # 2 November 2026 is a Monday; 15:30 in Vietnam. Six people of a1 and two of a2 used the guide last week,
    # one of a1 twice; one of a1 a month ago.
    async with world.transaction() as session:
        for user, hamlet, days in [(f"p{i}", "a1", 1 + i % 6) for i in range(6)] + [("p0", "a1", 2), ("q1", "a2", 1), ("q2", "a2", 3), ("old", "a1", 30)]:
            await logs.add_guide_event(session, created_at=clock() - timedelta(days=days), channel="telegram", hamlet_code=hamlet,
                                       user_ref=user, kind="step", step="tao_tai_khoan")
    off = make_sender(world, tg_bot, clock)
    await off.run_once()
    assert fake_tg.sent() == []  # not asked for (CCCD_BROADCAST_WEEKLY_SUMMARY)
    await off.release()
    sender = make_sender(world, tg_bot, clock, weekly_summary=True, jobs_every=0)
    await sender.run_once()
    await sender.run_once()  # the same week: not again
    assert [(m["chat_id"], m["text"]) for m in fake_tg.sent()] == [(-1001, M("weekly_summary", n=6, hamlet="Thôn A1"))]  # a2: fewer than 5
    clock.advance(days=1)  # Tuesday: nothing
    await sender.run_once()
    assert len(fake_tg.sent()) == 1


async def test_in_one_batch_each_person_hears_of_the_next_visit_of_their_own_hamlet(world, catalog, clock, service):
    """The pipeline hands the service several messages at once (`handle_many`): each gets its own hamlet's visit."""
    await add_visit(world, clock, day=date(2026, 11, 3), hamlets=("a1",))
    await add_visit(world, clock, day=date(2026, 11, 5), hamlets=("a2",))
    question = mobile_question(catalog)
    time_range = M("visit_time_range", start="07:30", end="11:00")
    await service.load_salt()  # as the server does at start
    async with world.writing() as session:
        a1, a2, none = await service.handle_many(session, [says(clock, question), says(clock, question, user="13"), says(clock, question, user="30")])
    assert a1[1].text == M("visit_next", hamlet="Thôn A1", date="03/11/2026", time=time_range, place="Nhà văn hoá thôn A1")
    assert a2[1].text == M("visit_next", hamlet="Thôn A2", date="05/11/2026", time=time_range, place="Nhà văn hoá thôn A1")
    assert len(none) == 1  # no hamlet chosen: the answer alone


async def test_a_visit_entered_after_a_question_is_told_at_the_next_one(world, catalog, clock, service):
    question = mobile_question(catalog)
    assert len(await service.handle(says(clock, question))) == 1
    await add_visit(world, clock, day=date(2026, 11, 3))
    service.forget_visits()  # what the dashboard calls when an officer saves a visit
    replies = await service.handle(says(clock, question))
    time_range = M("visit_time_range", start="07:30", end="11:00")
    assert replies[1].text == M("visit_next", hamlet="Thôn A1", date="03/11/2026", time=time_range, place="Nhà văn hoá thôn A1")


async def test_a_visit_is_announced_once_across_a_restart_of_the_sender(world, clock, db_url, fake_tg, tg_bot):
    await add_visit(world, clock, day=date(2026, 11, 3), hamlets=("a1",))
    clock.now = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)  # 09:00 the day before
    await make_sender(world, tg_bot, clock, lease_ttl=5).run_once()  # made and sent; then the process dies
    db = Database(db_url)  # the restarted process
    try:
        sender = make_sender(db, tg_bot, clock, lease_ttl=5)
        clock.advance(seconds=10)  # the dead sender's lease has run out
        for _ in range(2):
            await sender.run_once()
            clock.advance(minutes=30)
        async with db.transaction() as session:
            made = [b for b in await repo.list_recent(session) if b.kind == "visit"]
    finally:
        await db.close()
    assert [m["chat_id"] for m in fake_tg.sent()] == [-1001]
    assert len(made) == 1
