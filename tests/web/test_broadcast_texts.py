"""The broadcast pages' words come from content (dashboard.yaml): a commune changes them without touching
code, and `cccd-bot content check` says what is wrong with the file."""

from __future__ import annotations

import shutil

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.catalog import CONTENT_DIR
from bot.config import Settings
from bot.web.app import PREFIX, DashboardConfig, create_dashboard
from bot.web.auth import LoginThrottle
from storage import accounts
from tests.test_cli import run
from tests.web.conftest import PASSWORD, login
from tests.web.fixture import COMMUNE, seed


def edited_content(tmp_path, *changes: tuple[str, str]):
    """A copy of the shipped content with dashboard.yaml edited (each change: old text, new text)."""
    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, content)
    path = content / "dashboard.yaml"
    text = path.read_text(encoding="utf-8")
    for old, new in changes:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return content


async def team_dashboard(database, catalog, dash_clock, content) -> web.Application:
    """The dashboard over the seeded database and the given content directory, with a "team" account."""
    await seed(database)
    async with database.transaction() as s:
        await accounts.add(s, "team", PASSWORD, "team", COMMUNE, dash_clock())
    cfg = DashboardConfig(
        db=database, settings=Settings(_env_file=None, database_url=database.url, content_dir=content),
        catalog=lambda: catalog, clock=dash_clock, throttle=LoginThrottle(delay=0),
    )
    app = web.Application()
    app.add_subapp(PREFIX, create_dashboard(cfg))
    return app


async def test_a_commune_words_the_broadcast_pages_in_its_content_directory(database, catalog, dash_clock, tmp_path):
    content = edited_content(
        tmp_path,
        ('bc_page_title: "Tin thông báo"', 'bc_page_title: "Thông báo của xã Ngọc Trạo"'),
        ('bc_status_awaiting_approval: "chờ duyệt"', 'bc_status_awaiting_approval: "đợi cán bộ xem"'),
    )
    app = await team_dashboard(database, catalog, dash_clock, content)
    async with TestClient(TestServer(app)) as client:
        assert (await login(client, "team")).status == 303
        html = await (await client.get(f"{PREFIX}/broadcasts")).text()
        assert "<h1>Thông báo của xã Ngọc Trạo</h1>" in html
        token = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        data = {"csrf": token, "text": "Thông báo thử.", "scope": "some", "commune": COMMUNE}
        resp = await client.post(f"{PREFIX}/broadcasts", data=data)
        assert "đợi cán bộ xem" in await resp.text()


def test_content_check_names_what_is_wrong_in_dashboard_yaml(tmp_path):
    content = edited_content(
        tmp_path,
        ('  bc_preview_button: "Xem trước và đếm người nhận"\n', ""),
        ("Ảnh lớn quá {max_mb} MB", "Ảnh lớn quá {max_size} MB"),
    )
    check = run(["content", "check"], tmp_path, CCCD_CONTENT_DIR=str(content))
    assert check.returncode == 1
    assert "dashboard.yaml: bc_preview_button:" in check.stdout
    assert "dashboard.yaml: bc_err_image_too_big:" in check.stdout and "max_size" in check.stdout
