"""Personal data in the store: erasure that sticks, retention, the pseudonym salt, errors without values."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from bot.config import Settings
from bot.messages import ChatType, Incoming
from bot.privacy import KV_SALT, LEGACY_SALT
from bot.server import SERVICE, apply_retention, create_app
from bot.service import ChatService
from storage import deliveries, kv
from storage.db import Database
from storage.models import ConversationState, Erasure, InboxEntry, QueryLog, User
from tests.fakes.deliveries import outbox


def msg(clock, text="", *, user="u1", at=None, chat=None, chat_type=ChatType.PRIVATE):
    return Incoming("console", chat or user, chat_type, user, "Bà Lan", text, at or clock())


async def count(db: Database, model) -> int:
    async with db.transaction() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def erase(service, clock, user="u1"):
    await service.handle(msg(clock, "/xoa", user=user))
    replies = await service.handle(msg(clock, "1", user=user))
    assert replies[0].text.startswith("Đã xóa")


# ---------------------------------------------------------------------------- erasure that sticks


async def test_a_message_sent_before_the_erasure_never_brings_the_person_back(service, clock):
    sent_before = clock()
    await service.handle(msg(clock, "mất thẻ căn cước"))
    clock.advance(seconds=30)
    await erase(service, clock)
    # Delivered late (a platform retry, a recovery after a crash): dropped, nothing created, no reply.
    assert await service.handle(msg(clock, "sdt 0912345678", at=sent_before)) == []
    assert await service.handle(msg(clock, "/huongdan", at=sent_before + timedelta(seconds=29))) == []
    assert await count(service.db, User) == 0
    assert await count(service.db, ConversationState) == 0
    async with service.db.transaction() as session:
        texts = (await session.execute(select(QueryLog.text, QueryLog.user_ref))).all()
    assert all(t is None and ref is None for t, ref in texts)
    # What the person writes after the erasure is answered as from anyone new.
    clock.advance(seconds=5)
    replies = await service.handle(msg(clock, "/menu"))
    assert replies and await count(service.db, User) == 1


async def test_erasure_drops_the_replies_still_waiting_for_the_person_only(service, clock):
    now = clock()
    async with service.db.transaction() as session:
        await deliveries.enqueue(session, "console", "u1", [{"text": "Bước 3/9 cho u1"}], now, user_id="u1")
        await deliveries.enqueue(session, "console", "u2", [{"text": "Bước 2/9 cho u2"}], now, user_id="u2")
        await deliveries.enqueue(session, "zalo_oa", "u1", [{"text": "OA u1"}], now, user_id="u1")  # another channel's u1
    await erase(service, clock)
    left = [(row.channel, row.user_id, row.call.get("text")) for row in await outbox(service.db)]
    assert ("console", "u1", "Bước 3/9 cho u1") not in left, "what still waited for the person goes"
    assert ("console", "u2", "Bước 2/9 cho u2") in left and ("zalo_oa", "u1", "OA u1") in left
    # The inbox keeps platform ids only: nothing the person wrote is in it.
    assert set(InboxEntry.__table__.columns.keys()) == {"channel", "update_key", "received_at"}


async def test_the_tombstone_names_nobody(service, clock):
    await erase(service, clock)
    async with service.db.transaction() as session:
        refs = (await session.execute(select(Erasure.person_ref))).scalars().all()
        kept = set((await session.execute(select(QueryLog.user_ref))).scalars().all())
    assert len(refs) == 1 and "u1" not in refs[0]
    assert refs[0] != service.pseudonym("console", "u1") and refs[0] not in kept


# ---------------------------------------------------------------------------- retention


async def test_question_texts_expire_and_counts_stay(registry_loaded, catalog, settings, clock):
    settings = settings.model_copy(update={"query_text_retention_days": 30})
    app = create_app(settings, catalog, registry_loaded)
    service: ChatService = app[SERVICE]
    service.clock = clock
    await service.handle(msg(clock, "mất thẻ căn cước"))
    clock.advance(days=29)
    await service.handle(msg(clock, "lệ phí bao nhiêu"))
    clock.advance(days=2)
    assert await apply_retention(app) == (1, 0)
    async with registry_loaded.transaction() as session:
        rows = (await session.execute(select(QueryLog.text, QueryLog.topic).order_by(QueryLog.id))).all()
    assert len(rows) == 2 and rows[0].text is None and rows[0].topic is not None
    assert rows[1].text == "lệ phí bao nhiêu"


async def test_tombstones_are_pruned_after_thirty_days(registry_loaded, catalog, settings, clock):
    app = create_app(settings, catalog, registry_loaded)
    service: ChatService = app[SERVICE]
    service.clock = clock
    await erase(service, clock)
    clock.advance(days=31)
    assert (await apply_retention(app))[1] == 1
    assert await count(registry_loaded, Erasure) == 0


# ---------------------------------------------------------------------------- the pseudonym salt


async def test_a_fresh_installation_generates_one_secret_salt_for_every_process(registry_loaded, catalog, clock, db_url):
    settings = Settings(_env_file=None, database_url=db_url)
    one = ChatService(registry_loaded, catalog, settings, clock=clock)
    two = ChatService(registry_loaded, catalog, settings, clock=clock)
    await one.handle(msg(clock, "/menu"))
    await two.handle(msg(clock, "/menu", user="u2"))
    assert one.pseudonym("telegram", "1001") == two.pseudonym("telegram", "1001")
    public = hashlib.sha256(f"{LEGACY_SALT}:telegram:1001".encode()).hexdigest()[:24]
    assert one.pseudonym("telegram", "1001") != public, "nobody can compute it from the Telegram id"
    async with registry_loaded.transaction() as session:
        stored = await kv.get(session, KV_SALT)
    assert stored and len(stored[0]["salt"]) == 64 and stored[0]["legacy"] is False


async def test_an_installation_with_statistics_keeps_the_old_salt(registry_loaded, catalog, clock, db_url):
    old_ref = hashlib.sha256(f"{LEGACY_SALT}:console:u1".encode()).hexdigest()[:24]
    async with registry_loaded.transaction() as session:
        session.add(
            QueryLog(created_at=clock(), channel="console", chat_type="private", user_ref=old_ref, text="x", score=0, outcome="answered", handling_ms=1)
        )
    service = ChatService(registry_loaded, catalog, Settings(_env_file=None, database_url=db_url), clock=clock)
    await service.handle(msg(clock, "/xoa"))
    await service.handle(msg(clock, "1"))
    async with registry_loaded.transaction() as session:
        rows = (await session.execute(select(QueryLog.user_ref, QueryLog.text))).all()
    assert rows and all(ref is None and t is None for ref, t in rows), "the person's old rows are still found and erased"


async def test_a_configured_salt_wins(registry_loaded, catalog, clock, db_url):
    service = ChatService(registry_loaded, catalog, Settings(_env_file=None, database_url=db_url, pseudonym_salt="s3cret"), clock=clock)
    await service.handle(msg(clock, "/menu"))
    assert service.pseudonym("console", "u1") == hashlib.sha256(b"s3cret:console:u1").hexdigest()[:24]
    async with registry_loaded.transaction() as session:
        assert await kv.get(session, KV_SALT) is None


# ---------------------------------------------------------------------------- errors and /healthz


async def test_database_errors_carry_no_values(database):
    async with database.transaction() as session:
        session.add(User(channel="t", external_id="0912345678", created_at=func.now(), last_seen_at=func.now(), active=True, opted_out=False))
    with pytest.raises(IntegrityError) as caught:
        async with database.transaction() as session:
            await session.execute(
                text("INSERT INTO users (channel, external_id, active, opted_out, created_at, last_seen_at) "
                     "VALUES (:c, :e, true, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                {"c": "t", "e": "0912345678"},
            )
    assert "0912345678" not in str(caught.value)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_healthz_tells_strangers_only_up_or_down(db_url, catalog):
    app = create_app(Settings(_env_file=None, database_url=db_url, healthz_token="tok-123"), catalog)
    async with TestClient(TestServer(app)) as client:
        relayed = {"X-Forwarded-For": "203.0.113.9"}  # a stranger through a reverse proxy on this machine
        assert await (await client.get("/healthz", headers=relayed)).json() == {"ok": True}
        wrong = await client.get("/healthz", headers={**relayed, "Authorization": "Bearer nope"})
        assert await wrong.json() == {"ok": True}
        with_token = await (await client.get("/healthz", headers={**relayed, "Authorization": "Bearer tok-123"})).json()
        assert set(with_token["channels"]) == {"telegram", "zalo_bot", "zalo_oa", "web"}
        assert "channels" in await (await client.get("/healthz")).json(), "loopback sees details"
        await app[SERVICE].db.close()
        # The database goes away: strangers learn that it is down, not why.
        app[SERVICE].db.sessions = _broken_sessions
        down = await client.get("/healthz", headers=relayed)
        assert down.status == 503 and await down.json() == {"ok": False}
        detailed = await (await client.get("/healthz")).json()
        assert detailed["ok"] is False and "refused" in detailed["database"]


def _broken_sessions():
    raise ConnectionRefusedError("connection refused at 10.0.0.5:5432 for user cccd")
