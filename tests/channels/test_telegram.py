"""The Telegram channel end to end: the bot talks over real HTTP, through python-telegram-bot with
`base_url`, to a fake Bot API server; updates arrive by long polling or on the webhook route of the
server's aiohttp application. Tests assert what a person would see: the texts and buttons the fake
server received."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.catalog import Catalog, load_valid_catalog
from bot.channels.telegram import KV_SECRET, SECRET_HEADER, TELEGRAM, TelegramChannel
from bot.config import Settings
from bot.matcher import Decision, Matcher
from bot.messages import Choice, Reply
from bot.server import CHANNELS, SENDER, SETTINGS, create_app
from storage import conversations, kv, people, registry
from storage.db import Database
from storage.models import InboxEntry, OutboxMessage, QueryLog, User
from tests.fakes.raw_http import raw_post
from tests.fakes.telegram_api import FakeTelegramAPI, chat_member

TOKEN = "123456:TEST-token_abc"
USERNAME = "cccd_test_bot"
SECRET = "test-secret_0123456789"
WEBHOOK_PATH = "/telegram/webhook"
WEBHOOK_URL = f"https://bot.example.org{WEBHOOK_PATH}"
EXAMPLE_CSV = Path(__file__).resolve().parents[2] / "bot" / "content" / "hamlets_example.csv"

LAN = {"id": 1001, "is_bot": False, "first_name": "Lan", "language_code": "vi"}
BINH = {"id": 1002, "is_bot": False, "first_name": "Bình"}
ADMIN = {"id": 2001, "is_bot": False, "first_name": "Trưởng thôn"}
PRIVATE_LAN = {"id": LAN["id"], "type": "private", "first_name": "Lan"}
PRIVATE_BINH = {"id": BINH["id"], "type": "private", "first_name": "Bình"}
GROUP = {"id": -4001, "type": "group", "title": "Tổ dân phố 1 - Ngọc Trạo"}
SUPERGROUP_ID = -1001234567890
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "Trợ lý CCCD", "username": USERNAME}

_message_ids = itertools.count(500)
_query_ids = itertools.count(9000)


# ---------------------------------------------------------------------------- updates as Telegram sends them


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _entities(text: str) -> list[dict[str, Any]]:
    """bot_command and mention entities, with offsets in UTF-16 code units like Telegram's."""
    out = []
    if text.startswith("/"):
        command = text.split()[0]
        out.append({"type": "bot_command", "offset": 0, "length": _utf16_len(command)})
    for i, ch in enumerate(text):
        if ch == "@" and (i == 0 or not text[i - 1].isalnum()):
            j = i + 1
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j > i + 1 and not (out and out[0]["type"] == "bot_command" and i < out[0]["length"]):
                out.append({"type": "mention", "offset": _utf16_len(text[:i]), "length": _utf16_len(text[i:j])})
    return out


def message(chat: dict, user: dict, text: str | None = None, **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"message_id": next(_message_ids), "date": int(time.time()), "chat": chat, "from": user}
    if text is not None:
        msg["text"] = text
        entities = _entities(text)
        if entities:
            msg["entities"] = entities
    msg.update(extra)
    return {"message": msg}


def membership(chat: dict, by: dict, old: str, new: str) -> dict[str, Any]:
    return {
        "my_chat_member": {
            "chat": chat,
            "from": by,
            "date": int(time.time()),
            "old_chat_member": chat_member(old, BOT_USER),
            "new_chat_member": chat_member(new, BOT_USER),
        }
    }


def callback(user: dict, sent_message: dict, data: str) -> dict[str, Any]:
    return {
        "callback_query": {
            "id": str(next(_query_ids)),
            "from": user,
            "chat_instance": "ci-1",
            "message": sent_message,
            "data": data,
        }
    }


# ---------------------------------------------------------------------------- the harness


@dataclass
class Bot:
    """One running server with the Telegram channel on, and the fake Bot API it talks to."""

    mode: str
    fake: FakeTelegramAPI
    app: Any
    client: TestClient
    channel: TelegramChannel
    db: Database
    catalog: Catalog
    sleeps: list[float] = field(default_factory=list)

    @property
    def sender(self):
        return self.app[SENDER]

    async def send(self, update: dict[str, Any]) -> dict[str, Any]:
        """Deliver an update the way the mode does, and wait until the bot has handled it."""
        update = dict(update)
        update.setdefault("update_id", self.fake.new_update_id())
        if not self.fake.reaches_bot(update):  # privacy mode: Telegram keeps it from the bot
            return update
        if self.mode == "polling":
            await self.fake.push_update(update)
            await self.fake.wait_confirmed(update["update_id"])
        else:
            response = await self.post(update)
            assert response.status == 200, await response.text()
        await self.channel.idle()
        return update

    async def post_polled(self, update: dict[str, Any]) -> None:
        """Have the bot fetch an update by long polling, without waiting for its replies."""
        update = dict(update)
        update.setdefault("update_id", self.fake.new_update_id())
        await self.fake.push_update(update)
        await self.fake.wait_confirmed(update["update_id"])

    async def post(self, body: Any, *, secret: str | None = SECRET, raw: bytes | None = None):
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        data = raw if raw is not None else json.dumps(body).encode()
        return await self.client.post(WEBHOOK_PATH, data=data, headers=headers)

    async def press(self, user: dict, chat_id: int, label: str) -> dict[str, Any]:
        """Press the button labelled `label` on the latest message of the bot that shows it."""
        for sent in reversed(self.fake.sent(chat_id)):
            for text, data in sent["buttons"]:
                if text == label:
                    return await self.send(callback(user, sent["message"], data))
        raise AssertionError(f"no button {label!r} in chat {chat_id}: {self.fake.sent(chat_id)[-1:]}")

    def new_texts(self, chat_id: int, before: int) -> list[str]:
        return self.fake.texts(chat_id)[before:]

    async def chat_row(self, chat_id: int):
        async with self.db.transaction() as session:
            return await people.get_chat(session, "telegram", str(chat_id))

    async def user_row(self, user_id: int):
        async with self.db.transaction() as session:
            return (
                await session.execute(select(User).where(User.channel == "telegram", User.external_id == str(user_id)))
            ).scalar_one_or_none()

    async def count(self, model) -> int:
        async with self.db.transaction() as session:
            return (await session.execute(select(func.count()).select_from(model))).scalar_one()


@pytest.fixture(scope="module")
def content() -> Catalog:
    return load_valid_catalog()


@pytest.fixture
async def fake():
    api = await FakeTelegramAPI(TOKEN, username=USERNAME).start()
    yield api
    await api.close()


@pytest.fixture
async def make_bot(tmp_path, fake, content):
    made: list[Bot] = []

    async def make(
        mode: str = "polling",
        *,
        db_file: str = "bot.sqlite3",
        secret: str | None = SECRET,
        token: str = TOKEN,
        hamlets: bool = True,
        wait: bool = True,
        **overrides: Any,
    ) -> Bot:
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/{db_file}",
            telegram_token=token,
            telegram_base_url=fake.base_url,
            telegram_webhook_url=WEBHOOK_URL if mode == "webhook" else None,
            telegram_webhook_secret=secret,
            telegram_bot_username=None,
            **overrides,
        )
        db = Database(settings.database_url)
        await db.migrate()
        if hamlets:
            async with db.transaction() as session:
                await registry.import_rows(session, registry.parse_csv(EXAMPLE_CSV.read_bytes()))
        app = create_app(settings, content, db, instance=f"test-{len(made)}")
        channel = app[TELEGRAM]
        bot = Bot(mode, fake, app, None, channel, db, content)  # type: ignore[arg-type]

        async def record_sleep(seconds: float) -> None:
            bot.sleeps.append(seconds)
            await asyncio.sleep(0)

        channel.sleep = record_sleep
        channel.backoff = (0.5, 1.0, 2.0)
        app[SENDER].sleep = record_sleep
        app[SENDER].backoff = (0.5, 1.0, 2.0)
        app[SENDER].jitter = 0
        channel.poll_timeout = 1
        bot.client = TestClient(TestServer(app))
        await bot.client.start_server()
        made.append(bot)
        if wait:
            await channel.wait_ready(5)
        return bot

    yield make
    for bot in reversed(made):
        await bot.client.close()


MODES = pytest.mark.parametrize("mode", ["polling", "webhook"])


def step_buttons(k: int) -> list[tuple[str, str]]:
    slug = load_valid_catalog().steps[k - 1].slug
    buttons = [("Tiếp theo", f"g:n:{slug}")]
    if k > 1:
        buttons.append(("Quay lại", f"g:b:{slug}"))
    buttons += [("Tôi bị vướng ở bước này", f"g:s:{slug}"), ("Về menu", "m")]
    if slug == "den_dung_hen":  # the step after the date was chosen offers a reminder (bot/broadcasts/reminders.py)
        buttons.append(("Nhắc anh/chị trước ngày hẹn", "rm"))
    return buttons


# ---------------------------------------------------------------------------- start-up and configuration


async def test_off_without_token_and_server_still_serves(tmp_path, content):
    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path}/off.sqlite3", telegram_token=None)
    app = create_app(settings, content)
    status = app[CHANNELS]["telegram"]
    assert not status.on and "CCCD_TELEGRAM_TOKEN" in status.detail
    async with TestClient(TestServer(app)) as client:
        health = await (await client.get("/healthz")).json()
    assert health["ok"] and "CCCD_TELEGRAM_TOKEN" in health["channels"]["telegram"]


async def test_polling_start_registers_commands_and_clears_webhook(make_bot, fake):
    bot = await make_bot("polling")
    assert fake.calls[0].method == "getMe"
    assert fake.calls_of("deleteWebhook") and not fake.calls_of("setWebhook")
    assert [c["command"] for c in fake.commands["all_private_chats"]] == ["start", "huongdan", "menu", "huynhac", "xoa"]
    assert [c["description"] for c in fake.commands["all_private_chats"]][-1] == "Xóa thông tin của anh/chị"
    assert "thon" in [c["command"] for c in fake.commands["all_chat_administrators"]]
    assert "thon" not in [c["command"] for c in fake.commands["all_group_chats"]]
    health = await (await bot.client.get("/healthz")).json()
    assert health["channels"]["telegram"].startswith(f"bật: long polling, bot @{USERNAME}; chế độ riêng tư (privacy mode) tắt")


async def test_webhook_start_registers_url_and_secret(make_bot, fake):
    await make_bot("webhook")
    assert fake.webhook["url"] == WEBHOOK_URL
    assert fake.webhook["secret_token"] == SECRET
    assert set(fake.webhook["allowed_updates"]) == {"message", "callback_query", "my_chat_member"}
    assert not fake.calls_of("getUpdates")


async def test_webhook_secret_generated_once_and_kept(make_bot, fake):
    first = await make_bot("webhook", secret=None)
    generated = fake.webhook["secret_token"]
    assert generated and len(generated) >= 32
    async with first.db.transaction() as session:
        stored = await kv.get(session, KV_SECRET)
    assert stored and stored[0]["secret"] == generated
    update = {"update_id": fake.new_update_id(), **message(PRIVATE_LAN, LAN, "/menu")}
    response = await first.post(update, secret=generated)
    assert response.status == 200
    await first.channel.idle()
    assert fake.texts(LAN["id"])[-1].startswith("Anh/chị cần gì?")
    await first.client.close()

    await make_bot("webhook", secret=None)  # a restart (or a second process) uses the same secret
    assert fake.calls_of("setWebhook")[-1].params["secret_token"] == generated


async def test_rejected_token_turns_channel_off_without_leaking_it(make_bot, fake, caplog):
    caplog.set_level(logging.INFO)
    bot = await make_bot("polling", token="999999:wrong-token", wait=False)
    for _ in range(100):
        if not bot.app[CHANNELS]["telegram"].on:
            break
        await asyncio.sleep(0.01)
    status = bot.app[CHANNELS]["telegram"]
    assert not status.on and status.detail.startswith("lỗi: Telegram không nhận CCCD_TELEGRAM_TOKEN")
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("bot.", "telegram", "httpx"))]
    assert ours and not any("wrong-token" in text for text in ours)
    health = await bot.client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["channels"]["telegram"] == status.detail and "wrong-token" not in status.detail


# ---------------------------------------------------------------------------- private chats


@MODES
async def test_start_without_payload_greets_and_asks_the_hamlet(make_bot, fake, mode):
    bot = await make_bot(mode)
    await bot.send(message(PRIVATE_LAN, LAN, "/start"))
    sent = fake.sent(LAN["id"])
    assert [m["text"] for m in sent] == [
        "Chào Lan! Tôi là trợ lý hướng dẫn làm thẻ căn cước trực tuyến.",
        "Anh/chị ở thôn hoặc tổ dân phố nào? Chọn bên dưới hoặc gõ tên. Anh/chị cũng có thể bỏ qua.",
    ]
    assert sent[0]["buttons"] == []
    assert sent[1]["buttons"] == [(f"Tổ dân phố {k}", f"t:ngoctrao_tdp{k:02d}") for k in range(1, 11)] + [("Bỏ qua", "t:-")]
    for m in sent:  # plain text: nothing to escape, nothing that can break
        assert "parse_mode" not in m["params"]

    await bot.press(LAN, LAN["id"], "Tổ dân phố 2")
    assert fake.texts(LAN["id"])[2] == "Đã ghi nhận: Tổ dân phố 2, Phường Ngọc Trạo."
    assert fake.calls_of("answerCallbackQuery")
    assert (await bot.user_row(LAN["id"])).hamlet_code == "ngoctrao_tdp02"


async def test_start_without_hamlets_shows_the_menu(make_bot, fake):
    bot = await make_bot("polling", hamlets=False)
    await bot.send(message(PRIVATE_LAN, LAN, "/start"))
    sent = fake.sent(LAN["id"])
    assert sent[-1]["text"] == "Anh/chị cần gì? Chọn một mục bên dưới, hoặc gõ câu hỏi."
    assert sent[-1]["buttons"] == [
        ("Hướng dẫn 9 bước", "g"),
        ("Hỏi đáp", "q"),
        ("Địa chỉ cổng chính thức", "p"),
        ("Cần người giúp", "h"),
    ]


async def test_start_with_hamlet_deep_link_sets_the_hamlet(make_bot, fake):
    bot = await make_bot("polling")
    await bot.send(message(PRIVATE_LAN, LAN, "/start h_ngoctrao_tdp03"))
    texts = fake.texts(LAN["id"])
    assert texts[:2] == [
        "Chào Lan! Tôi là trợ lý hướng dẫn làm thẻ căn cước trực tuyến.",
        "Đã ghi nhận: Tổ dân phố 3, Phường Ngọc Trạo.",
    ]
    assert fake.sent(LAN["id"])[-1]["buttons"][0] == ("Hướng dẫn 9 bước", "g")
    assert (await bot.user_row(LAN["id"])).hamlet_code == "ngoctrao_tdp03"


async def test_start_with_unknown_code_explains_and_changes_nothing(make_bot, fake):
    bot = await make_bot("polling")
    await bot.send(message(PRIVATE_LAN, LAN, "/start h_ngoctrao_tdp77"))
    assert "Mã thôn trong đường dẫn không đúng." in fake.texts(LAN["id"])[1]
    assert fake.sent(LAN["id"])[-1]["buttons"][-1] == ("Bỏ qua", "t:-")
    assert (await bot.user_row(LAN["id"])).hamlet_code is None


@MODES
async def test_nine_steps_by_button_presses(make_bot, fake, content, mode):
    bot = await make_bot(mode)
    await bot.send(message(PRIVATE_LAN, LAN, "/huongdan"))
    for k in range(1, 10):
        last = fake.sent(LAN["id"])[-1]
        step = content.steps[k - 1]
        assert last["text"].startswith(f"Bước {k}/9: {step.title}\n"), last["text"][:60]
        assert step.text in last["text"]
        assert last["buttons"] == step_buttons(k)
        await bot.press(LAN, LAN["id"], "Tiếp theo")
    last = fake.sent(LAN["id"])[-1]
    assert last["text"] == "Anh/chị đã xem hết 9 bước. Anh/chị đã nộp hồ sơ được chưa?"
    assert last["buttons"] == [("Đã nộp được", "o:yes"), ("Chưa nộp", "o:not_yet"), ("Gặp vướng mắc", "o:problem")]
    await bot.press(LAN, LAN["id"], "Đã nộp được")
    assert fake.texts(LAN["id"])[-1].startswith("Chúc mừng anh/chị!")
    assert len(fake.calls_of("answerCallbackQuery")) == 10
    assert [m["text"][:8] for m in fake.sent(LAN["id"])[:9]] == [f"Bước {k}/9" for k in range(1, 10)]


async def test_back_and_stuck_buttons(make_bot, fake, content):
    bot = await make_bot("polling")
    await bot.send(message(PRIVATE_LAN, LAN, "/huongdan"))
    await bot.press(LAN, LAN["id"], "Tiếp theo")
    await bot.press(LAN, LAN["id"], "Quay lại")
    assert fake.texts(LAN["id"])[-1].startswith("Bước 1/9")
    await bot.press(LAN, LAN["id"], "Tôi bị vướng ở bước này")
    last = fake.sent(LAN["id"])[-1]
    assert last["text"] == "Anh/chị bị vướng chỗ nào ở bước 1/9? Chọn một mục bên dưới."
    problems = content.steps[0].problems
    assert last["buttons"] == [(p.label, f"f:{p.topic}") for p in problems] + [("Về bước 1/9", "s:tao_tai_khoan")]
    await bot.press(LAN, LAN["id"], problems[0].label)
    assert content.topics[problems[0].topic].lead in fake.texts(LAN["id"])[-1]


def _answerable(content: Catalog) -> tuple[str, str]:
    """A question the FAQ answers outright, and the topic it answers with."""
    matcher = Matcher(content)
    for topic in content.topics.values():
        for example in topic.examples:
            match = matcher.match(example)
            if match.decision is Decision.ANSWER and match.candidates[0].topic == topic.id:
                return example, topic.id
    raise AssertionError("no FAQ example is answered outright")


async def test_question_in_private_is_answered(make_bot, fake, content):
    bot = await make_bot("polling")
    question, topic = _answerable(content)
    await bot.send(message(PRIVATE_LAN, LAN, question))
    last = fake.sent(LAN["id"])[-1]
    entry = content.topics[topic]
    assert content.first_part(entry) == last["text"] and len(last["text"]) <= 500
    more = [("Xem thêm", f"fm:{topic}")] if entry.more else []
    assert last["buttons"] == more + [("Về menu", "m")]
    assert await bot.count(QueryLog) == 1
    if entry.more:
        await bot.press(LAN, LAN["id"], "Xem thêm")
        assert fake.sent(LAN["id"])[-1]["text"] == entry.more
        assert fake.sent(LAN["id"])[-1]["buttons"] == [("Về menu", "m")]


async def test_user_text_reaches_the_person_verbatim(make_bot, fake):
    bot = await make_bot("polling")
    await bot.send(message(PRIVATE_LAN, LAN, "/start"))
    typed = "<b>*x_ [a](b) &amp; `y`"
    await bot.send(message(PRIVATE_LAN, LAN, typed))
    last = fake.sent(LAN["id"])[-2]
    assert f"“{typed}”" in last["text"]
    assert "parse_mode" not in last["params"]


async def test_non_text_message_gets_a_plain_answer(make_bot, fake):
    bot = await make_bot("polling")
    sticker = {"file_id": "s1", "file_unique_id": "u1", "type": "regular", "width": 512, "height": 512,
               "is_animated": False, "is_video": False}
    await bot.send(message(PRIVATE_LAN, LAN, sticker=sticker))
    assert fake.texts(LAN["id"]) == ["Xin lỗi, tôi chỉ đọc được tin nhắn chữ."]


async def test_long_text_is_split_at_4096(make_bot, fake):
    bot = await make_bot("polling")
    sentence = "Câu này dài vừa phải để ghép thành một tin rất dài. "
    text = sentence * 200  # about 10,600 characters
    await bot.channel.send_replies(LAN["id"], [Reply(text, (Choice("Về menu", "m"),))])
    await bot.channel.idle()
    sent = fake.sent(LAN["id"])
    assert len(sent) == 3
    assert all(len(m["text"]) <= 4096 for m in sent)
    assert " ".join(m["text"] for m in sent) == text.strip()
    assert [m["buttons"] for m in sent] == [[], [], [("Về menu", "m")]]


# ---------------------------------------------------------------------------- groups


@MODES
async def test_group_answers_only_when_addressed(make_bot, fake, content, mode):
    bot = await make_bot(mode)
    question, topic = _answerable(content)
    answer = content.topics[topic].lead

    await bot.send(message(GROUP, LAN, question))  # a conversation between members
    await bot.send(message(GROUP, LAN, "/menu@other_bot"))  # a command for another bot
    assert fake.sent(GROUP["id"]) == []
    assert await bot.count(QueryLog) == 0

    asked = await bot.send(message(GROUP, LAN, f"@{USERNAME} {question}"))
    first = fake.sent(GROUP["id"])[-1]
    assert answer in first["text"] and f"@{USERNAME}" not in first["text"]
    assert first["params"]["reply_parameters"]["message_id"] == asked["message"]["message_id"]
    # In a group only the rest of a long answer is offered: no menu.
    assert first["buttons"] == ([("Xem thêm", f"fm:{topic}")] if content.topics[topic].more else [])

    await bot.send(message(GROUP, BINH, question, reply_to_message=first["message"]))  # a reply to the bot
    assert len(fake.sent(GROUP["id"])) == 2 and answer in fake.texts(GROUP["id"])[-1]

    await bot.send(message(GROUP, BINH, f"/cauhoi@{USERNAME} {question}"))
    assert len(fake.sent(GROUP["id"])) == 3
    assert await bot.count(QueryLog) == 3


async def test_group_guide_points_to_a_private_chat(make_bot, fake):
    bot = await make_bot("polling")
    await bot.send(message(GROUP, LAN, f"/huongdan@{USERNAME}"))
    last = fake.sent(GROUP["id"])[-1]
    assert last["text"].startswith("Để không làm phiền cả nhóm")
    assert last["buttons"] == [("Nhắn riêng với tôi", f"https://t.me/{USERNAME}?start=g")]
    await bot.send(message(PRIVATE_LAN, LAN, "/start g"))  # what that button opens
    assert fake.texts(LAN["id"])[-1].startswith("Bước 1/9")


async def test_group_guide_of_a_hamlet_group_links_to_that_hamlet(make_bot, fake):
    bot = await make_bot("polling")
    fake.set_member(GROUP["id"], ADMIN["id"], "administrator")
    await bot.send(message(GROUP, ADMIN, "/thon Tổ dân phố 4"))
    await bot.send(message(GROUP, LAN, f"@{USERNAME} Hướng dẫn 9 bước"))
    last = fake.sent(GROUP["id"])[-1]
    assert last["buttons"] == [("Nhắn riêng với tôi", f"https://t.me/{USERNAME}?start=h_ngoctrao_tdp04")]
    # No "how to open the private chat" sentence where the button does it.
    assert "Nhắn tin" not in last["text"]
    await bot.send(message(PRIVATE_LAN, LAN, "/start h_ngoctrao_tdp04"))  # what that button opens
    assert "Tổ dân phố 4, Phường Ngọc Trạo" in fake.texts(LAN["id"])[-2]


async def test_thon_by_an_admin_links_the_group(make_bot, fake):
    bot = await make_bot("polling")
    fake.set_member(GROUP["id"], ADMIN["id"], "administrator")
    await bot.send(message(GROUP, ADMIN, "/thon Tổ dân phố 4"))
    assert fake.texts(GROUP["id"]) == ["Nhóm này đã được gắn với Tổ dân phố 4, Phường Ngọc Trạo."]
    asked = fake.calls_of("getChatMember")[-1].params
    assert (asked["chat_id"], asked["user_id"]) == (GROUP["id"], ADMIN["id"])
    assert (await bot.chat_row(GROUP["id"])).hamlet_code == "ngoctrao_tdp04"


async def test_thon_by_the_creator_links_the_group(make_bot, fake):
    bot = await make_bot("polling")
    fake.set_member(GROUP["id"], ADMIN["id"], "creator")
    await bot.send(message(GROUP, ADMIN, f"/thon@{USERNAME} ngoctrao_tdp05"))
    assert (await bot.chat_row(GROUP["id"])).hamlet_code == "ngoctrao_tdp05"


async def test_thon_by_a_member_is_refused(make_bot, fake):
    bot = await make_bot("polling")
    fake.set_member(GROUP["id"], LAN["id"], "member")
    await bot.send(message(GROUP, LAN, "/thon Tổ dân phố 4"))
    assert fake.texts(GROUP["id"]) == ["Xin lỗi, chỉ quản trị viên nhóm hoặc cán bộ mới gắn được thôn cho nhóm."]
    assert (await bot.chat_row(GROUP["id"])).hamlet_code is None


async def test_thon_by_a_registered_officer(make_bot, fake):
    bot = await make_bot("polling", officers=f"telegram:{BINH['id']}")
    await bot.send(message(GROUP, BINH, "/thon Tổ dân phố 6"))
    assert (await bot.chat_row(GROUP["id"])).hamlet_code == "ngoctrao_tdp06"


async def test_added_to_and_removed_from_a_group(make_bot, fake):
    bot = await make_bot("polling")
    await bot.send(membership(GROUP, ADMIN, "left", "member"))
    row = await bot.chat_row(GROUP["id"])
    assert row.active and row.type == "group" and row.title == GROUP["title"]
    await bot.send(membership(GROUP, ADMIN, "member", "kicked"))
    assert not (await bot.chat_row(GROUP["id"])).active
    await bot.send(membership(GROUP, ADMIN, "kicked", "administrator"))
    assert (await bot.chat_row(GROUP["id"])).active
    assert fake.sent() == []  # recorded, not announced


async def test_startgroup_link_by_the_admin_who_adds_the_bot(make_bot, fake):
    bot = await make_bot("polling")
    fake.set_member(GROUP["id"], ADMIN["id"], "administrator")
    await bot.send(membership(GROUP, ADMIN, "left", "member"))
    await bot.send(message(GROUP, ADMIN, f"/start@{USERNAME} h_ngoctrao_tdp02"))
    assert fake.texts(GROUP["id"]) == ["Nhóm này đã được gắn với Tổ dân phố 2, Phường Ngọc Trạo."]
    assert (await bot.chat_row(GROUP["id"])).hamlet_code == "ngoctrao_tdp02"


async def test_startgroup_link_with_an_unknown_code_changes_nothing(make_bot, fake):
    bot = await make_bot("polling")
    fake.set_member(GROUP["id"], ADMIN["id"], "creator")
    await bot.send(message(GROUP, ADMIN, f"/start@{USERNAME} h_ngoctrao_tdp77"))
    texts = fake.texts(GROUP["id"])
    assert texts[0].startswith("Tôi chưa tìm thấy “ngoctrao_tdp77”")
    assert texts[1].startswith("Gõ /thon kèm tên hoặc mã thôn")
    assert (await bot.chat_row(GROUP["id"])).hamlet_code is None


async def test_startgroup_link_by_a_member_is_refused(make_bot, fake):
    bot = await make_bot("polling")
    await bot.send(message(GROUP, LAN, f"/start@{USERNAME} h_ngoctrao_tdp02"))
    assert fake.texts(GROUP["id"]) == ["Xin lỗi, chỉ quản trị viên nhóm hoặc cán bộ mới gắn được thôn cho nhóm."]
    assert (await bot.chat_row(GROUP["id"])).hamlet_code is None


async def test_supergroup_migration_keeps_hamlet_and_conversations(make_bot, fake, content):
    bot = await make_bot("polling")
    fake.set_member(GROUP["id"], ADMIN["id"], "administrator")
    await bot.send(message(GROUP, ADMIN, "/thon ngoctrao_tdp01"))
    question, _ = _answerable(content)
    await bot.send(message(GROUP, LAN, f"@{USERNAME} {question}"))

    supergroup = {"id": SUPERGROUP_ID, "type": "supergroup", "title": GROUP["title"]}
    await bot.send(message(GROUP, ADMIN, migrate_to_chat_id=SUPERGROUP_ID))
    await bot.send(message(supergroup, ADMIN, migrate_from_chat_id=GROUP["id"]))

    assert await bot.chat_row(GROUP["id"]) is None
    moved = await bot.chat_row(SUPERGROUP_ID)
    assert moved.hamlet_code == "ngoctrao_tdp01" and moved.active
    async with bot.db.transaction() as session:
        assert await conversations.load_state(session, ("telegram", str(SUPERGROUP_ID), str(LAN["id"]))) is not None
        assert await conversations.load_state(session, ("telegram", str(GROUP["id"]), str(LAN["id"]))) is None

    await bot.send(message(supergroup, LAN, f"@{USERNAME} {question}"))
    assert len(fake.sent(SUPERGROUP_ID)) == 1
    assert (await bot.chat_row(SUPERGROUP_ID)).hamlet_code == "ngoctrao_tdp01"


async def test_reply_to_a_migrated_group_goes_to_the_supergroup(make_bot, fake, content):
    bot = await make_bot("polling")
    fake.set_member(GROUP["id"], ADMIN["id"], "administrator")
    await bot.send(message(GROUP, ADMIN, "/thon ngoctrao_tdp01"))
    fake.upgrade_to_supergroup(GROUP["id"], SUPERGROUP_ID)
    question, topic = _answerable(content)
    await bot.send(message(GROUP, LAN, f"@{USERNAME} {question}"))
    assert content.topics[topic].lead in fake.texts(SUPERGROUP_ID)[-1]
    moved = await bot.chat_row(SUPERGROUP_ID)
    assert moved is not None and moved.hamlet_code == "ngoctrao_tdp01"


# ---------------------------------------------------------------------------- errors of the Bot API


async def test_blocked_user_is_marked_inactive_and_others_still_served(make_bot, fake):
    bot = await make_bot("polling")
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    fake.block(LAN["id"])
    before = len(fake.sent(LAN["id"]))
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    assert len(fake.sent(LAN["id"])) == before
    assert not (await bot.chat_row(LAN["id"])).active
    assert not (await bot.user_row(LAN["id"])).active
    await bot.send(message(PRIVATE_BINH, BINH, "/menu"))
    assert fake.texts(BINH["id"])[-1].startswith("Anh/chị cần gì?")


async def test_blocking_and_unblocking_in_private(make_bot, fake):
    bot = await make_bot("polling")
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    await bot.send(membership(PRIVATE_LAN, LAN, "member", "kicked"))
    assert not (await bot.chat_row(LAN["id"])).active
    await bot.send(membership(PRIVATE_LAN, LAN, "kicked", "member"))
    assert (await bot.chat_row(LAN["id"])).active


async def test_retry_after_is_honoured(make_bot, fake):
    bot = await make_bot("polling")
    fake.fail("sendMessage", 429, retry_after=7)
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    assert bot.sleeps == [pytest.approx(7.0, abs=0.5)]  # the channel pauses for what was asked
    assert fake.texts(LAN["id"]) == ["Anh/chị cần gì? Chọn một mục bên dưới, hoặc gõ câu hỏi."]
    assert len(fake.calls_of("sendMessage")) == 2  # refused once, then sent once


async def test_network_errors_are_retried_with_backoff(make_bot, fake):
    bot = await make_bot("polling")
    fake.fail("sendMessage", 502, times=2)
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    assert bot.sleeps == [0.5, 1.0]
    assert len(fake.sent(LAN["id"])) == 1


async def test_a_long_outage_is_waited_out_and_other_chats_are_served_meanwhile(make_bot, fake):
    bot = await make_bot("polling")
    released = asyncio.Event()

    async def outage_sleep(seconds: float) -> None:  # Lan's retries wait until the outage ends
        bot.sleeps.append(seconds)
        if len(bot.sleeps) >= 6:
            await released.wait()

    bot.sender.sleep = outage_sleep
    fake.fail("sendMessage", 500, times=6, chat_id=LAN["id"])
    await bot.post_polled(message(PRIVATE_LAN, LAN, "/menu"))
    await bot.post_polled(message(PRIVATE_BINH, BINH, "/menu"))
    await fake.wait_for("sendMessage", 1)
    assert len(fake.sent(BINH["id"])) == 1 and fake.sent(LAN["id"]) == []  # Binh is not held up
    released.set()
    await bot.channel.idle()
    assert bot.sleeps == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]  # backs off, then keeps trying: never dropped
    assert len(fake.sent(LAN["id"])) == 1
    async with bot.db.transaction() as session:
        row = (await session.execute(select(OutboxMessage).where(OutboxMessage.chat_id == str(LAN["id"])))).scalar_one()
    assert row.status == "sent" and row.attempts == 6 and row.call is None


async def test_a_blocked_chat_ends_its_replies_as_refused_and_records_why(make_bot, fake):
    bot = await make_bot("polling")
    fake.block(LAN["id"])
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    async with bot.db.transaction() as session:
        rows = (await session.execute(select(OutboxMessage))).scalars().all()
    assert [(r.status, r.last_error[:9]) for r in rows] == [("refused", "forbidden")]


async def test_polling_skips_an_update_it_cannot_read(make_bot, fake):
    bot = await make_bot("polling")
    bad = await fake.push_update({"message": {"message_id": 1, "text": "no date, chat or sender"}})
    await fake.wait_confirmed(bad["update_id"])
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    assert len(fake.sent(LAN["id"])) == 1


async def test_polling_survives_get_updates_failures(make_bot, fake):
    bot = await make_bot("polling")
    fake.fail("getUpdates", 502, times=2)
    fake.fail("getUpdates", 429, retry_after=3)
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    assert len(fake.sent(LAN["id"])) == 1
    assert 3.0 in bot.sleeps


# ---------------------------------------------------------------------------- webhook correctness


async def test_wrong_or_missing_secret_is_refused_and_nothing_processed(make_bot, fake):
    bot = await make_bot("webhook")
    update = {"update_id": 777, **message(PRIVATE_LAN, LAN, "/start")}
    assert (await bot.post(update, secret=None)).status == 403
    assert (await bot.post(update, secret="wrong-secret")).status == 403
    assert (await bot.post(update, secret=SECRET + "x")).status == 403
    await bot.channel.idle()
    assert fake.sent() == []
    assert await bot.count(InboxEntry) == 0
    assert (await bot.post(update)).status == 200  # the same update, with the right secret
    await bot.channel.idle()
    assert len(fake.sent(LAN["id"])) == 2


async def test_malformed_bodies_do_not_crash(make_bot, fake):
    bot = await make_bot("webhook")
    assert (await bot.post(None, raw=b"this is not json")).status == 400
    assert (await bot.post(None, raw=b"\xff\xfe{")).status == 400
    assert (await bot.post([1, 2, 3])).status == 400
    assert (await bot.post({"update_id": "12"})).status == 400
    assert (await bot.post({"message": {"text": "hi"}})).status == 400
    assert (await bot.post({"update_id": 13, "message": {"text": "no chat, no sender"}})).status == 400
    unknown = {"update_id": 14, "business_connection_x": {"id": "b1"}}
    assert (await bot.post(unknown)).status == 200
    poll = {"update_id": 15, "poll": {"id": "p", "question": "?", "options": [], "total_voter_count": 0,
                                      "is_closed": False, "is_anonymous": True, "type": "regular",
                                      "allows_multiple_answers": False}}
    assert (await bot.post(poll)).status == 200
    await bot.channel.idle()
    assert fake.sent() == []
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))  # and the bot still works
    assert len(fake.sent(LAN["id"])) == 1


async def test_duplicate_update_ids_are_processed_once(make_bot, fake):
    bot = await make_bot("webhook")
    update = {"update_id": 4242, **message(PRIVATE_LAN, LAN, "/menu")}
    assert (await bot.post(update)).status == 200
    assert (await bot.post(update)).status == 200  # Telegram retried
    await bot.channel.idle()
    assert len(fake.sent(LAN["id"])) == 1
    await bot.client.close()

    again = await make_bot("webhook")  # a restart, same database
    assert (await again.post(update)).status == 200
    await again.channel.idle()
    assert len(fake.sent(LAN["id"])) == 1


async def test_webhook_answers_at_once_and_keeps_each_chat_in_order(make_bot, fake):
    bot = await make_bot("webhook")
    released = asyncio.Event()

    async def held_sleep(seconds: float) -> None:  # Lan's flood wait lasts until the test says so
        bot.sleeps.append(seconds)
        await released.wait()

    bot.sender.sleep = held_sleep
    fake.fail("sendMessage", 429, retry_after=30, chat_id=LAN["id"])
    dummy = {"message_id": 1, "date": int(time.time()), "chat": PRIVATE_LAN, "from": BOT_USER, "text": "…"}
    updates = [message(PRIVATE_LAN, LAN, "/huongdan")] + [callback(LAN, dummy, "g:n") for _ in range(3)]
    updates.append(message(PRIVATE_BINH, BINH, "/menu"))
    for update in updates:
        update["update_id"] = fake.new_update_id()
        response = await asyncio.wait_for(bot.post(update), 2)  # answered while Lan's chat waits
        assert response.status == 200
    await fake.wait_for("sendMessage", 1)
    await asyncio.sleep(0.1)
    assert len(fake.texts(BINH["id"])) == 1 and fake.texts(LAN["id"]) == []  # Binh is not held up
    assert bot.sleeps == [pytest.approx(30.0, abs=0.5)]
    released.set()
    await bot.channel.idle()
    assert [t[:8] for t in fake.texts(LAN["id"])] == ["Bước 1/9", "Bước 2/9", "Bước 3/9", "Bước 4/9"]


async def test_undecodable_secret_header_is_refused_not_an_error(make_bot, fake):
    bot = await make_bot("webhook")
    body = json.dumps({"update_id": 31337, **message(PRIVATE_LAN, LAN, "/menu")}).encode()
    headers = [(b"Content-Type", b"application/json"), (SECRET_HEADER.encode(), b"\xff\xfe" + SECRET.encode())]
    status = await raw_post(bot.client.host, bot.client.port, WEBHOOK_PATH, headers, body)
    assert status == 403
    await bot.channel.idle()
    assert fake.sent() == []


async def test_text_with_emoji_is_split_to_telegrams_utf16_limit(make_bot, fake):
    bot = await make_bot("polling")
    # 4,000 characters, fewer than 4,096, but 7,600 UTF-16 code units: Telegram counts the latter.
    text = ("😀" * 9 + " ") * 400
    await bot.channel.send_replies(LAN["id"], [Reply(text)])
    await bot.channel.idle()
    sent = fake.texts(LAN["id"])
    assert len(sent) == 2
    assert " ".join(sent) == text.strip()


# ---------------------------------------------------------------------------- durable deliveries


@MODES
async def test_a_reply_cut_short_by_shutdown_is_delivered_once_after_a_restart(make_bot, fake, mode):
    first = await make_bot(mode)
    held = asyncio.Event()

    async def held_sleep(seconds: float) -> None:  # the flood wait outlives the process
        held.set()
        await asyncio.Event().wait()

    first.sender.sleep = held_sleep
    first.app[SETTINGS].sender_drain_seconds = 0
    fake.fail("sendMessage", 429, retry_after=3)
    update = {"update_id": fake.new_update_id(), **message(PRIVATE_LAN, LAN, "/menu")}
    if mode == "polling":
        await fake.push_update(update)
        await fake.wait_confirmed(update["update_id"])  # confirmed: Telegram will not send it again
    else:
        assert (await first.post(update)).status == 200  # acknowledged: no redelivery
    await asyncio.wait_for(held.wait(), 5)
    await first.client.close()
    assert fake.texts(LAN["id"]) == []

    second = await make_bot(mode, hamlets=False)  # another instance: takes over once the lease is free
    await fake.wait_for("sendMessage", 1, timeout=10)  # when the 3 s Telegram asked for have passed
    await second.channel.idle()
    if mode == "webhook":
        assert (await second.post(update)).status == 200  # a late duplicate is still dropped
        await second.channel.idle()
    texts = fake.texts(LAN["id"])
    assert len(texts) == 1 and texts[0].startswith("Anh/chị cần gì?")
    async with second.db.transaction() as session:
        rows = (await session.execute(select(OutboxMessage))).scalars().all()
        keys = (await session.execute(select(InboxEntry.update_key))).scalars().all()
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)]
    assert keys == [f"{TOKEN.split(':')[0]}:{update['update_id']}"]  # the key only: no names, no texts


async def test_the_webhook_answers_503_while_the_database_is_away_and_the_retry_is_answered(make_bot, fake, tmp_path):
    bot = await make_bot("webhook")
    update = {"update_id": fake.new_update_id(), **message(PRIVATE_LAN, LAN, "/menu")}
    real = bot.db.locked_many

    def away(*args, **kwargs):
        raise OSError("connection refused")

    bot.db.locked_many = away
    assert (await bot.post(update)).status == 503  # Telegram delivers it again
    bot.db.locked_many = real
    assert (await bot.post(update)).status == 200
    await bot.channel.idle()
    texts = fake.texts(LAN["id"])
    assert len(texts) == 1 and texts[0].startswith("Anh/chị cần gì?")  # no "trục trặc", answered once


async def test_a_press_on_a_button_from_before_an_erasure_brings_nobody_back(make_bot, fake):
    bot = await make_bot("webhook")
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    menu = fake.sent(LAN["id"])[-1]
    assert menu["buttons"]
    await bot.send(message(PRIVATE_LAN, LAN, "/xoa"))
    await bot.send(message(PRIVATE_LAN, LAN, "1"))
    assert fake.texts(LAN["id"])[-1].startswith("Đã xóa")
    before = len(fake.texts(LAN["id"]))
    # Pressed late, or recovered after a crash: the press belongs to before the erasure.
    await bot.send(callback(LAN, menu["message"], menu["buttons"][0][1]))
    assert len(fake.texts(LAN["id"])) == before
    assert await bot.user_row(LAN["id"]) is None and await bot.chat_row(LAN["id"]) is None
    # Writing again afterwards is welcome: Telegram dates messages to the second, and nobody reads the
    # confirmation and answers within the second it was sent.
    await asyncio.sleep(1.1)
    await bot.send(message(PRIVATE_LAN, LAN, "/menu"))
    assert len(fake.texts(LAN["id"])) == before + 1


# ---------------------------------------------------------------------------- groups as Telegram really behaves (issue 15)


@pytest.mark.parametrize("reads_all", [False, True], ids=["privacy-on", "privacy-off"])
async def test_healthz_and_the_start_log_say_which_privacy_mode_the_bot_is_in(make_bot, fake, caplog, reads_all):
    fake.can_read_all_group_messages = reads_all
    caplog.set_level(logging.INFO, logger="bot.channels.telegram")
    bot = await make_bot("polling")
    response = await bot.client.get("/healthz")
    detail = (await response.json())["channels"]["telegram"]
    logged = [r for r in caplog.records if "privacy mode" in r.getMessage()]
    assert len(logged) == 1
    if reads_all:
        assert "chế độ riêng tư (privacy mode) tắt" in detail and logged[0].levelno == logging.INFO
    else:
        assert "chế độ riêng tư (privacy mode) BẬT" in detail and "/setprivacy" in detail and logged[0].levelno == logging.WARNING


async def test_with_privacy_off_a_group_question_word_makes_a_message_addressed(make_bot, fake, content):
    fake.can_read_all_group_messages = True
    bot = await make_bot("polling", group_question_words="căn cước, cccd")
    question, topic = _answerable(content)
    await bot.send(message(GROUP, LAN, "chiều nay 3 giờ họp thôn nhé"))  # every message arrives: not for the bot
    assert fake.sent(GROUP["id"]) == []
    asked = await bot.send(message(GROUP, LAN, "mat can cuoc thi lam lai the nao"))
    (answer,) = fake.sent(GROUP["id"])
    assert answer["params"]["reply_parameters"]["message_id"] == asked["message"]["message_id"]
    # Without the list, the same message is left to the people of the group.
    await bot.channel.stop()  # one poller at a time: getUpdates hands an update to whichever asks first
    other = await make_bot("polling", db_file="other.sqlite3")
    await other.send(message({**GROUP, "id": -4002}, LAN, "mat can cuoc thi lam lai the nao"))
    assert fake.sent(-4002) == []


async def test_in_privacy_mode_commands_and_replies_to_the_bot_are_answered_and_a_plain_mention_never_arrives(
    make_bot, fake, content
):
    fake.can_read_all_group_messages = False  # a new bot's default: BotFather's /setprivacy left Enabled
    bot = await make_bot("polling")
    question, _topic = _answerable(content)
    await bot.send(message(GROUP, LAN, f"@{USERNAME} {question}"))
    assert fake.sent(GROUP["id"]) == []  # Telegram does not give it to the bot: README says to turn privacy off
    asked = await bot.send(message(GROUP, LAN, f"/cauhoi@{USERNAME} {question}"))
    (answer,) = fake.sent(GROUP["id"])
    assert answer["params"]["reply_parameters"]["message_id"] == asked["message"]["message_id"]
    # The bot asks back with ForceReply: the person's reply is a reply to the bot, so it arrives.
    await bot.channel.send_replies(GROUP["id"], [Reply("Anh/chị hỏi về thẻ của ai?")], reply_to=asked["message"]["message_id"])
    await fake.wait_for("sendMessage", 2)
    back = fake.sent(GROUP["id"])[-1]
    assert back["params"]["reply_markup"] == {"force_reply": True, "selective": True}
    await bot.send(message(GROUP, BINH, question, reply_to_message=back["message"]))
    assert len(fake.sent(GROUP["id"])) == 3 and fake.texts(GROUP["id"])[-1] == answer["params"]["text"]


async def test_a_question_back_in_a_group_is_a_reply_with_force_reply(make_bot, fake):
    bot = await make_bot("polling")
    fake.add_chat(GROUP)
    many = tuple(Choice(f"Thôn {i}", f"h:{i}") for i in range(1, 15))  # too many for buttons: numbered lines
    await bot.channel.send_replies(GROUP["id"], [Reply("Anh/chị hỏi về thẻ của ai?")], reply_to=77)
    await bot.channel.send_replies(GROUP["id"], [Reply("Anh/chị ở thôn nào.", many)], reply_to=78)
    await bot.channel.send_replies(GROUP["id"], [Reply("Làm căn cước cho trẻ em không mất phí.")], reply_to=79)
    await bot.channel.send_replies(LAN["id"], [Reply("Anh/chị hỏi về thẻ của ai?")])
    await fake.wait_for("sendMessage", 4)
    asked, numbered, plain = fake.sent(GROUP["id"])
    for sent, to in ((asked, 77), (numbered, 78)):
        assert sent["params"]["reply_markup"] == {"force_reply": True, "selective": True}
        assert sent["params"]["reply_parameters"]["message_id"] == to
    assert "reply_markup" not in plain["params"] and plain["params"]["reply_parameters"]["message_id"] == 79
    (private,) = fake.sent(LAN["id"])
    assert "reply_markup" not in private["params"]  # in private every message reaches the bot anyway


async def test_typing_is_shown_while_a_slow_reply_waits_and_not_for_a_quick_one(make_bot, fake, content):
    bot = await make_bot("polling", typing_after_seconds=0.05)
    bot.sender.sleep = asyncio.sleep
    bot.sender.backoff = (0.5,)
    fake.fail("sendMessage", 502)
    await bot.post_polled(message(PRIVATE_LAN, LAN, "/menu"))
    await fake.wait_for("sendMessage", 1)
    (action,) = fake.calls_of("sendChatAction")
    assert action.params == {"chat_id": LAN["id"], "action": "typing"}
    first_sent = next(c for c in fake.calls_of("sendMessage") if not getattr(c, "refused", False))
    assert action.at < first_sent.at
    await bot.channel.stop()  # one poller at a time: getUpdates hands an update to whichever asks first
    quick = await make_bot("polling", db_file="quick.sqlite3", typing_after_seconds=5)
    await quick.send(message(PRIVATE_BINH, BINH, "/menu"))
    assert len(fake.calls_of("sendChatAction")) == 1


async def test_a_bot_api_call_tries_no_import_that_fails(make_bot, fake, monkeypatch):
    """httpx (under python-telegram-bot) imports sniffio on every request; without the package each call
    paid for a failed import. It is a dependency now: a call to the Bot API fails no import."""
    import builtins

    bot = await make_bot("polling")
    failed: list[str] = []
    real_import = builtins.__import__

    def spy(name, *args, **kwargs):
        try:
            return real_import(name, *args, **kwargs)
        except ImportError:
            failed.append(name)
            raise

    monkeypatch.setattr(builtins, "__import__", spy)
    (call,) = bot.channel.render_calls([Reply("Chào anh/chị.")])
    result = await bot.channel.deliver(str(LAN["id"]), call)
    monkeypatch.undo()
    assert fake.texts(LAN["id"]) == ["Chào anh/chị."] and failed == [], (result, failed)
