"""End to end in a real browser: Debian's headless Chromium, driven by Playwright, chats through the web chat."""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from bot.config import Settings
from bot.server import create_app

CHROMIUM = os.environ.get("CCCD_TEST_CHROMIUM", "/usr/bin/chromium")
# The browser is Debian's (scripts/bootstrap.sh installs it): Playwright never downloads one here.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PORTS = range(6300, 6400)
SCREENSHOTS = os.environ.get("CCCD_TEST_SCREENSHOTS")


def _browser_or_skip() -> None:
    if Path(CHROMIUM).exists() and shutil.which(CHROMIUM):
        return
    message = f"Chromium not found at {CHROMIUM} (scripts/bootstrap.sh test installs Debian's chromium)"
    if os.environ.get("CI") == "true" or os.environ.get("CCCD_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 6300-6399")


@asynccontextmanager
async def serving(app: web.Application):
    """Run `app` on a free port of this checkout's range; yield its base address."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(registry_loaded, db_url, catalog):
    app = create_app(Settings(_env_file=None, database_url=db_url, web_chat=True), catalog, registry_loaded)
    async with serving(app) as base:
        yield base


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_chats_through_the_web_chat_to_step_2(server, tmp_path):
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # A cheap phone's screen.
            page = await browser.new_page(viewport={"width": 360, "height": 640})
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            await page.goto(f"{server}/?h=ngoctrao_tdp03")
            log = page.locator("#log")
            await expect(log).to_contain_text("Tổ dân phố 3")
            # The hamlet is set once: the address bar drops ?h= so a reload does not set it again.
            assert "h=" not in page.url

            await page.get_by_role("button", name="Hướng dẫn 9 bước").click()
            await expect(log).to_contain_text("Bước 1/9")
            assert await log.get_by_text("Bước 2/9").count() == 0, "one step at a time"
            await page.get_by_role("button", name="Tiếp theo").click()
            await expect(log).to_contain_text("Bước 2/9: Đăng nhập")
            # Only the latest message keeps its buttons.
            await expect(page.get_by_role("button", name="Tiếp theo")).to_have_count(1)

            # Typing works too, and what a visitor types is shown as text, never run as HTML.
            hostile = "<img src=x onerror=document.title='pwned'>"
            await page.fill("#text", hostile)
            await page.press("#text", "Enter")
            await expect(page.locator(".msg.me").last).to_have_text(hostile)
            await expect(page.locator(".msg.bot")).not_to_have_count(0)
            assert await page.title() != "pwned"
            await page.fill("#text", "buoc 3")
            await page.click("#send-button")
            await expect(log).to_contain_text("Bước 3/9")

            # A reload keeps the visitor (the cookie) and offers to go on from step 3.
            await page.reload()
            await expect(log).to_contain_text("3/9")
            if SCREENSHOTS:
                await page.screenshot(path=str(Path(SCREENSHOTS) / "web-chat.png"), full_page=True)

            assert all(url.startswith(server) for url in requests), [u for u in requests if not u.startswith(server)]
            assert not errors, errors
        finally:
            await browser.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_widget_opens_the_chat_in_a_frame_on_a_commune_site(registry_loaded, db_url, catalog):
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    # Served over HTTPS in real life: the frame's cookie is then SameSite=None, Secure and Partitioned.
    settings = Settings(_env_file=None, database_url=db_url, web_chat=True, public_url="https://bot.example.vn")
    bot_app = create_app(settings, catalog, registry_loaded)
    commune = web.Application()

    async def home(_request: web.Request) -> web.Response:
        html = (
            "<!DOCTYPE html><html><body><h1>Xã mẫu</h1>"
            f'<script src="{bot_base}/chat/widget.js" data-hamlet="ngoctrao_tdp05" async></script></body></html>'
        )
        return web.Response(text=html, content_type="text/html")

    commune.router.add_get("/", home)
    async with serving(bot_app) as bot_base, serving(commune) as commune_base:
        # Another site: "localhost" is not "127.0.0.1".
        commune_url = commune_base.replace("127.0.0.1", "localhost")
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 360, "height": 700})
                await page.goto(commune_url)
                await page.get_by_role("button", name="Hỏi về thẻ căn cước").click()
                frame = page.frame_locator("iframe")
                await expect(frame.locator("#log")).to_contain_text("Tổ dân phố 5")
                await frame.get_by_role("button", name="Hướng dẫn 9 bước").click()
                await expect(frame.locator("#log")).to_contain_text("Bước 1/9")
                # Typed "tiếp" only works if the frame's requests carry the visitor's cookie.
                await frame.locator("#text").fill("tiếp")
                await frame.locator("#text").press("Enter")
                await expect(frame.locator("#log")).to_contain_text("Bước 2/9")
            finally:
                await browser.close()
