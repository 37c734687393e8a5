"""End to end in a real browser: Debian's headless Chromium, driven by Playwright, on `cccd-bot serve`'s app."""

from __future__ import annotations

import io
import os
import shutil

import pytest
from aiohttp.test_utils import TestServer
from openpyxl import load_workbook

from bot.config import Settings
from bot.server import create_app
from storage import accounts
from tests.conftest import _pg_required
from tests.web.conftest import PASSWORD
from tests.web.fixture import seed

CHROMIUM = os.environ.get("CCCD_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PORT = int(os.environ.get("CCCD_TEST_BROWSER_PORT", "6231"))
FILTER = "month=2026-11&commune=ngoc_trao"


@pytest.fixture
def chromium() -> str:
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        if _pg_required():
            pytest.fail(f"Chromium is required here but missing at {CHROMIUM} (scripts/bootstrap.sh installs it)")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    return CHROMIUM


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_officer_reads_every_page_and_downloads_the_workbook(chromium, database, catalog, tmp_path):
    from playwright.async_api import async_playwright

    await seed(database)
    async with database.transaction() as s:
        await accounts.add(s, "canbo", PASSWORD, "officer", "ngoc_trao", __import__("datetime").datetime.now(__import__("datetime").timezone.utc))
    app = create_app(Settings(_env_file=None, database_url=database.url), catalog, database)
    server = TestServer(app, host="127.0.0.1", port=PORT)
    await server.start_server()
    base = f"http://127.0.0.1:{PORT}"
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
            page = await browser.new_page(accept_downloads=True, viewport={"width": 390, "height": 800})  # a phone
            await page.goto(f"{base}/admin/?{FILTER}")
            assert "/admin/login" in page.url
            await page.fill("input[name=username]", "canbo")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/admin/?{FILTER}")
            assert await page.text_content("h1") == "Tổng quan"
            assert await page.text_content("#messages") == "12"
            assert await page.text_content("#people") == "8"
            assert await page.locator("#per-day svg rect.day").count() == 30
            assert await page.get_attribute("#per-day rect[data-day='2026-11-03']", "data-value") == "5"

            await page.click("nav >> text=Thôn")
            assert await page.text_content("h1") == "Theo thôn"
            row = page.locator("#hamlets tr[data-hamlet=ngoctrao_tdp01] td")
            assert [t.strip() for t in await row.all_text_contents()] == ["Tổ dân phố 1", "6", "8", "6", "< 5", "< 5", "0"]
            assert await page.locator("#hamlet-chart svg g.bar").count() == 10
            box = await page.locator("#hamlet-chart svg").bounding_box()
            assert box and 0 < box["width"] <= 390, "the chart fits a phone's screen"
            await page.click("#hamlets th >> text=Tin nhắn")
            assert "sort=messages" in page.url

            await page.click("nav >> text=Hành trình 9 bước")
            assert await page.text_content("#funnel tr[data-step='1'] td:nth-child(2)") == "6"
            assert await page.locator("#funnel-chart svg g.bar").count() == 9

            await page.click("nav >> text=Câu hỏi")
            assert await page.text_content("#topics tr[data-topic=le_phi] td:nth-child(2)") == "7"

            await page.click("nav >> text=Chưa trả lời được")
            assert "lam can cuoc o dau vay" in await page.text_content("#unanswered")

            await page.click("nav >> text=Nội dung")
            assert await page.text_content("h1") == "Nội dung cần kiểm tra"

            await page.click("nav >> text=Thôn và nhóm")
            await page.fill("form.add input[name=code]", "tdp_moi")
            await page.fill("form.add input[name=name]", "Tổ dân phố Mới")
            await page.click("form.add button")
            assert "Đã thêm thôn." in await page.text_content("p.ok")
            assert await page.locator("#registry tr[data-hamlet=tdp_moi]").count() == 1

            await page.goto(f"{base}/admin/?{FILTER}")
            async with page.expect_download() as info:
                await page.click("text=Excel")
            download = await info.value
            path = tmp_path / download.suggested_filename
            await download.save_as(path)
            assert download.suggested_filename == "bao-cao-2026-11-ngoc_trao.xlsx"
            book = load_workbook(io.BytesIO(path.read_bytes()))
            values = {r[0]: r[1] for r in book["Tổng quan"].iter_rows(values_only=True) if r and r[0]}
            assert values["Tin nhắn"] == 12

            await page.click("header button")  # log out
            await page.goto(f"{base}/admin/hamlets")
            assert "/admin/login" in page.url
            await browser.close()
    finally:
        await server.close()
