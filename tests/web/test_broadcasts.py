"""The dashboard's broadcast pages: compose, preview, dry run, submit, approve, progress, report, pause/resume/cancel."""

from __future__ import annotations

import os
import random
import re

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.broadcasts.adapters import TelegramAdapter
from bot.broadcasts.pacing import ChannelPacer, PacingRules
from bot.broadcasts.sender import Sender, SenderConfig
from bot.web.app import PREFIX
from storage import broadcasts as repo
from storage import people
from storage.broadcasts import BroadcastStatus
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.web.conftest import CSRF_RE
from tests.web.fixture import COMMUNE, OTHER

T1, T2 = "ngoctrao_tdp01", "ngoctrao_tdp02"
TEXT = "Thông báo: tổ cấp căn cước lưu động đến Tổ dân phố 1 sáng thứ Bảy. Anh/chị mang theo giấy tờ."


@pytest.fixture
async def people_here(database, dash_clock):
    """Groups: -501 (tdp01), -502 (tdp02), -601 (camthach_01). Subscribers: 51, 52 (tdp01), 53 (tdp02, opted out)."""
    now = dash_clock()
    async with database.transaction() as s:
        for chat_id, hamlet in (("-501", T1), ("-502", T2), ("-601", "camthach_01")):
            chat = await people.touch_chat(s, "telegram", chat_id, "group", now)
            chat.hamlet_code = hamlet
        for user_id, hamlet, opted in (("51", T1, False), ("52", T1, False), ("53", T2, True)):
            user = await people.touch_user(s, "telegram", user_id, now)
            user.hamlet_code, user.opted_out = hamlet, opted
            await people.touch_chat(s, "telegram", user_id, "private", now)
        # Quiet hours off: the tests' sender runs at the fixture's clock, which may fall at night.
        for commune in (COMMUNE, OTHER):
            await repo.set_policy(s, commune, quiet_start="00:00", quiet_end="00:00")
    return database


async def csrf(client, path=f"{PREFIX}/broadcasts") -> str:
    return CSRF_RE.search(await (await client.get(path)).text()).group(1)


async def preview(client, **fields):
    data = {"csrf": await csrf(client), "text": TEXT, "scope": "some", **fields}
    return await client.post(f"{PREFIX}/broadcasts/preview", data=data)


async def submit(client, **fields) -> int:
    data = {"csrf": await csrf(client), "text": TEXT, "scope": "some", **fields}
    resp = await client.post(f"{PREFIX}/broadcasts", data=data, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    return int(re.search(r"/broadcasts/(\d+)", resp.headers["Location"]).group(1))


async def act(client, broadcast_id: int, action: str):
    token = await csrf(client)
    return await client.post(f"{PREFIX}/broadcasts/{broadcast_id}/{action}", data={"csrf": token}, allow_redirects=False)


async def status_of(db, broadcast_id: int):
    async with db.transaction() as s:
        return await repo.get(s, broadcast_id)


def rows_of(html: str, table: str) -> list[list[str]]:
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S) if "<td" in row]


async def test_a_team_member_previews_as_each_channel_shows_it_with_the_dry_run(sign_in, people_here):
    client = await sign_in("team")
    long_text = TEXT + "\n\n" + "Chi tiết: " + "giấy tờ cần mang theo. " * 200  # ~4,800 characters
    resp = await preview(client, text=long_text, hamlet=T1)
    html = await resp.text()
    assert resp.status == 200
    parts = re.findall(r'<pre class="message" data-channel="(\w+)">', html)
    assert parts.count("telegram") == 2  # 4,096 characters a message
    assert rows_of(html, "dry-run") == [["Tổ dân phố 1", "Telegram", "nhóm thôn", "1", "0"], ["Tổ dân phố 1", "Telegram", "người đăng ký", "2", "0"]]
    resp = await preview(client, commune=COMMUNE)
    rows = rows_of(await resp.text(), "dry-run")
    assert ["Tổ dân phố 2", "Telegram", "người đăng ký", "0", "1"] in rows  # opted out: counted apart, not sent


async def test_a_team_member_cannot_target_another_commune(sign_in, people_here):
    client = await sign_in("team")
    resp = await preview(client, hamlet="camthach_01")
    assert resp.status == 400 and "chỉ gửi được tới xã/phường của mình" in await resp.text()
    assert TEXT in await resp.text()  # what was typed is kept
    data = {"csrf": await csrf(client), "text": TEXT, "scope": "some", "commune": OTHER}
    resp = await client.post(f"{PREFIX}/broadcasts", data=data, allow_redirects=False)
    assert resp.status == 403
    async with people_here.transaction() as s:
        assert await repo.list_recent(s) == []


async def test_submit_approve_by_an_officer_of_the_commune_not_by_the_author(sign_in, client, people_here):
    team = await sign_in("team")
    b = await submit(team, hamlet=T1)
    page = await (await team.get(f"{PREFIX}/broadcasts/{b}")).text()
    assert "chờ duyệt" in page and "Duyệt và gửi" not in page
    assert (await act(team, b, "approve")).status == 403
    await client.post(f"{PREFIX}/logout", data={"csrf": await csrf(client)})
    other = await sign_in("officer_other")  # officer of another commune: does not even see it
    assert (await other.get(f"{PREFIX}/broadcasts/{b}")).status == 404
    assert (await act(other, b, "approve")).status in (403, 404)
    await client.post(f"{PREFIX}/logout", data={"csrf": await csrf(client)})
    officer = await sign_in("officer")
    assert "Duyệt và gửi" in await (await officer.get(f"{PREFIX}/broadcasts/{b}")).text()
    assert (await act(officer, b, "approve")).status == 303
    row = await status_of(people_here, b)
    assert (row.status, row.approver, row.author) == (BroadcastStatus.SCHEDULED, "web:officer", "web:team")


async def test_nobody_approves_their_own_broadcast(sign_in, client, people_here):
    officer = await sign_in("officer")
    b = await submit(officer, commune=COMMUNE)
    assert "Duyệt và gửi" not in await (await officer.get(f"{PREFIX}/broadcasts/{b}")).text()
    resp = await act(officer, b, "approve")
    assert resp.status == 303 and "err=" in resp.headers["Location"]
    assert (await status_of(people_here, b)).status == BroadcastStatus.AWAITING_APPROVAL
    await client.post(f"{PREFIX}/logout", data={"csrf": await csrf(client)})
    admin = await sign_in("admin")
    assert (await act(admin, b, "approve")).status == 303
    assert (await status_of(people_here, b)).status == BroadcastStatus.SCHEDULED


async def test_approval_switched_off_for_a_commune(sign_in, client, people_here):
    officer = await sign_in("officer")
    token = await csrf(officer, f"{PREFIX}/broadcasts/rules")
    resp = await officer.post(f"{PREFIX}/broadcasts/rules", data={"csrf": token, "commune": OTHER, "quiet_start": "21:00", "quiet_end": "07:00"})
    assert resp.status == 403  # not their commune
    resp = await officer.post(f"{PREFIX}/broadcasts/rules", data={"csrf": token, "commune": COMMUNE, "quiet_start": "22:00", "quiet_end": "06:00"})
    assert resp.status == 200
    async with people_here.transaction() as s:
        p = await repo.policy(s, COMMUNE)
        assert (p.approval_required, p.quiet_start, p.quiet_end) == (False, "22:00", "06:00")
    bad = await officer.post(f"{PREFIX}/broadcasts/rules", data={"csrf": token, "commune": COMMUNE, "quiet_start": "25:00", "quiet_end": "06:00"})
    assert "GG:PP" in await bad.text()
    await client.post(f"{PREFIX}/logout", data={"csrf": await csrf(client)})
    team = await sign_in("team")
    assert (await team.get(f"{PREFIX}/broadcasts/rules")).status == 403
    b = await submit(team, hamlet=T1)
    assert (await status_of(people_here, b)).status == BroadcastStatus.SCHEDULED


async def test_progress_report_per_hamlet_and_channel_pause_resume_cancel(sign_in, client, people_here, dash_clock):
    async with people_here.transaction() as s:
        await repo.set_policy(s, COMMUNE, approval_required=False)
    team = await sign_in("team")
    b = await submit(team, commune=COMMUNE)
    fake = await FakeTelegramAPI().start()
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    bot = Bot(fake.token, base_url=fake.base_url, request=HTTPXRequest(connection_pool_size=4, read_timeout=2.0))
    await bot.initialize()
    fake.block(-502)  # the tdp02 group removed the bot
    try:
        # Spacing per chat follows the test's clock (one group gets both broadcasts).
        pacer = ChannelPacer(PacingRules(rate=200.0, group_spacing=3.0, private_spacing=1.0), clock=lambda: dash_clock().timestamp())
        sender = Sender(people_here, {"telegram": TelegramAdapter(bot)}, {"telegram": pacer},
                        config=SenderConfig(batch=1, concurrency=1), clock=dash_clock, rng=random.Random(1))
        assert await sender.run_once() == 1  # one delivery made: the broadcast is under way
        page = await (await team.get(f"{PREFIX}/broadcasts/{b}")).text()
        assert "đang gửi" in page and 'http-equiv="refresh"' in page and "Tạm dừng" in page
        assert (await act(team, b, "pause")).status == 303
        assert await sender.run_once() == 0  # paused: nothing goes out
        assert (await act(team, b, "resume")).status == 303
        dash_clock.advance(seconds=5)
        for _ in range(6):
            await sender.run_once()
        page = await (await team.get(f"{PREFIX}/broadcasts/{b}")).text()
        report = {(r[0], r[2]): r[3:] for r in rows_of(page, "report")}
        # columns: sent, failed, blocked, no window, opted out, unknown, pending, cancelled
        assert report[("Tổ dân phố 1", "nhóm thôn")] == ["1", "0", "0", "0", "0", "0", "0", "0"]
        assert report[("Tổ dân phố 1", "người đăng ký")] == ["2", "0", "0", "0", "0", "0", "0", "0"]
        assert report[("Tổ dân phố 2", "nhóm thôn")] == ["0", "0", "1", "0", "0", "0", "0", "0"]
        assert report[("Tổ dân phố 2", "người đăng ký")] == ["0", "0", "0", "0", "1", "0", "0", "0"]
        assert "xong" in page and 'http-equiv="refresh"' not in page
        # A second broadcast, cancelled mid-run: what was not sent is never sent.
        b2 = await submit(team, commune=COMMUNE)
        dash_clock.advance(seconds=10)
        assert await sender.run_once() == 1
        assert (await act(team, b2, "cancel")).status == 303
        before = len(fake.sent())
        for _ in range(3):
            await sender.run_once()
        assert len(fake.sent()) == before
        async with people_here.transaction() as s:
            totals = await repo.totals(s, b2)
        assert totals.get("sent", 0) + totals.get("blocked", 0) == 1 and totals.get("cancelled", 0) >= 1
        assert (await status_of(people_here, b2)).status == BroadcastStatus.CANCELLED
    finally:
        await bot.shutdown()
        await fake.close()


async def test_the_list_shows_only_the_broadcasts_of_the_accounts_commune(sign_in, client, people_here):
    admin = await sign_in("admin")
    mine = await submit(admin, hamlet=T1)
    theirs = await submit(admin, commune=OTHER)
    await client.post(f"{PREFIX}/logout", data={"csrf": await csrf(client)})
    team = await sign_in("team")
    html = await (await team.get(f"{PREFIX}/broadcasts")).text()
    listed = [int(x) for x in re.findall(r'data-broadcast="(\d+)"', html)]
    assert mine in listed and theirs not in listed
    assert (await team.get(f"{PREFIX}/broadcasts/{theirs}")).status == 404
    # Text people typed is escaped on every page.
    assert "<script>" not in html


async def test_officers_enter_mobile_team_visits_by_form_and_csv(sign_in, client, people_here):
    from aiohttp import FormData

    from storage import schedules

    officer = await sign_in("officer")
    token = await csrf(officer, f"{PREFIX}/broadcasts/visits")
    resp = await officer.post(f"{PREFIX}/broadcasts/visits/add", data={
        "csrf": token, "day": "2026-11-25", "start": "7h30", "end": "11:00", "place": "Nhà văn hoá TDP 1", "hamlet": [T1, T2],
    })
    html = await resp.text()
    assert "Đã lưu 1 lịch." in html
    assert rows_of(html, "visits")[0][:4] == ["25/11/2026", "07:30–11:00", "Nhà văn hoá TDP 1", "Tổ dân phố 1, Tổ dân phố 2"]

    def csv_form(body: str) -> FormData:
        form = FormData()
        form.add_field("csrf", token)
        form.add_field("file", body.encode(), filename="lich.csv", content_type="text/csv")
        return form

    header = "ngay,bat_dau,ket_thuc,dia_diem,thon\n"
    bad = header + "2026-11-26,07:30,,Nhà văn hoá TDP 2,ngoctrao_tdp02\n27/11/2026,08:00,,Hội trường,camthach_01\n"
    html = await (await officer.post(f"{PREFIX}/broadcasts/visits/import", data=csv_form(bad))).text()
    assert "dòng 3: không có thôn camthach_01" in html  # another commune's hamlet: nothing saved
    good = header + "2026-11-26,07:30,,Nhà văn hoá TDP 2,ngoctrao_tdp02\n27/11/2026,08:00,10:00,Hội trường phường,ngoctrao_tdp03;ngoctrao_tdp04\n"
    html = await (await officer.post(f"{PREFIX}/broadcasts/visits/import", data=csv_form(good))).text()
    assert "Đã lưu 2 lịch." in html and len(rows_of(html, "visits")) == 3
    past = await officer.post(f"{PREFIX}/broadcasts/visits/add", data={
        "csrf": token, "day": "2026-11-01", "start": "07:30", "end": "", "place": "x", "hamlet": T1})
    assert "đã qua" in await past.text()
    async with people_here.transaction() as s:
        first = (await schedules.visits(s, COMMUNE, __import__("datetime").date(2026, 11, 1)))[0]
    await client.post(f"{PREFIX}/logout", data={"csrf": await csrf(client)})
    other = await sign_in("officer_other")
    token = await csrf(other, f"{PREFIX}/broadcasts/visits")
    assert (await other.post(f"{PREFIX}/broadcasts/visits/cancel", data={"csrf": token, "id": str(first.id)})).status == 404
    await client.post(f"{PREFIX}/logout", data={"csrf": await csrf(client)})
    team = await sign_in("team")
    assert (await team.get(f"{PREFIX}/broadcasts/visits")).status == 403


async def test_officers_set_recurring_broadcasts(sign_in, client, people_here):
    from storage import schedules

    officer = await sign_in("officer")
    token = await csrf(officer, f"{PREFIX}/broadcasts/recurring")
    base = {"csrf": token, "text": TEXT, "scope": "some", "commune": COMMUNE, "kind": "group"}
    html = await (await officer.post(f"{PREFIX}/broadcasts/recurring/add", data={**base, "cron": "0 8 32 * *"})).text()
    assert "5 phần" in html
    assert (await officer.post(f"{PREFIX}/broadcasts/recurring/add", data={**base, "commune": OTHER, "cron": "0 8 1 * *"})).status == 403
    html = await (await officer.post(f"{PREFIX}/broadcasts/recurring/add", data={**base, "cron": "0 8 1 * *"})).text()
    assert "Đã lưu lịch gửi định kỳ." in html
    row = rows_of(html, "recurring")[0]
    assert row[:2] == ["0 8 1 * *", "01/12/2026 08:00"]  # the fixture's clock is 20 November
    async with people_here.transaction() as s:
        [rule] = await schedules.recurring(s)
    resp = await officer.post(f"{PREFIX}/broadcasts/recurring/stop", data={"csrf": token, "id": str(rule.id)})
    assert "Đã dừng gửi định kỳ." in await resp.text()
    async with people_here.transaction() as s:
        assert not (await schedules.recurring(s))[0].active
    await client.post(f"{PREFIX}/logout", data={"csrf": await csrf(client)})
    team = await sign_in("team")
    assert (await team.get(f"{PREFIX}/broadcasts/recurring")).status == 403
