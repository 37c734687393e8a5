"""What an officer reads on each page, on the hand-counted fixture; escaping; exports."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
from openpyxl import load_workbook

from bot.web.app import PREFIX
from tests.web.conftest import CHANGES, csrf_of
from tests.web.fixture import EVIL_HAMLET, EVIL_TEXT, UNANSWERED_A, UNANSWERED_B

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
NOV = "month=2026-11&commune=ngoc_trao"


def cells(page: str, table_id: str) -> list[list[str]]:
    """The text of each row's cells of one table."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, re.S)] for r in rows]


async def test_overview_figures(client, sign_in):
    await sign_in("admin")
    html = await (await client.get(f"{PREFIX}/?{NOV}")).text()
    values = dict(re.findall(r'id="(\w+)">([^<]+)<', html))
    assert (values["messages"], values["people"], values["groups"]) == ("12", "8", "1")
    assert (values["answered"], values["choices"], values["unanswered"]) == ("70,0%", "10,0%", "20,0%")
    rows = cells(html, "channels")
    assert rows[1][:3] == ["Telegram", "8", "6"] and rows[2][:3] == ["Zalo (bot)", "4", "< 5"]
    days = dict(re.findall(r'data-day="([\d-]+)" data-value="(\d+)"', html))
    assert len(days) == 30 and days["2026-11-01"] == "1" and days["2026-11-03"] == "5" and days["2026-11-02"] == "0"


async def test_default_period_is_this_month_in_vietnam(client, sign_in):
    await sign_in("officer")
    html = await (await client.get(f"{PREFIX}/")).text()
    assert "tháng 11/2026" in html and 'id="messages">12<' in html


async def test_hamlet_table_inactive_first_sorted_and_suppressed(client, sign_in):
    await sign_in("officer")
    html = await (await client.get(f"{PREFIX}/hamlets?{NOV}&sort=messages")).text()
    rows = cells(html, "hamlets")[1:]
    assert len(rows) == 10
    assert all("chưa có hoạt động" in r[0] for r in rows[:8])
    assert rows[8] == ["Tổ dân phố 1", "6", "8", "6", "< 5", "< 5", "0"]
    assert rows[9] == ["Tổ dân phố 2", "< 5", "4", "0", "0", "0", "2"]
    bars = re.findall(r'class="bar" data-label="([^"]+)" data-value="([^"]+)"', html)
    assert ("Tổ dân phố 1", "6") in bars and ("Tổ dân phố 2", "&lt; 5") in bars


async def test_funnel_page(client, sign_in):
    await sign_in("officer")
    html = await (await client.get(f"{PREFIX}/funnel?{NOV}")).text()
    rows = cells(html, "funnel")[1:]
    assert [r[1] for r in rows[:9]] == ["6", "5", "< 5", "< 5", "< 5", "< 5", "< 5", "< 5", "< 5"]
    assert [r[2] for r in rows[:9]] == ["< 5", "< 5", "0", "0", "0", "0", "0", "0", "< 5"]
    assert [r[3] for r in rows[:9]] == ["0", "2", "0", "0", "0", "0", "0", "0", "0"]
    assert rows[9][:2] == ["Báo đã nộp hồ sơ", "< 5"]


async def test_topics_page_with_trend(client, sign_in, catalog):
    await sign_in("team")
    html = await (await client.get(f"{PREFIX}/topics?{NOV}")).text()
    rows = cells(html, "topics")[1:]
    assert rows == [[catalog.topics["le_phi"].title, "7", "1", "▲ 600%"]]


async def test_unanswered_grouped_then_marked_handled_and_proposed(client, sign_in, catalog):
    await sign_in("officer")
    html = await (await client.get(f"{PREFIX}/unanswered?{NOV}")).text()
    assert "<p>3 câu hỏi chưa trả lời được hoặc phải đưa lựa chọn" in html
    rows = cells(html, "unanswered")[1:]
    assert rows[0][0] == "2" and UNANSWERED_A in rows[0][1] and UNANSWERED_B in rows[0][1] and rows[0][2] == "Tổ dân phố 2"
    token = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    first, second = re.findall(r'name="group" value="(-?\d+)"', html)
    resp = await client.post(
        f"{PREFIX}/unanswered/mark", data=[("csrf", token), ("action", "handled"), ("group", first), ("back", NOV)], allow_redirects=False
    )
    assert resp.status == 303
    html = await (await client.get(f"{PREFIX}/unanswered?{NOV}")).text()
    assert UNANSWERED_A not in html and "1 nhóm đã xử lý được ẩn" in html
    resp = await client.post(
        f"{PREFIX}/unanswered/mark", data=[("csrf", token), ("action", "proposed"), ("topic", "mat_the"), ("group", second)], allow_redirects=False
    )
    assert resp.status == 303
    html = await (await client.get(f"{PREFIX}/content?{NOV}")).text()
    proposals = cells(html, "proposals")[1:]
    assert proposals[0][0].startswith(catalog.topics["mat_the"].title) and "mất thẻ thì sao" in proposals[0][1]
    assert "Thêm vào ví dụ" not in html, "only an admin closes a proposal"


async def test_content_lists_what_to_check(client, sign_in, catalog):
    await sign_in("team")
    html = await (await client.get(f"{PREFIX}/content")).text()
    review = [t for t in catalog.topics.values() if t.needs_review]
    assert len(cells(html, "review-topics")) - 1 == max(len(review), 1)
    for topic in review[:3]:
        assert f"<code>{topic.id}</code>" in html


async def test_user_text_is_escaped(client, sign_in):
    await sign_in("admin")
    html = await (await client.get(f"{PREFIX}/unanswered?month=2026-11&commune=cam_thach")).text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for page in ("hamlets", "registry", "funnel"):
        html = await (await client.get(f"{PREFIX}/{page}?month=2026-11&commune=cam_thach")).text()
        assert EVIL_HAMLET not in html and "Thôn &lt;b&gt;Hai&lt;/b&gt;" in html, page
    assert EVIL_TEXT


async def test_hamlet_crud_and_links(client, sign_in, dashboard):
    await sign_in("officer")
    html = await (await client.get(f"{PREFIX}/registry")).text()
    assert "https://t.me/cccd_test_bot?start=h_ngoctrao_tdp01" in html
    assert 'href="/?h=ngoctrao_tdp01"' in html
    qr = re.search(r'src="(/admin/registry/ngoctrao_tdp01/qr/telegram.svg)"', html).group(1)
    resp = await client.get(qr)
    assert resp.status == 200 and resp.content_type == "image/svg+xml" and b"<svg" in await resp.read()
    assert (await client.get("/admin/registry/camthach_01/qr/web.svg")).status == 404, "another commune's hamlet"
    token = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    resp = await client.post(f"{PREFIX}/registry/add", data={"csrf": token, "code": "tdp_moi", "name": "Tổ dân phố <Mới>"})
    assert resp.status == 200 and "Đã thêm thôn." in await resp.text()
    resp = await client.post(f"{PREFIX}/registry/add", data={"csrf": token, "code": "TDP_MOI", "name": "Trùng"})
    assert "<p class=\"error\" role=\"alert\">mã thôn &#39;TDP_MOI&#39; đã có</p>" in await resp.text()
    resp = await client.post(f"{PREFIX}/registry/add", data={"csrf": token, "code": "mã sai", "name": "Thôn"})
    assert "mã thôn gồm 1-40 ký tự A-Z a-z 0-9 _ -</p>" in await resp.text()
    resp = await client.post(f"{PREFIX}/registry/rename", data={"csrf": token, "code": "tdp_moi", "name": " "})
    assert "tên phải có 1-200 ký tự</p>" in await resp.text()
    resp = await client.post(f"{PREFIX}/registry/rename", data={"csrf": token, "code": "tdp_moi", "name": "Tổ dân phố 11"})
    html = await resp.text()
    assert "Tổ dân phố 11" in html and "&lt;Mới&gt;" not in html
    resp = await client.post(f"{PREFIX}/registry/remove", data={"csrf": token, "code": "tdp_moi"})
    assert "Tổ dân phố 11" not in await resp.text()
    assert len(dashboard[CHANGES]) == 3, "the chat core is told each time"


async def test_xlsx_export_cells(client, sign_in, catalog):
    await sign_in("officer")
    resp = await client.get(f"{PREFIX}/export/report.xlsx?month=2026-11")
    assert resp.status == 200 and "spreadsheetml" in resp.headers["Content-Type"]
    assert 'filename="bao-cao-2026-11-ngoc_trao.xlsx"' in resp.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(await resp.read()))
    assert book.sheetnames == ["Tổng quan", "Thôn", "Hành trình 9 bước", "Câu hỏi"]
    o = {row[0]: row[1] for row in book["Tổng quan"].iter_rows(values_only=True) if row and row[0]}
    assert o["Xã/phường"] == "Phường Ngọc Trạo" and o["Kỳ báo cáo"] == "tháng 11/2026"
    assert o["Lập lúc (giờ Việt Nam)"] == "20/11/2026 10:00"
    assert o["Tin nhắn"] == 12 and o["Số người"] == 8 and o["Trả lời được (%)"] == 70.0
    hamlets = [r for r in book["Thôn"].iter_rows(values_only=True) if r and r[0] == "ngoctrao_tdp01"]
    assert hamlets == [("ngoctrao_tdp01", "Tổ dân phố 1", 6, 8, 6, "< 5", "< 5", 0)]
    funnel = [r for r in book["Hành trình 9 bước"].iter_rows(values_only=True) if r and isinstance(r[0], int)]
    assert [r[2] for r in funnel] == [6, 5] + ["< 5"] * 7 and funnel[1][4] == 2
    topics = [r for r in book["Câu hỏi"].iter_rows(values_only=True) if r and r[0] == "le_phi"]
    assert topics == [("le_phi", catalog.topics["le_phi"].title, 7, 1, 600.0)]


async def test_csv_export(client, sign_in):
    await sign_in("admin")
    resp = await client.get(f"{PREFIX}/export/report.csv?{NOV}")
    text = (await resp.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert ["## Thôn"] in rows and ["Tin nhắn", "12"] in rows
    assert ["Kỳ báo cáo", "tháng 11/2026", "01/11/2026", "30/11/2026"] in rows
    everywhere = (await (await client.get(f"{PREFIX}/export/report.csv?month=2026-11")).read()).decode("utf-8-sig")
    assert ["Xã/phường", "Tất cả xã/phường"] in list(csv.reader(io.StringIO(everywhere)))
    assert ["ngoctrao_tdp02", "Tổ dân phố 2", "< 5", "4", "0", "0", "0", "2"] in rows


async def test_bad_month_is_reported(client, sign_in):
    await sign_in("admin")
    html = await (await client.get(f"{PREFIX}/?month=2026-13")).text()
    assert '<p class="error">tháng phải có dạng YYYY-MM, ví dụ 2026-11</p>' in html
    resp = await client.get(f"{PREFIX}/export/report.xlsx?month=abc")
    assert resp.status == 400 and await resp.json() == {"error": "tháng phải có dạng YYYY-MM, ví dụ 2026-11"}
    html = await (await client.get(f"{PREFIX}/?from=2026-11-03&to=hôm-nay")).text()
    assert '<p class="error">ngày phải có dạng YYYY-MM-DD</p>' in html
    html = await (await client.get(f"{PREFIX}/?from=2020-01-01&to=2026-11-05")).text()
    assert '<p class="error">khoảng thời gian không hợp lệ (tối đa 2 năm)</p>' in html


async def test_a_chosen_range_of_days(client, sign_in):
    await sign_in("officer")
    html = await (await client.get(f"{PREFIX}/?from=2026-11-03&to=2026-11-05")).text()
    assert "03/11/2026 – 05/11/2026" in html and 'id="messages">7<' in html
    assert len(re.findall(r'data-day="', html)) == 3


async def test_each_hamlet_row_offers_its_poster(client, sign_in):
    await sign_in("officer")
    html = await (await client.get(f"{PREFIX}/registry")).text()
    assert 'href="/admin/registry/ngoctrao_tdp01/poster.pdf"' in html
    resp = await client.get(f"{PREFIX}/registry/ngoctrao_tdp01/poster.pdf")
    assert resp.status == 200 and resp.content_type == "application/pdf"
    assert (await resp.read()).startswith(b"%PDF")
    assert (await client.get(f"{PREFIX}/registry/camthach_01/poster.pdf")).status == 404, "another commune's hamlet"


async def test_the_poster_needs_a_session(client):
    resp = await client.get(f"{PREFIX}/registry/ngoctrao_tdp01/poster.pdf", allow_redirects=False)
    assert resp.status in (302, 303, 401)


async def test_a_commune_words_every_page_in_its_content_directory(database, catalog, dash_clock, tmp_path):
    """The menu, the sign-in page, a refusal, a page and a hamlet's link buttons read dashboard.yaml from the
    content directory the bot is given: a commune changes a word without touching code."""
    from aiohttp.test_utils import TestClient, TestServer

    from tests.web.conftest import login
    from tests.web.test_broadcast_texts import edited_content, team_dashboard

    content = edited_content(
        tmp_path,
        ('nav_unanswered: "Chưa trả lời được"', 'nav_unanswered: "Câu hỏi còn bỏ ngỏ"'),
        ('login_err_bad: "Tên đăng nhập hoặc mật khẩu không đúng."', 'login_err_bad: "Sai tên hoặc mật khẩu rồi."'),
        ('forbidden_scope: "Tài khoản của anh/chị chỉ xem được xã/phường của mình."', 'forbidden_scope: "Chỉ xem được xã mình thôi."'),
        ('overview_per_day: "Tin nhắn mỗi ngày"', 'overview_per_day: "Số tin theo ngày"'),
        ('link_poster: "Áp phích (PDF)"', 'link_poster: "Tải áp phích dán ở nhà văn hoá"'),
    )
    app = await team_dashboard(database, catalog, dash_clock, content)
    async with TestClient(TestServer(app)) as client:
        refused = await login(client, "team", "not the password")
        assert refused.status == 401 and "Sai tên hoặc mật khẩu rồi." in await refused.text()
        assert (await login(client, "team")).status == 303
        overview = await (await client.get(f"{PREFIX}/")).text()
        assert ">Câu hỏi còn bỏ ngỏ</a>" in overview and "<h2>Số tin theo ngày</h2>" in overview
        assert "Chưa trả lời được</a>" not in overview
        other = await client.get(f"{PREFIX}/?commune=cam_thach")
        assert other.status == 403 and "Chỉ xem được xã mình thôi." in await other.text()
        registry = await (await client.get(f"{PREFIX}/registry")).text()
        assert 'poster.pdf">Tải áp phích dán ở nhà văn hoá</a>' in registry
