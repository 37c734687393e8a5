"""A broadcast's image on the dashboard: uploaded with the compose form (checked, with a clear Vietnamese
error for a bad file), shown in the preview and on the broadcast's page, and sent with the broadcast."""

from __future__ import annotations

import os
import random
import re

import aiohttp
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.broadcasts import images
from bot.broadcasts.adapters import TelegramAdapter
from bot.broadcasts.pacing import ChannelPacer, PacingRules
from bot.broadcasts.sender import Sender, SenderConfig
from bot.web.app import PREFIX
from bot.web.texts import load_dashboard_texts
from storage import broadcasts as repo
from storage import people
from tests.broadcasts.test_images import jpeg, png
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.web.fixture import COMMUNE
from tests.web.test_broadcasts import T1, TEXT, csrf, people_here, submit  # noqa: F401 (fixture)

T = load_dashboard_texts()


async def preview_with(client, data: bytes | None, filename: str = "lich.png", content_type: str = "image/png", **fields):
    form = aiohttp.FormData()
    form.add_field("csrf", await csrf(client))
    form.add_field("text", fields.pop("text", TEXT))
    form.add_field("scope", "some")
    if data is not None:
        form.add_field("image", data, filename=filename, content_type=content_type)
    for name, value in fields.items():
        form.add_field(name, value)
    return await client.post(f"{PREFIX}/broadcasts/preview", data=form)


async def test_an_image_is_previewed_then_sent_with_the_text_as_its_caption(sign_in, client, people_here, dash_clock):
    async with people_here.transaction() as s:
        await repo.set_policy(s, COMMUNE, approval_required=False)
    team = await sign_in("team")
    picture = png(60, 40)
    resp = await preview_with(team, picture, hamlet=T1, kind="group", channel="telegram")
    html = await resp.text()
    assert resp.status == 200, html
    [src] = re.findall(r'<img src="([^"]+)"', html)
    shown = await team.get(src)
    assert shown.status == 200 and shown.content_type == "image/png" and await shown.read() == picture
    [key] = re.findall(r'name="image" value="([0-9a-f]{32})"', html)
    b = await submit(team, hamlet=T1, kind="group", channel="telegram", image=key)
    page = await (await team.get(f"{PREFIX}/broadcasts/{b}")).text()
    assert f"/broadcasts/images/{key}.png" in page

    fake = await FakeTelegramAPI().start()
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    bot = Bot(fake.token, base_url=fake.base_url, request=HTTPXRequest(connection_pool_size=4, read_timeout=2.0))
    await bot.initialize()
    try:
        pacer = ChannelPacer(PacingRules(rate=200.0, group_spacing=3.0, private_spacing=1.0), clock=lambda: dash_clock().timestamp())
        sender = Sender(people_here, {"telegram": TelegramAdapter(bot)}, {"telegram": pacer}, config=SenderConfig(), clock=dash_clock, rng=random.Random(1))
        for _ in range(3):
            await sender.run_once()
    finally:
        await bot.shutdown()
        await fake.close()
    assert [(p["chat_id"], p["data"], p["caption"]) for p in fake.photos()] == [(-501, picture, TEXT)]
    assert fake.sent() == []


async def test_a_bad_file_is_refused_with_what_is_wrong_and_the_text_kept(sign_in, people_here):
    team = await sign_in("team")
    one_mb = images.MAX_BYTES // (1024 * 1024)
    cases = [
        (b"", T.get("bc_err_image_empty")),
        (b"Danh sach thon.\n", T.get("bc_err_image_not_image")),
        (jpeg() + b"\x00" * (images.MAX_BYTES + 500_000), T.get("bc_err_image_too_big", max_mb=one_mb)),  # 1.5 MB: over the server's body limit too
    ]
    for data, error in cases:
        resp = await preview_with(team, data, filename="anh.jpg", content_type="image/jpeg", hamlet=T1, channel="telegram")
        html = await resp.text()
        assert resp.status == 400, html
        assert error.replace("/", "&#x2F;") in html or error in html
        assert TEXT in html  # what was typed is kept
    async with people_here.transaction() as s:
        assert await repo.list_recent(s) == []


async def test_an_image_for_zalo_needs_the_servers_public_address(sign_in, people_here, dash_clock):
    async with people_here.transaction() as s:
        user = await people.touch_user(s, "zalo_bot", "z51", dash_clock())
        user.hamlet_code = T1
        await people.touch_chat(s, "zalo_bot", "z51", "private", dash_clock())
    team = await sign_in("team")
    resp = await preview_with(team, png(), hamlet=T1)
    assert resp.status == 400 and "CCCD_PUBLIC_URL" in await resp.text()
    resp = await preview_with(team, png(), hamlet=T1, channel="telegram")  # Telegram takes the upload itself
    assert resp.status == 200


async def test_without_an_image_the_form_works_as_before(sign_in, people_here):
    team = await sign_in("team")
    resp = await preview_with(team, None, hamlet=T1)
    assert resp.status == 200 and "<img" not in await resp.text()
