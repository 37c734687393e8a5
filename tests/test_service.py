"""The shell over the store: state survives restarts, every message is logged with its hamlet."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bot.config import Settings
from bot.messages import ChatType, Incoming
from bot.service import ChatService
from storage.db import Database
from storage.models import Chat, ConversationState, GuideEvent, QueryLog, User


def msg(clock, text="", payload=None, *, user="u1", chat=None, chat_type=ChatType.PRIVATE, channel="console", addressed=True):
    return Incoming(channel, chat or user, chat_type, user, "Bà Lan", text, clock(), payload=payload, addressed=addressed)


async def rows(db: Database, model):
    async with db.transaction() as session:
        return list((await session.execute(select(model).order_by(*model.__table__.primary_key.columns))).scalars())


async def test_state_survives_a_restart(service, catalog, settings, clock, db_url):
    await service.handle(msg(clock, "/huongdan"))
    await service.handle(msg(clock, "tiếp"))
    await service.handle(msg(clock, "tiếp"))
    await service.db.close()
    clock.advance(days=2)
    restarted = ChatService(Database(db_url), catalog, settings, clock=clock)
    replies = await restarted.handle(msg(clock, "/huongdan"))
    assert replies[0].text == "Anh/chị đang ở bước 3/9. Anh/chị muốn tiếp tục hay bắt đầu lại?"
    replies = await restarted.handle(msg(clock, "1"))
    assert replies[0].text.startswith("Bước 3/9")
    await restarted.db.close()


async def test_every_message_is_logged_with_hamlet_and_masked(service, clock):
    await service.handle(msg(clock, "/start h_ngoctrao_tdp02"))
    await service.handle(msg(clock, "mất căn cước làm lại thế nào"))
    await service.handle(msg(clock, "thời tiết mai thế nào"))
    await service.handle(msg(clock, "số của tôi 001089012345, sđt 0912345678, otp 482913"))
    log = await rows(service.db, QueryLog)
    assert [r.outcome for r in log][:3] == ["command", "answered", "unanswered"]
    assert {r.hamlet_code for r in log} == {"ngoctrao_tdp02"}
    assert log[1].topic == "mat_the" and log[1].score > 0
    assert log[3].text == "số của tôi [số giấy tờ], sđt [số điện thoại], otp [mã]"
    assert log[0].user_ref == service.pseudonym("console", "u1") and "u1" not in log[0].user_ref
    assert all(r.handling_ms >= 0 for r in log)


async def test_person_without_hamlet_is_logged_as_unknown(service, clock):
    await service.handle(msg(clock, "/start"))
    await service.handle(msg(clock, "lệ phí làm căn cước bao nhiêu tiền"))
    log = await rows(service.db, QueryLog)
    assert [r.hamlet_code for r in log] == [None, None]


async def test_group_queries_carry_the_group_hamlet(service, clock):
    group = dict(chat="g-1", chat_type=ChatType.GROUP)
    refused = await service.handle(msg(clock, "/thon Tổ dân phố 5", **group))
    assert "chỉ quản trị viên" in refused[0].text
    await service.handle(msg(clock, "/thon Tổ dân phố 5", user="officer-1", **group))
    await service.handle(msg(clock, "mất căn cước làm lại thế nào", user="u7", **group))
    assert await service.handle(msg(clock, "chuyện riêng", user="u8", addressed=False, **group)) == []
    log = await rows(service.db, QueryLog)
    assert [r.hamlet_code for r in log] == [None, "ngoctrao_tdp05", "ngoctrao_tdp05"]
    assert len(log) == 3, "a message the bot is not addressed in is not logged"
    chats = [c for c in await rows(service.db, Chat) if c.external_id == "g-1"]
    assert chats[0].hamlet_code == "ngoctrao_tdp05"


async def test_guide_events_give_the_funnel(service, clock):
    await service.handle(msg(clock, "/start h_ngoctrao_tdp01"))
    await service.handle(msg(clock, "/huongdan"))
    for _ in range(8):
        await service.handle(msg(clock, "tiếp"))
    replies = await service.handle(msg(clock, "tiếp"))
    assert "hết 9 bước" in replies[0].text
    await service.handle(msg(clock, "1"))
    events = await rows(service.db, GuideEvent)
    steps = [e.step for e in events if e.kind == "step"]
    assert steps == [s.slug for s in service.catalog.steps]
    assert [(e.kind, e.value, e.hamlet_code) for e in events if e.kind == "outcome"] == [("outcome", "yes", "ngoctrao_tdp01")]


async def test_choose_none_marks_the_question_unanswered(service, clock):
    replies = await service.handle(msg(clock, "cccd"))
    assert replies[0].choices[-1].payload == "f:-", "a one-word query asks back with choices"
    none_payload = replies[0].choices[-1].payload
    await service.handle(msg(clock, payload=none_payload))
    log = await rows(service.db, QueryLog)
    assert log[0].outcome == "unanswered" and log[0].text == "cccd"
    assert [r.outcome for r in log].count("unanswered") == 1, "the question counts once among the unanswered"


async def test_forget_me_deletes_state_and_texts(service, clock):
    await service.handle(msg(clock, "/start h_ngoctrao_tdp03"))
    await service.handle(msg(clock, "mất thẻ căn cước"))
    await service.handle(msg(clock, "/huongdan"))
    await service.handle(msg(clock, "/xoa"))
    replies = await service.handle(msg(clock, "1"))
    assert replies[0].text.startswith("Đã xóa")
    assert await rows(service.db, ConversationState) == []
    assert await rows(service.db, User) == []
    log = await rows(service.db, QueryLog)
    assert len(log) == 5, "anonymous counts are kept"
    assert {r.text for r in log} == {None} and {r.user_ref for r in log} == {None}
    assert {r.chat_ref for r in log} == {None}, "the private chat's pseudonym identifies the person too"
    assert {e.user_ref for e in await rows(service.db, GuideEvent)} == {None}
    assert [c for c in await rows(service.db, Chat) if c.external_id == "u1"] == []


async def test_forget_me_keeps_the_group_and_other_people(service, clock):
    group = dict(chat="g-1", chat_type=ChatType.GROUP)
    await service.handle(msg(clock, "mất căn cước làm lại thế nào", **group))
    await service.handle(msg(clock, "mất căn cước làm lại thế nào", user="u2"))
    await service.handle(msg(clock, "/xoa"))
    await service.handle(msg(clock, "1"))
    log = await rows(service.db, QueryLog)
    assert log[0].chat_ref == service.pseudonym("console", "g-1") and log[0].user_ref is None and log[0].text is None
    assert log[1].user_ref == service.pseudonym("console", "u2") and log[1].text
    assert {c.external_id for c in await rows(service.db, Chat)} == {"g-1", "u2"}


async def test_a_database_failure_gets_an_apology_not_an_exception(catalog, clock):
    unreachable = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    broken = ChatService(unreachable, catalog, Settings(_env_file=None), clock=clock)
    replies = await broken.handle(msg(clock, "/start"))
    assert [r.text for r in replies] == [catalog.msg("error")]
    await unreachable.close()


async def test_payloads_are_masked_in_the_log(service, clock):
    await service.handle(msg(clock, payload="x:0912345678"))
    log = await rows(service.db, QueryLog)
    assert "0912345678" not in log[0].text


async def test_concurrent_messages_of_one_chat_are_processed_in_order(service, clock):
    await service.handle(msg(clock, "/huongdan"))
    replies = await asyncio.gather(*(service.handle(msg(clock, "tiếp")) for _ in range(6)))
    assert [r[0].text.split(":")[0] for r in replies] == [f"Bước {k}/9" for k in range(2, 8)]


async def test_stored_state_from_old_content_does_not_break(service, clock):
    async with service.db.transaction() as session:
        session.add(ConversationState(channel="console", chat_id="u1", user_id="u1", data={"flow": "guide", "step": "gone"}, updated_at=clock()))
    replies = await service.handle(msg(clock, "tiếp"))
    assert replies and "Traceback" not in replies[0].text
    replies = await service.handle(msg(clock, "/huongdan"))
    assert replies[0].text.startswith("Bước 1/9")


async def test_bad_input_is_logged_and_answered_politely(service, clock, caplog):
    caplog.set_level("INFO", logger="bot.service")
    for bad in (msg(clock, payload="f:removed_topic"), msg(clock, "\x00" * 10), msg(clock, "x" * 100_000)):
        replies = await service.handle(bad)
        assert replies and "Traceback" not in replies[0].text
    assert sum("refused input" in r.message for r in caplog.records) == 3
    log = await rows(service.db, QueryLog)
    assert [r.outcome for r in log] == ["invalid"] * 3
    assert all(len(r.text) <= 1000 for r in log)


async def test_two_processes_on_one_database_do_not_lose_a_step(service, catalog, settings, clock, db_url):
    await service.handle(msg(clock, "/huongdan"))
    other = ChatService(Database(db_url), catalog, settings, clock=clock)  # as a second process would
    replies = await asyncio.gather(*(s.handle(msg(clock, "tiếp")) for s in (service, other, service, other)))
    assert sorted(r[0].text.split(":")[0] for r in replies) == [f"Bước {k}/9" for k in range(2, 6)]
    await other.db.close()


async def test_typed_outcomes_are_recorded_like_pressed_ones(service, clock):
    for answer in ("rồi", "da nop duoc roi", "chưa nộp", "bị lỗi"):
        await service.handle(msg(clock, "bước 9"))
        await service.handle(msg(clock, "tiếp"))
        await service.handle(msg(clock, answer))
    outcomes = [e.value for e in await rows(service.db, GuideEvent) if e.kind == "outcome"]
    assert outcomes == ["yes", "yes", "not_yet", "problem"]


async def test_small_talk_and_other_services_are_not_unanswered_questions(service, clock):
    from storage import logs

    for text in ("chào cháu", "cảm ơn", "ok", "tạm biệt", "làm hộ chiếu ở đâu"):
        await service.handle(msg(clock, text))
    log = await rows(service.db, QueryLog)
    assert [r.outcome for r in log] == ["command", "small_talk", "small_talk", "small_talk", "out_of_scope"]
    async with service.db.transaction() as session:
        assert await logs.low_confidence_texts(session) == []


async def test_private_chat_offers_the_hamlet_of_the_group_the_person_wrote_in(service, clock):
    await service.handle(msg(clock, "/thon Tổ dân phố 6", user="officer-1", chat="g1", chat_type=ChatType.GROUP))
    await service.handle(msg(clock, "lệ phí làm căn cước bao nhiêu", chat="g1", chat_type=ChatType.GROUP))
    replies = await service.handle(msg(clock, "/start"))
    assert replies[1].text == "Anh/chị ở Tổ dân phố 6, Phường Ngọc Trạo phải không?"
    await service.handle(msg(clock, "đúng rồi"))
    users = {u.external_id: u for u in await rows(service.db, User)}
    assert users["u1"].hamlet_code == "ngoctrao_tdp06"


async def test_someone_else_in_private_gets_the_whole_list(service, clock):
    await service.handle(msg(clock, "/thon Tổ dân phố 6", user="officer-1", chat="g1", chat_type=ChatType.GROUP))
    await service.handle(msg(clock, "lệ phí làm căn cước bao nhiêu", chat="g1", chat_type=ChatType.GROUP))
    replies = await service.handle(msg(clock, "/start", user="u2"))
    assert [c.label for c in replies[1].choices][:2] == ["Tổ dân phố 1", "Tổ dân phố 2"]


class WatchingMatcher:
    """The real matcher, noting whether another process could write to the SQLite file while it ran."""

    def __init__(self, catalog, path):
        from bot.matcher import Matcher

        self.inner = Matcher(catalog)
        self.path = path
        self.texts: list[str] = []
        self.others_could_write: list[bool] = []

    def match(self, text):
        import sqlite3

        conn = sqlite3.connect(self.path, timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")  # what any writer (the broadcast sender) must get first
            conn.execute("ROLLBACK")
            self.others_could_write.append(True)
        except sqlite3.OperationalError:
            self.others_could_write.append(False)
        finally:
            conn.close()
        self.texts.append(text)
        return self.inner.match(text)

    def reload(self, catalog):
        self.inner.reload(catalog)


def _answerable(catalog) -> tuple[str, str]:
    from bot.matcher import Decision, Matcher

    matcher = Matcher(catalog)
    for topic in catalog.topics.values():
        for example in topic.examples:
            found = matcher.match(example)
            if found.decision is Decision.ANSWER and found.candidates[0].topic == topic.id:
                return example, topic.id
    raise AssertionError("no FAQ example is answered outright")


async def test_the_database_is_not_locked_while_a_question_is_matched(catalog, clock, tmp_path):
    """On SQLite the write lock covers the whole database: while the slow part of a reply (matching)
    runs, other writers (the broadcast sender, another reply) must not wait for it."""
    path = tmp_path / "bot.sqlite3"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    matcher = WatchingMatcher(catalog, str(path))
    service = ChatService(db, catalog, Settings(_env_file=None), matcher=matcher, clock=clock)
    question, topic = _answerable(catalog)
    try:
        replies = await service.handle(msg(clock, question))
        assert replies[0].text == catalog.first_part(catalog.topics[topic])
        replies = await service.handle(msg(clock, f"/cauhoi {question}", user="u2", chat="g1", chat_type=ChatType.GROUP))
        assert replies[0].text == catalog.first_part(catalog.topics[topic])
        # Matched once, before the transaction; the step inside it used that result.
        assert matcher.texts == [question]
        assert matcher.others_could_write == [True]
        log = await rows(db, QueryLog)
        assert [(r.outcome, r.topic) for r in log] == [("answered", topic), ("answered", topic)]
    finally:
        await db.close()



async def test_the_pipeline_matches_before_its_write_transaction_too(catalog, clock, tmp_path):
    from bot.pipeline import Pipeline, Work

    path = tmp_path / "bot.sqlite3"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    matcher = WatchingMatcher(catalog, str(path))
    service = ChatService(db, catalog, Settings(_env_file=None), matcher=matcher, clock=clock)
    pipeline = Pipeline(service)
    question, topic = _answerable(catalog)
    rendered: list = []

    def render(replies):
        rendered.extend(r.text for r in replies)
        return [{"text": r.text} for r in replies]

    try:
        assert await pipeline.receive(Work("console", "k1", "u1", render=render, incoming=msg(clock, question)))
        assert rendered[0] == catalog.first_part(catalog.topics[topic])
        assert matcher.texts == [question] and matcher.others_could_write == [True]
    finally:
        await db.close()
