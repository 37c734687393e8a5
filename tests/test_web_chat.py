"""The web chat over HTTP: the page, the cookie, the guide through the core, limits and refusals."""

from __future__ import annotations

import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.config import Settings
from bot.server import CHANNELS, create_app
from bot.web import chat as web_chat
from bot.web.texts import FIELDS, load_texts
from storage.models import GuideEvent, QueryLog, User

JSON = {"Content-Type": "application/json"}


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> FakeMonotonic:
    return FakeMonotonic()


async def _client(service, settings: Settings, ticks) -> TestClient:
    app = web.Application()
    web_chat.add_routes(app, web_chat.build(settings, service, clock=ticks))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client(service, settings, ticks):
    c = await _client(service, settings, ticks)
    yield c
    await c.close()


def _all_text(body: dict) -> str:
    return "\n".join(t for r in body["replies"] for t in r["texts"])


def _button(body: dict, label_start: str) -> str:
    for reply in body["replies"]:
        for button in reply["buttons"]:
            if button["label"].startswith(label_start):
                return button["payload"]
    raise AssertionError(f"no button '{label_start}' in {body}")


async def _post(client, path: str, data: dict, **headers):
    resp = await client.post(f"/chat/api/{path}", json=data, headers=headers)
    return resp, await resp.json()


async def test_page_is_self_contained_and_gives_an_httponly_samesite_cookie(client, catalog):
    resp = await client.get("/?h=ngoctrao_tdp03")
    assert resp.status == 200
    html = await resp.text()
    texts = load_texts()
    assert texts.get("page_heading") in html
    assert 'data-hamlet="ngoctrao_tdp03"' in html
    # Nothing comes from another site: every src and href is a path on this server.
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert (url.startswith("/") and not url.startswith("//")) or url == "data:,", url
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in resp.headers["Content-Security-Policy"]
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{web_chat.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    for name in ("chat.js", "chat.css", "widget.js"):
        static = await client.get(f"/chat/{name}")
        assert static.status == 200 and len(await static.read()) > 100


async def test_page_escapes_a_hostile_hamlet_parameter(client):
    resp = await client.get("/", params={"h": '"><script>alert(1)</script>'})
    html = await resp.text()
    assert "<script>alert(1)" not in html
    assert 'data-hamlet=""' in html


async def test_chats_through_the_guide_with_buttons_and_records_the_hamlet(client, registry_loaded):
    resp, body = await _post(client, "start", {"h": "ngoctrao_tdp03"})
    assert resp.status == 200
    assert "Tổ dân phố 3" in _all_text(body)
    assert resp.cookies[web_chat.COOKIE]["httponly"]
    # Buttons come as buttons, not as numbered lines.
    assert not re.search(r"^1\. ", _all_text(body), re.M)
    resp, body = await _post(client, "message", {"payload": _button(body, "Hướng dẫn")})
    assert resp.status == 200 and "Bước 1/9" in _all_text(body)
    assert "Bước 2/9" not in _all_text(body), "one step at a time"
    resp, body = await _post(client, "message", {"payload": _button(body, "Tiếp theo")})
    assert "Bước 2/9: Đăng nhập" in _all_text(body)
    resp, body = await _post(client, "message", {"text": "buoc 3"})
    assert "Bước 3/9" in _all_text(body)
    async with registry_loaded.transaction() as session:
        users = (await session.execute(select(User).where(User.channel == "web"))).scalars().all()
        events = (await session.execute(select(GuideEvent).where(GuideEvent.channel == "web"))).scalars().all()
    assert [u.hamlet_code for u in users] == ["ngoctrao_tdp03"]
    assert [e.step for e in events if e.kind == "step"] == ["tao_tai_khoan", "dang_nhap", "nop_truc_tuyen"]
    assert {e.hamlet_code for e in events} == {"ngoctrao_tdp03"}


async def test_the_cookie_keeps_the_conversation_and_a_new_visitor_starts_afresh(service, settings, ticks):
    first = await _client(service, settings, ticks)
    other = await _client(service, settings, ticks)
    try:
        await _post(first, "start", {})
        _, body = await _post(first, "message", {"text": "hướng dẫn"})
        _, body = await _post(first, "message", {"payload": _button(body, "Tiếp theo")})
        assert "Bước 2/9" in _all_text(body)
        _, body = await _post(first, "start", {})
        assert "2/9" in _all_text(body), "the same visitor is asked to go on from step 2"
        _, body = await _post(other, "start", {})
        assert "2/9" not in _all_text(body)
    finally:
        await first.close()
        await other.close()


async def test_a_forged_cookie_value_gets_a_new_visitor_id(client):
    client.session.cookie_jar.update_cookies({web_chat.COOKIE: "../../etc"})
    resp, _ = await _post(client, "start", {})
    assert resp.status == 200
    assert web_chat.VISITOR_RE.match(resp.cookies[web_chat.COOKIE].value)


async def test_messages_are_rate_limited_per_visitor(service, db_url, ticks):
    settings = Settings(_env_file=None, database_url=db_url, web_chat=True, web_chat_rate=6)
    client = await _client(service, settings, ticks)
    try:
        statuses = [(await _post(client, "message", {"text": "lệ phí bao nhiêu"}))[0].status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        resp, body = await _post(client, "message", {"text": "lệ phí bao nhiêu"})
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert body["message"] == load_texts().get("error_rate")
        ticks.now += 10  # six a minute: one every ten seconds
        resp, _ = await _post(client, "message", {"text": "lệ phí bao nhiêu"})
        assert resp.status == 200
    finally:
        await client.close()


async def test_an_address_that_sheds_its_cookie_each_time_is_limited_too(service, db_url, ticks):
    settings = Settings(_env_file=None, database_url=db_url, web_chat=True, web_chat_rate=6)
    client = await _client(service, settings, ticks)
    try:
        statuses = []
        for _ in range(32):
            client.session.cookie_jar.clear()
            statuses.append((await _post(client, "start", {}))[0].status)
        assert statuses.count(200) == 30 and statuses[-1] == 429
    finally:
        await client.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_abuse_gets_a_clear_4xx(client):
    texts = load_texts()
    resp, body = await _post(client, "message", {"text": "a" * (web_chat.MAX_TEXT + 1)})
    assert resp.status == 413 and body["message"] == texts.get("error_too_long")
    resp = await client.post("/chat/api/message", data=b'{"text": "' + b"x" * 9000 + b'"}', headers=JSON)
    assert resp.status == 413
    resp = await client.post("/chat/api/message", data="text=hello", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415
    resp = await client.post("/chat/api/message", data=b"\xff\xfe{", headers=JSON)
    assert resp.status == 400 and (await resp.json())["message"] == texts.get("error_bad_request")
    for data in ([1, 2], {"text": 5}, {"payload": "g:n:<x>"}, {"payload": ""}, {}):
        resp, _ = await _post(client, "message", data)
        assert resp.status == 400, data
    resp, body = await _post(client, "message", {"text": " \x00\x01 "})
    assert resp.status == 400 and body["error"] == "empty"
    resp, _ = await _post(client, "start", {"h": "x" * 100})
    assert resp.status == 400
    resp, body = await _post(client, "message", {"text": "xin chào"}, Origin="https://evil.example")
    assert resp.status == 403 and body["message"] == texts.get("error_forbidden")
    resp, _ = await _post(client, "message", {"text": "xin chào"}, **{"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 403
    resp, _ = await _post(client, "message", {"text": "xin chào"}, Origin=str(client.make_url("")).rstrip("/"))
    assert resp.status == 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_stale_or_unknown_button_gets_the_menu(client):
    resp, body = await _post(client, "message", {"payload": "g:n:no_such_step"})
    assert resp.status == 200
    assert body["replies"][-1]["buttons"], "the menu comes back with its buttons"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_embedded_page_on_https_uses_a_partitioned_cross_site_cookie(service, db_url, ticks):
    settings = Settings(_env_file=None, database_url=db_url, web_chat=True, public_url="https://bot.example.vn/")
    client = await _client(service, settings, ticks)
    try:
        resp = await client.get("/?embed=1&h=ngoctrao_tdp01")
        cookie = resp.headers["Set-Cookie"]
        assert "SameSite=None" in cookie and "Secure" in cookie and "Partitioned" in cookie and "HttpOnly" in cookie
        assert "frame-ancestors *" in resp.headers["Content-Security-Policy"]
        widget = await client.get("/chat/widget.js")
        script = await widget.text()
        assert load_texts().get("widget_open") in script and "/*TEXTS*/" not in script
        assert widget.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        await client.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_serve_mounts_the_web_chat_only_when_turned_on(db_url, catalog):
    off = create_app(Settings(_env_file=None, database_url=db_url), catalog)
    async with TestClient(TestServer(off)) as client:
        assert (await client.get("/")).status == 404
        assert (await (await client.get("/healthz")).json())["channels"]["web"] == "tắt: chưa đặt CCCD_WEB_CHAT=1"
    on = create_app(Settings(_env_file=None, database_url=db_url, web_chat=True), catalog)
    async with TestClient(TestServer(on)) as client:
        assert (await client.get("/")).status == 200
        resp, body = await _post(client, "start", {})
        assert resp.status == 200 and body["replies"]
    assert on[CHANNELS]["web"].on


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_broken_web_texts_turn_only_the_web_chat_off(db_url, catalog, tmp_path):
    import shutil

    from bot.catalog import CONTENT_DIR

    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, content)
    (content / "web.yaml").write_text("messages:\n  send: 'Gửi {x}'\n", encoding="utf-8")
    app = create_app(Settings(_env_file=None, database_url=db_url, web_chat=True, content_dir=content), catalog)
    detail = app[CHANNELS]["web"].detail
    assert detail.startswith("tắt: lỗi nội dung trong web.yaml"), detail


def test_token_buckets_refill_and_forget_idle_keys():
    ticks = FakeMonotonic()
    buckets = web_chat.TokenBuckets(rate=1.0, burst=2, clock=ticks, max_keys=3)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 1.0]
    ticks.now += 0.5
    assert buckets.take("a") == pytest.approx(0.5)
    ticks.now += 1
    assert buckets.take("a") == 0.0
    for key in "bcde":
        buckets.take(key)
    assert len(buckets) == 3


def test_web_texts_address_the_resident_as_anh_chi():
    texts = load_texts()
    assert set(FIELDS) <= set(texts.messages)
    for key, text in texts.messages.items():
        words = re.findall(r"\w+", text.lower())
        assert "bạn" not in words and "bác" not in words and "quý vị" not in text.lower(), key
    assert any("anh/chị" in t.lower() for t in texts.messages.values())


async def test_what_a_visitor_types_is_logged_masked_under_channel_web(client, registry_loaded):
    resp, _ = await _post(client, "message", {"text": "tôi mất căn cước 012345678901, gọi 0912345678"})
    assert resp.status == 200
    async with registry_loaded.transaction() as session:
        rows = (await session.execute(select(QueryLog).where(QueryLog.channel == "web"))).scalars().all()
    assert len(rows) == 1 and rows[0].chat_type == "private"
    assert "012345678901" not in rows[0].text and "0912345678" not in rows[0].text
    visitor = resp.cookies[web_chat.COOKIE].value
    assert rows[0].user_ref and visitor not in (rows[0].user_ref, rows[0].chat_ref), "pseudonyms, not the cookie's id"
