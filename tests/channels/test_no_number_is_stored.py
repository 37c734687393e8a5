"""Issue #10, done when: every format of number that leaked, sent through the Telegram webhook (the real
channel, python-telegram-bot, a fake Bot API), ends up in no column of any table — SQLite and PostgreSQL
— nor in the logs. Numbers go in questions, in a question the bot keeps while it offers choices, in a
group's title, in button data a client forged, and in a message of someone who then erases themselves.
"""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.catalog import load_valid_catalog
from bot.channels.telegram import SECRET_HEADER, TELEGRAM
from bot.config import Settings
from bot.server import create_app
from storage.db import Database
from storage.models import Base, ConversationState
from tests.fakes.telegram_api import FakeTelegramAPI

TOKEN = "123456:TEST-token_abc"
SECRET = "leak-test-secret_0123"
LAN = {"id": 1001, "is_bot": False, "first_name": "Lan"}
BINH = {"id": 1002, "is_bot": False, "first_name": "Bình"}
GROUP_ID = -4001

# The formats the probe found leaking (each 100% of its kind), and neighbours of them.
LEAKED = [
    "0912\u00a0345\u00a0678",
    "0912\u2009345\u2009678",
    "0912  345  678",
    "036 - 877 - 046 - 575",
    "0912–345–678",
    "0912,345,678",
    "0912/345/678",
    "0912_345_678",
    "(097) 564 4740",
    "０９１２３４５６７８",
    "0 9 1 2 3 4 5 6 7 8",
    "+84 912 345 678",
]
CODES = ["otp 482913 k nhận được", "otp 482913 đ", "mã xác nhận là 4821"]
# Each number's digits, and the codes: none may be found anywhere, in any form.
SECRETS = ["0912345678", "036877046575", "0975644740", "482913", "4821"]


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if ch.isdecimal()).translate(str.maketrans("０１２３４５６７８９", "0123456789"))


def leaks(text: str) -> list[str]:
    """The secrets found in `text`: as typed, or as the digits left when everything else is removed."""
    found = [raw for raw in LEAKED if raw in text]
    # Digit runs of the text (separators of any kind removed inside a run of digits and separators).
    for run in re.findall(r"[\d][\d\s.,\-–—_/()+\u00a0\u2009]*", text):
        plain = digits_of(run)
        found += [s for s in SECRETS if len(s) >= 6 and s in plain]
    found += [s for s in SECRETS if len(s) < 6 and re.search(rf"(?<!\d){s}(?!\d)", text)]
    return found


async def every_cell(db: Database) -> list[tuple[str, str, str]]:
    """(table, column, text) of every non-empty cell of every table."""
    out = []
    async with db.transaction() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
                    out.append((table.name, column, text))
    return out


@pytest.fixture
async def fake():
    api = await FakeTelegramAPI(TOKEN, username="cccd_test_bot").start()
    yield api
    await api.close()


async def test_no_leaked_format_reaches_any_table_or_log(db_url, fake, caplog):
    caplog.set_level(logging.DEBUG, logger="bot")
    caplog.set_level(logging.DEBUG, logger="storage")
    caplog.set_level(logging.INFO)
    settings = Settings(
        _env_file=None,
        database_url=db_url,
        telegram_token=TOKEN,
        telegram_base_url=fake.base_url,
        telegram_webhook_url="https://bot.example.org/telegram/webhook",
        telegram_webhook_secret=SECRET,
    )
    db = Database(db_url)
    app = create_app(settings, load_valid_catalog(), db)
    ids = iter(range(70_000, 80_000))

    def message(chat: dict, sender: dict, text: str) -> dict:
        uid = next(ids)
        return {"update_id": uid, "message": {"message_id": uid, "date": int(time.time()), "chat": chat, "from": sender, "text": text}}

    async with TestClient(TestServer(app)) as client:
        channel = app[TELEGRAM]
        await channel.wait_ready(10)

        async def post(update: dict) -> None:
            resp = await client.post("/telegram/webhook", json=update, headers={SECRET_HEADER: SECRET})
            assert resp.status == 200, await resp.text()
            await channel.idle()

        private = {"id": LAN["id"], "type": "private", "first_name": "Lan"}
        pending_seen = []
        for number in LEAKED:
            # Offered choices, the bot keeps the question in the conversation state until one is chosen.
            await post(message(private, LAN, f"số điện thoại {number} đăng nhập vneid không được"))
            async with db.transaction() as session:
                state = await session.get(ConversationState, ("telegram", str(LAN["id"]), str(LAN["id"])))
            pending_seen.append(state.data.get("pending", "") if state else "")
            await post(message(private, LAN, f"sdt em {number} mất thẻ căn cước thì làm sao"))
            await post(message(private, LAN, f"{number}"))
        for code in CODES:
            await post(message(private, LAN, code))
        # A group named with a phone number, and a forged button press carrying one.
        group = {"id": GROUP_ID, "type": "group", "title": "Tổ 1 - LH trưởng thôn 0912 345 678 " + "x" * 300}
        await post(message(group, LAN, "@cccd_test_bot lệ phí sdt 0912 345 678"))
        dummy = {"message_id": 1, "date": int(time.time()), "chat": private, "from": fake.bot_user, "text": "…"}
        await post({"update_id": next(ids), "callback_query": {"id": "q1", "from": LAN, "chat_instance": "c", "message": dummy, "data": "f:0912345678"}})
        # Someone else writes numbers, then erases themselves.
        binh = {"id": BINH["id"], "type": "private", "first_name": "Bình"}
        await post(message(binh, BINH, "cccd 036 - 877 - 046 - 575 làm lại thế nào"))
        await post(message(binh, BINH, "/xoa"))
        await post(message(binh, BINH, "1"))
        assert any(t.startswith("Đã xóa") for t in fake.texts(BINH["id"]))

    assert sum("[số" in p for p in pending_seen) >= len(LEAKED) - 2, pending_seen  # the path was taken
    db2 = Database(db_url)
    try:
        cells = await every_cell(db2)
    finally:
        await db2.close()
    assert any(table == "query_log" and "[số điện thoại]" in text for table, _c, text in cells)
    found = [(table, column, text[:120]) for table, column, text in cells if leaks(text)]
    assert found == []
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert [line[:200] for line in logged if leaks(line)] == []
