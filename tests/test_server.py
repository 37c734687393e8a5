"""The application factory: /healthz, channels off without credentials, content reload."""

from __future__ import annotations

import shutil

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from bot.catalog import CONTENT_DIR
from bot.config import Settings
from bot.messages import ChatType, Incoming
from bot.server import CHANNELS, SERVICE, create_app, reload_content


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_healthz_and_channels_off_without_credentials(db_url, catalog):
    app = create_app(Settings(_env_file=None, database_url=db_url), catalog)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/healthz")
        assert resp.status == 200
        body = await resp.json()
        assert body["ok"] is True
        assert set(body["channels"]) == {"telegram", "zalo_bot", "zalo_oa", "web"}
    assert not any(status.on for status in app[CHANNELS].values())
    assert all(status.detail.startswith("tắt: ") for status in app[CHANNELS].values())
    assert not any("tắt: tắt" in status.detail for status in app[CHANNELS].values())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_reload_picks_up_an_added_example_and_refuses_broken_content(db_url, catalog, tmp_path):
    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, content)
    app = create_app(Settings(_env_file=None, database_url=db_url, content_dir=content), catalog)
    question = "bà muốn hỏi chuyện con trâu nhà bà bị lạc"
    assert app[SERVICE].matcher.match(question).topic is None
    path = content / "faq_card.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in data["topics"]:
        if entry["id"] == "ho_tro":
            entry["examples"].append(question)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert reload_content(app) is True
    assert app[SERVICE].matcher.match(question).topic == "ho_tro"
    (content / "steps.yaml").write_text("steps: []", encoding="utf-8")
    assert reload_content(app) is False
    assert app[SERVICE].matcher.match(question).topic == "ho_tro", "broken content keeps the running one"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("channel", ["telegram", "zalo_bot", "zalo_oa"])
async def test_healthz_reports_a_channel_that_cannot_reach_its_platform(db_url, catalog, channel):
    import asyncio
    import socket

    with socket.socket() as probe:  # a port nothing listens on: every connection is refused
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    base = f"http://127.0.0.1:{closed}/bot"
    if channel == "telegram":
        settings = Settings(_env_file=None, database_url=db_url, telegram_token="123:abc", telegram_base_url=base)
    elif channel == "zalo_bot":
        settings = Settings(_env_file=None, database_url=db_url, zalo_bot_token="123:abc", zalo_bot_base_url=base)
    else:
        settings = Settings(
            _env_file=None, database_url=db_url, zalo_oa_app_id="app-1", zalo_oa_secret_key="key",
            zalo_oa_access_token="access-1", zalo_oa_api_base=base, zalo_oa_oauth_base=base,
        )
    app = create_app(settings, catalog)
    async with TestClient(TestServer(app)) as client:
        # Telegram reports at the first refused call; Zalo after the API client's own retries (15 s, 7.5 s).
        for _ in range(300):
            resp = await client.get("/healthz")
            if resp.status == 503:
                break
            await asyncio.sleep(0.1)
        body = await resp.json()
        assert resp.status == 503 and body["ok"] is False
        assert f"127.0.0.1:{closed}" in body["failing"][channel] and "không kết nối được" in body["failing"][channel]
        assert list(body["failing"]) == [channel]
async def test_readyz_and_metrics(db_url, catalog):
    app = create_app(Settings(_env_file=None, database_url=db_url), catalog, instance="t")
    async with TestClient(TestServer(app)) as client:
        ready = await client.get("/readyz")
        body = await ready.json()
        assert ready.status == 200 and body["migrated"] and body["database"] == "ok" and body["outbox_pending"] == 0
        await app[SERVICE].handle(Incoming("console", "c1", ChatType.PRIVATE, "u1", "Lan", "/menu", app[SERVICE].clock()))
        metrics = await (await client.get("/metrics")).text()
    assert 'cccd_faq_decisions_total{outcome="command"} 1.0' in metrics
    for name in ("cccd_outbox_pending", "cccd_sender_lag_seconds", "cccd_db_statements_total", "cccd_end_to_end_seconds"):
        assert name in metrics


async def test_sockets_are_read_in_pieces_of_the_configured_size():
    """`serve` reads every socket at most CCCD_SOCKET_READ_BYTES (16 KiB) at a time instead of asyncio's
    256 KiB blocks, which fragment the heap (bot/server.py `setup_socket_reads`): a 300 KB message still
    arrives whole, in pieces no larger than that."""
    import asyncio
    import os

    from bot.server import setup_socket_reads

    payload = os.urandom(300_000)

    async def send(_reader, writer):
        writer.write(payload)
        await writer.drain()
        writer.close()

    loop = asyncio.get_running_loop()

    class Reader(asyncio.Protocol):
        def __init__(self):
            self.pieces: list[bytes] = []
            self.closed = loop.create_future()

        def data_received(self, data):
            self.pieces.append(data)

        def connection_lost(self, exc):
            self.closed.set_result(None)

    server = await asyncio.start_server(send, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    setup_socket_reads(Settings(_env_file=None).socket_read_bytes)
    try:
        _transport, reader = await loop.create_connection(Reader, "127.0.0.1", port)
        await asyncio.wait_for(reader.closed, 10)
    finally:
        setup_socket_reads(0)
        server.close()
        await server.wait_closed()
    assert b"".join(reader.pieces) == payload
    assert len(reader.pieces) >= 300_000 // 16384
    assert max(len(piece) for piece in reader.pieces) <= 16384
