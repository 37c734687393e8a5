"""What an officer types on the visits' and recurring broadcasts' pages is checked with a clear reason,
never an error page: rules that never come or come every minute, control characters, a broken CSV."""

from __future__ import annotations

from aiohttp import FormData

from bot.web.app import PREFIX
from tests.web.fixture import COMMUNE
from tests.web.test_broadcasts import T1, TEXT, csrf, people_here, rows_of  # noqa: F401 (fixture)


async def test_a_recurring_rule_that_never_comes_or_comes_too_often_is_refused(sign_in, client, people_here):
    from storage import schedules

    officer = await sign_in("officer")
    token = await csrf(officer, f"{PREFIX}/broadcasts/recurring")
    base = {"csrf": token, "text": TEXT, "scope": "some", "commune": COMMUNE, "kind": "group"}
    for cron, reason in (
        ("0 8 31 2 *", "không bao giờ đến"),  # 31 February
        ("* * * * *", "ít nhất một ngày"),  # every minute
        ("0 8,20 * * *", "ít nhất một ngày"),  # twice a day
    ):
        resp = await officer.post(f"{PREFIX}/broadcasts/recurring/add", data={**base, "cron": cron})
        assert resp.status == 200 and reason in await resp.text(), cron
    async with people_here.transaction() as s:
        assert await schedules.recurring(s) == []
    resp = await officer.post(f"{PREFIX}/broadcasts/recurring/add", data={**base, "cron": "0 8 * * *"})  # daily: fine
    assert "Đã lưu lịch gửi định kỳ." in await resp.text()


async def test_a_visit_with_control_characters_or_a_broken_csv_is_refused(sign_in, client, people_here):
    from storage import schedules

    officer = await sign_in("officer")
    token = await csrf(officer, f"{PREFIX}/broadcasts/visits")
    resp = await officer.post(f"{PREFIX}/broadcasts/visits/add", data={
        "csrf": token, "day": "2026-11-25", "start": "07:30", "end": "", "place": "Nhà văn\x00hoá", "hamlet": [T1]})
    assert resp.status == 200 and "ký tự điều khiển" in await resp.text()

    def csv_form(body: bytes) -> FormData:
        form = FormData()
        form.add_field("csrf", token)
        form.add_field("file", body, filename="lich.csv", content_type="text/csv")
        return form

    header = b"ngay,bat_dau,ket_thuc,dia_diem,thon\n"
    huge = header + b'2026-11-26,07:30,,"' + b"x" * 200_000 + b'",ngoctrao_tdp02\n'
    resp = await officer.post(f"{PREFIX}/broadcasts/visits/import", data=csv_form(huge))
    assert resp.status == 200 and "dòng 2: tệp CSV không đọc được" in await resp.text()
    nul = header + b"2026-11-26,07:30,,Nh\x00a,ngoctrao_tdp02\n"
    resp = await officer.post(f"{PREFIX}/broadcasts/visits/import", data=csv_form(nul))
    assert resp.status == 200 and "Không lưu được" in await resp.text()
    async with people_here.transaction() as s:
        from datetime import date

        assert await schedules.visits(s, COMMUNE, date(2026, 11, 1)) == []


async def test_a_visit_that_will_not_be_announced_is_shown_so(sign_in, client, people_here, dash_clock):
    from storage import schedules

    async with people_here.transaction() as s:
        v = await schedules.add_visit(
            s, commune=COMMUNE, day=dash_clock().date() + __import__("datetime").timedelta(days=2), start="07:30", end=None,
            place="Nhà văn hoá", hamlets=[T1], by="web:officer", now=dash_clock(),
        )
        v.announced_broadcast_id = schedules.NOT_ANNOUNCED
    officer = await sign_in("officer")
    html = await (await officer.get(f"{PREFIX}/broadcasts/visits")).text()
    assert rows_of(html, "visits")[0][4].startswith("không thông báo")
