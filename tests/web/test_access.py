"""Who may see what: sessions, roles, commune scope, CSRF, lock-out."""

from __future__ import annotations

import pytest

from bot.web.app import PREFIX
from storage import accounts
from tests.web.conftest import PASSWORD, csrf_of, login

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
PAGES = ["/", "/hamlets", "/funnel", "/topics", "/unanswered", "/content", "/registry"]


async def test_without_a_session_pages_redirect_and_exports_answer_401(client):
    for page in PAGES:
        resp = await client.get(f"{PREFIX}{page}", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"].startswith(f"{PREFIX}/login"), page
    for fmt in ("xlsx", "csv"):
        resp = await client.get(f"{PREFIX}/export/report.{fmt}?month=2026-11")
        assert resp.status == 401
    resp = await client.post(f"{PREFIX}/registry/add", data={"code": "x", "name": "x"})
    assert resp.status in (401, 403)
    assert "Anh/chị đăng nhập lại rồi làm lại." in await resp.text(), "a form sent without a session is told so, in words"


async def test_login_sets_a_protected_cookie_and_logout_ends_the_session(client):
    resp = await login(client, "admin")
    assert resp.status == 303 and resp.headers["Location"] == f"{PREFIX}/"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert PASSWORD not in cookie and "uid" not in cookie.split(";")[0].partition("=")[2], "the cookie is encrypted"
    for page in PAGES:
        resp = await client.get(f"{PREFIX}{page}")
        assert resp.status == 200, page
    token = await csrf_of(client, f"{PREFIX}/")
    resp = await client.post(f"{PREFIX}/logout", data={"csrf": token}, allow_redirects=False)
    assert resp.status == 303
    assert (await client.get(f"{PREFIX}/", allow_redirects=False)).status == 302


async def test_forms_without_the_csrf_token_are_refused(client, sign_in):
    resp = await client.post(f"{PREFIX}/login", data={"username": "admin", "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 403
    await sign_in("admin")
    resp = await client.post(f"{PREFIX}/registry/add", data={"commune": "ngoc_trao", "code": "moi", "name": "Thôn Mới"})
    assert resp.status == 403
    resp = await client.post(f"{PREFIX}/registry/add", data={"commune": "ngoc_trao", "code": "moi", "name": "Thôn Mới", "csrf": "forged"})
    assert resp.status == 403
    assert "Thôn Mới" not in await (await client.get(f"{PREFIX}/registry")).text()


async def test_wrong_passwords_lock_the_account(client, dashboard):
    for _ in range(accounts.LOCK_AFTER - 1):
        resp = await login(client, "officer", "sai mật khẩu rồi")
        assert resp.status == 401
        assert "không đúng" in await resp.text()
    resp = await login(client, "officer", "sai mật khẩu rồi")
    assert "tạm khoá" in await resp.text()
    resp = await login(client, "officer")
    assert resp.status == 401 and "tạm khoá" in await resp.text(), "even the right password waits out the lock"
    assert (await client.get(f"{PREFIX}/", allow_redirects=False)).status == 302


async def test_unknown_user_and_disabled_account(client, database):
    assert (await login(client, "nobody")).status == 401
    async with database.transaction() as s:
        await accounts.set_active(s, "team", False)
    resp = await login(client, "team")
    assert resp.status == 401 and "đã bị khoá" in await resp.text()


async def test_a_disabled_account_loses_its_open_session(client, sign_in, database):
    await sign_in("officer")
    assert (await client.get(f"{PREFIX}/")).status == 200
    async with database.transaction() as s:
        await accounts.set_active(s, "officer", False)
    assert (await client.get(f"{PREFIX}/", allow_redirects=False)).status == 302
    assert (await client.get(f"{PREFIX}/export/report.xlsx")).status == 401


async def test_login_never_redirects_off_site(client):
    token = await csrf_of(client)
    resp = await client.post(
        f"{PREFIX}/login", data={"username": "admin", "password": PASSWORD, "csrf": token, "next": "https://evil.example/"}, allow_redirects=False
    )
    assert resp.headers["Location"] == f"{PREFIX}/"


async def test_commune_scope(client, sign_in):
    await sign_in("officer_other")
    page = await (await client.get(f"{PREFIX}/hamlets")).text()
    assert "Thôn Một" in page and "Tổ dân phố 1" not in page
    resp = await client.get(f"{PREFIX}/hamlets?commune=ngoc_trao")
    assert resp.status == 403
    resp = await client.get(f"{PREFIX}/export/report.xlsx?month=2026-11&commune=ngoc_trao")
    assert resp.status == 403
    overview = await (await client.get(f"{PREFIX}/?month=2026-11")).text()
    assert 'id="messages">1<' in overview


async def test_roles(client, sign_in):
    await sign_in("team")
    page = await (await client.get(f"{PREFIX}/unanswered?month=2026-11")).text()
    assert "lam can cuoc o dau vay" in page, "a team member reads their own commune's questions"
    assert "Đã xử lý" not in page, "but cannot mark them"
    token = await csrf_of(client, f"{PREFIX}/")
    resp = await client.post(f"{PREFIX}/unanswered/mark", data={"csrf": token, "action": "handled", "variant": "x"})
    assert resp.status == 403
    resp = await client.post(f"{PREFIX}/registry/add", data={"csrf": token, "code": "t", "name": "t"})
    assert resp.status == 403


async def test_team_without_a_commune_sees_figures_but_no_texts(client, sign_in):
    await sign_in("team_all")
    page = await (await client.get(f"{PREFIX}/unanswered?month=2026-11")).text()
    assert 'id="texts-hidden"' in page and "lam can cuoc" not in page
    page = await (await client.get(f"{PREFIX}/unanswered?month=2026-11&commune=ngoc_trao")).text()
    assert "lam can cuoc" not in page
    assert 'id="messages">13<' in await (await client.get(f"{PREFIX}/?month=2026-11")).text()


async def test_officer_cannot_touch_another_communes_hamlet(client, sign_in):
    await sign_in("officer_other")
    token = await csrf_of(client, f"{PREFIX}/registry")
    resp = await client.post(f"{PREFIX}/registry/remove", data={"csrf": token, "code": "ngoctrao_tdp01"})
    assert resp.status == 403


async def test_only_admins_close_proposals(client, sign_in):
    await sign_in("officer")
    token = await csrf_of(client, f"{PREFIX}/")
    resp = await client.post(f"{PREFIX}/proposals/1", data={"csrf": token, "decision": "accepted"})
    assert resp.status == 403


async def test_login_returns_to_the_page_asked_for(client):
    resp = await client.get(f"{PREFIX}/hamlets?month=2026-11&commune=ngoc_trao&sort=messages", allow_redirects=False)
    target = resp.headers["Location"]
    token = await csrf_of(client, target)
    page = await (await client.get(target)).text()
    assert 'name="next" value="/admin/hamlets?month=2026-11&amp;commune=ngoc_trao&amp;sort=messages"' in page
    resp = await client.post(
        f"{PREFIX}/login",
        data={"username": "admin", "password": PASSWORD, "csrf": token, "next": "/admin/hamlets?month=2026-11&commune=ngoc_trao&sort=messages"},
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/admin/hamlets?month=2026-11&commune=ngoc_trao&sort=messages"


async def test_two_server_processes_share_the_session_key(client, database, catalog):
    """The key is kept in the database, so a session opened on one process is valid on another."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from bot.config import Settings
    from bot.web.app import DashboardConfig, create_dashboard

    resp = await login(client, "admin")
    cookie = resp.cookies["cccd_admin"].value
    other = web.Application()
    other.add_subapp(PREFIX, create_dashboard(DashboardConfig(db=database, settings=Settings(_env_file=None), catalog=lambda: catalog)))
    async with TestClient(TestServer(other)) as second:
        second.session.cookie_jar.update_cookies({"cccd_admin": cookie})
        assert (await second.get(f"{PREFIX}/", allow_redirects=False)).status == 200
