"""A broadcast's image: checked at upload, sent in each channel's own form (Telegram sendPhoto by upload
then by file_id; Zalo Bot sendPhoto and Zalo OA's media template by the image's public address), the text
as its caption when it fits, and never sent twice to a chat when a later part is retried."""

from __future__ import annotations

import struct
import zlib

import aiohttp
import pytest

from bot.broadcasts import images
from bot.broadcasts.adapters import ZaloBotAdapter
from bot.broadcasts.model import Audience, Part, messages_for
from bot.broadcasts.pacing import ChannelPacer
from bot.broadcasts.sender import Sender, SenderConfig
from bot.broadcasts.workflow import BadRequest, approve, create, submit
from bot.channels.zalo_bot import ZaloBotApi
from storage import broadcasts as repo
from storage import people
from storage.broadcasts import DeliveryStatus
from tests.broadcasts.conftest import FAST, OFFICER, TEAM_A, make_sender
from tests.fakes.zalo_api import FakeZaloBot

PUBLIC = "https://bot.xa-a.example.vn"


def png(width: int = 40, height: int = 30) -> bytes:
    """A real (tiny, grey) PNG."""
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def jpeg(width: int = 640, height: int = 480) -> bytes:
    """The head of a baseline JPEG: SOI, an APP0 segment, then the frame header (SOF0) with its size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def test_an_upload_is_checked_for_what_every_channel_accepts():
    assert images.check(png(40, 30)) == ("image/png", 40, 30)
    assert images.check(jpeg(640, 480)) == ("image/jpeg", 640, 480)
    for data, reason in [
        (b"", "empty"),
        (png() + b"\x00" * images.MAX_BYTES, "too_big"),
        (b"%PDF-1.7 not a picture", "not_image"),
        (b"GIF89a\x01\x00\x01\x00", "not_image"),  # GIF: not a photo on Zalo
        (png(9000, 2000), "shape"),  # width + height over Telegram's 10,000
        (png(2100, 100), "shape"),  # more than 20 times wider than high
    ]:
        with pytest.raises(images.ImageError) as caught:
            images.check(data)
        assert caught.value.reason == reason


def test_the_text_is_the_caption_when_it_fits_else_it_follows_the_image():
    short = "Lịch tổ cấp căn cước lưu động tuần này (ảnh)."
    assert messages_for("telegram", short, image=True) == [Part(short, image=True)]
    long = "Thông báo. " * 120  # 1,320 characters: over Telegram's 1,024 for a caption, under Zalo's 2,000
    assert messages_for("telegram", long, image=True) == [Part(None, image=True), Part(long.strip())]
    assert messages_for("zalo_bot", long, image=True) == [Part(long, image=True)]
    assert messages_for("telegram", short) == [Part(short)]


async def with_image(db, clock, data: bytes, text: str = "Lịch tổ cấp lưu động: xem ảnh.", audience: Audience | None = None):
    now = clock()
    async with db.writing() as session:
        image = await images.store(session, data, now)
    b = await create(db, TEAM_A, text, audience or Audience("communes", ("xa_a",)), now, image=image.key)
    await submit(db, TEAM_A, b.id, now)
    return await approve(db, OFFICER, b.id, now), image


async def send_all(sender: Sender, clock, rounds: int = 6) -> None:
    for _ in range(rounds):
        await sender.run_once()
        clock.advance(seconds=5)


async def test_telegram_uploads_the_image_once_then_sends_it_by_file_id_with_the_caption(world, clock, fake_tg, tg_bot):
    data = png()
    b, _ = await with_image(world, clock, data)
    await send_all(make_sender(world, tg_bot, clock, frozen_pacer=True), clock)
    photos = fake_tg.photos()
    assert sorted(p["chat_id"] for p in photos) == [-1002, -1001, 11, 12, 13]
    assert all(p["data"] == data and p["caption"] == "Lịch tổ cấp lưu động: xem ảnh." for p in photos)
    assert [p["uploaded"] for p in photos].count(True) == 1  # the bytes went up once, then Telegram's file_id
    assert fake_tg.sent() == []  # the text went as the caption
    upload = next(c for c in fake_tg.calls_of("sendPhoto") if c.content_type == "multipart/form-data")
    assert upload.params["photo"].filename.endswith(".png")
    async with world.transaction() as session:
        assert await repo.totals(session, b.id) == {DeliveryStatus.SENT: 5}


async def test_a_long_text_follows_the_image_and_a_retry_does_not_send_the_image_again(world, clock, fake_tg, tg_bot):
    text = "Thông báo lịch làm căn cước lưu động. " * 40  # about 1,500 characters: too long for a caption
    b, _ = await with_image(world, clock, png(), text=text, audience=Audience("hamlets", ("a1",), kinds=("group",)))
    fake_tg.fail("sendMessage", 500, times=2, chat_id=-1001)
    await send_all(make_sender(world, tg_bot, clock, frozen_pacer=True), clock, rounds=8)
    assert [(p["chat_id"], p["caption"]) for p in fake_tg.photos()] == [(-1001, None)]  # once, despite two failed texts
    assert fake_tg.texts(-1001) == [text.strip()]
    async with world.transaction() as session:
        [d] = await repo.deliveries(session, b.id)
    assert (d.status, d.parts_sent, d.attempts) == (DeliveryStatus.SENT, 2, 4)


async def send_through_zalo_bot(world, clock, fake: FakeZaloBot, public_url: str | None) -> None:
    """Run a sender over the real Zalo Bot adapter and client against `fake`, then close the fake."""
    try:
        async with aiohttp.ClientSession() as http:
            adapter = ZaloBotAdapter(ZaloBotApi(fake.token, fake.base_url, http=http), public_url=public_url)
            sender = Sender(world, {"zalo_bot": adapter}, {"zalo_bot": ChannelPacer(FAST)}, config=SenderConfig(), clock=clock)
            await send_all(sender, clock, rounds=2)
    finally:
        await fake.close()


async def test_zalo_bot_sends_the_image_by_its_public_address(world, clock):
    fake = FakeZaloBot()
    await fake.start()
    async with world.transaction() as session:
        for uid in ("z1", "z2"):
            (await people.touch_user(session, "zalo_bot", uid, clock())).hamlet_code = "a1"
            await people.touch_chat(session, "zalo_bot", uid, "private", clock())
    b, image = await with_image(world, clock, jpeg(), audience=Audience("hamlets", ("a1",), kinds=("private",), channels=("zalo_bot",)))
    await send_through_zalo_bot(world, clock, fake, PUBLIC)
    url = f"{PUBLIC}/media/broadcasts/{image.key}.jpg"
    assert sorted((p["chat_id"], p["photo"], p["caption"]) for p in fake.photos()) == [
        ("z1", url, "Lịch tổ cấp lưu động: xem ảnh."), ("z2", url, "Lịch tổ cấp lưu động: xem ảnh."),
    ]
    assert fake.sent() == []


async def test_without_a_public_address_zalo_cannot_fetch_the_image_and_the_delivery_says_why(world, clock):
    fake = FakeZaloBot()
    await fake.start()
    async with world.transaction() as session:
        (await people.touch_user(session, "zalo_bot", "z1", clock())).hamlet_code = "a1"
    b, _ = await with_image(world, clock, jpeg(), audience=Audience("hamlets", ("a1",), kinds=("private",), channels=("zalo_bot",)))
    await send_through_zalo_bot(world, clock, fake, None)
    assert fake.calls_to("sendPhoto") == []
    async with world.transaction() as session:
        [d] = await repo.deliveries(session, b.id)
    assert d.status == DeliveryStatus.FAILED and "CCCD_PUBLIC_URL" in d.last_error


async def test_a_broadcast_cannot_name_an_image_that_is_not_stored(world, clock):
    with pytest.raises(BadRequest):
        await create(world, TEAM_A, "Thông báo.", Audience("communes", ("xa_a",)), clock(), image="0" * 32)


async def test_zalo_oa_sends_the_image_as_its_media_template_with_the_text(world, clock, catalog):
    from bot.broadcasts.adapters import ZaloOAAdapter
    from bot.broadcasts.runner import zalo_oa_sender
    from bot.config import Settings
    from tests.fakes.zalo_api import FakeZaloOA

    fake = FakeZaloOA()
    await fake.start()
    access, refresh = fake.issue_pair()
    settings = Settings(
        _env_file=None, zalo_oa_app_id=fake.app_id, zalo_oa_app_secret=fake.app_secret, zalo_oa_secret_key="k",
        zalo_oa_access_token=access, zalo_oa_refresh_token=refresh, zalo_oa_api_base=fake.url, zalo_oa_oauth_base=fake.url,
        public_url=PUBLIC,
    )
    async with world.transaction() as session:
        (await people.touch_user(session, "zalo_oa", "u1", clock())).hamlet_code = "a1"
        chat = await people.touch_chat(session, "zalo_oa", "g1", "group", clock())
        chat.hamlet_code = "a1"
    b, image = await with_image(world, clock, png(), audience=Audience("hamlets", ("a1",), channels=("zalo_oa",)))
    oa = await zalo_oa_sender(settings, world)  # the channel as `cccd-bot broadcast send` opens it
    try:
        adapter = ZaloOAAdapter(oa, oa.ready, public_url=PUBLIC)
        sender = Sender(world, {"zalo_oa": adapter}, {"zalo_oa": ChannelPacer(FAST)}, config=SenderConfig(), clock=clock)
        await send_all(sender, clock, rounds=2)
    finally:
        await oa.stop()
        await oa.close()
        await fake.close()
    url = f"{PUBLIC}/media/broadcasts/{image.key}.png"
    got = sorted((m["to"], m["group"], m["image"], m["text"]) for m in fake.delivered())
    assert got == [("g1", True, url, "Lịch tổ cấp lưu động: xem ảnh."), ("u1", False, url, "Lịch tổ cấp lưu động: xem ảnh.")]
    async with world.transaction() as session:
        assert await repo.totals(session, b.id) == {DeliveryStatus.SENT: 2}


async def test_the_server_serves_the_image_where_zalo_fetches_it(world, clock, db_url, catalog):
    from aiohttp.test_utils import TestClient, TestServer

    from bot.config import Settings
    from bot.server import create_app

    data = png(80, 60)
    _, image = await with_image(world, clock, data)
    app = create_app(Settings(_env_file=None, database_url=db_url, public_url=PUBLIC), catalog, world, role="web", instance="web-1")
    async with TestClient(TestServer(app)) as client:
        path = image.url(PUBLIC)[len(PUBLIC):]
        assert path == f"/media/broadcasts/{image.key}.png"
        resp = await client.get(path)
        assert resp.status == 200 and resp.content_type == "image/png" and await resp.read() == data
        assert (await client.get(f"/media/broadcasts/{image.key}.jpg")).status == 404  # not under another name
        assert (await client.get(f"/media/broadcasts/{'0' * 32}.png")).status == 404
        assert (await client.get("/media/broadcasts/..%2Fcccd-bot.sqlite3")).status == 404


async def test_the_server_sends_an_image_that_zalo_can_fetch_from_it(world, clock, db_url, catalog):
    """End to end: `serve` runs the sender with the Zalo Bot channel; Zalo downloads the image from the
    server's public address (CCCD_PUBLIC_URL) and gets the bytes that were uploaded."""
    import asyncio

    from aiohttp.test_utils import TestServer

    from bot.config import Settings
    from bot.server import create_app
    from tests.fakes.bot_process import free_port

    async with world.transaction() as session:
        await repo.set_policy(session, "xa_a", quiet_start="00:00", quiet_end="00:00")  # the server's real clock
        (await people.touch_user(session, "zalo_bot", "z1", clock())).hamlet_code = "a1"
        await people.touch_chat(session, "zalo_bot", "z1", "private", clock())
    data = jpeg(800, 600)
    _, image = await with_image(world, clock, data, audience=Audience("hamlets", ("a1",), kinds=("private",), channels=("zalo_bot",)))
    fake = FakeZaloBot(fetch_photos=True)
    await fake.start()
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    settings = Settings(_env_file=None, database_url=db_url, zalo_bot_token=fake.token, zalo_bot_base_url=fake.base_url,
                        public_url=public, broadcast_lease_ttl=4.0)
    server = TestServer(create_app(settings, catalog, world, instance="srv-img"), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        for _ in range(300):
            if fake.photos():
                break
            await asyncio.sleep(0.05)
    finally:
        await server.close()
        await fake.close()
    url = f"{public}/media/broadcasts/{image.key}.jpg"
    assert [(p["chat_id"], p["photo"]) for p in fake.photos()] == [("z1", url)]
    assert fake.fetched == {url: data}
