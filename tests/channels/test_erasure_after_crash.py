"""/xoa after a crash: the server is killed (SIGKILL, a real process) while a person is writing. What it
never acknowledged with 200 the platform delivers again later — here after the person, talking to the
restarted server, has erased themself. Nothing of the person may be left, and no reply may follow the
confirmation (issue #10: the old messages used to re-create the person and be answered 11 times).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from sqlalchemy import select

from storage.db import Database
from storage.models import Chat, ConversationState, Erasure, GuideEvent, InboxEntry, OutboxMessage, QueryLog, User
from tests.fakes.bot_process import free_port
from tests.fakes.telegram_api import FakeTelegramAPI

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:TEST-token_abc"
SECRET = "crash-test-secret_0123"
LAN = {"id": 1001, "is_bot": False, "first_name": "Lan"}
PRIVATE_LAN = {"id": 1001, "type": "private", "first_name": "Lan"}


class Server:
    """`python -m tests.fakes.server_process`: the real application in its own process."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path):
        self.port = port
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.server_process"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        body = await resp.json()
                        if body.get("channels", {}).get("telegram", "").startswith("bật"):
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)
        raise AssertionError("the server did not start: " + self.log_path.read_text(errors="replace")[-3000:])

    async def post(self, update: dict) -> int:
        """Post as Telegram does; 0 when the server cannot be reached (Telegram then delivers it again)."""
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    self.url + "/telegram/webhook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
                ) as resp:
                    return resp.status
        except aiohttp.ClientError:
            return 0

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self.log.closed:
            self.log.close()


async def wait_until(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{tail}"
        await asyncio.sleep(0.1)


async def test_erasure_after_a_crash_removes_everything_and_nothing_is_answered_after_it(tmp_path, db_url):
    fake = await FakeTelegramAPI(TOKEN).start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCCD_")}
    env.update(
        CCCD_DATABASE_URL=db_url,
        CCCD_TELEGRAM_TOKEN=TOKEN,
        CCCD_TELEGRAM_BASE_URL=fake.base_url,
        CCCD_TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram/webhook",
        CCCD_TELEGRAM_WEBHOOK_SECRET=SECRET,
        CCCD_HOST="127.0.0.1",
        CCCD_PORT=str(port),
        CCCD_LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
    )
    log_path = tmp_path / "server.log"
    servers: list[Server] = []
    update_ids = iter(range(50_000, 60_000))
    acknowledged: list[int] = []  # what Telegram will not deliver again
    unacknowledged: list[dict] = []  # what Telegram keeps and delivers again

    def update(text: str) -> dict:
        uid = next(update_ids)
        return {"update_id": uid, "message": {"message_id": uid, "date": int(time.time()), "chat": PRIVATE_LAN, "from": LAN, "text": text}}

    async def deliver(server: Server, upd: dict) -> int:
        status = await server.post(upd)
        if status == 200:
            acknowledged.append(upd["update_id"])
        else:
            unacknowledged.append(upd)
        return status

    async def redeliver_until_taken(server: Server, upd: dict) -> int:
        """Telegram retries what is not answered 200 (e.g. 503 while the channel is still starting)."""
        for _ in range(100):
            if await server.post(upd) == 200:
                acknowledged.append(upd["update_id"])
                return 200
            await asyncio.sleep(0.3)
        return 0

    try:
        first = Server(env, port, log_path)
        servers.append(first)
        await first.wait_ready()
        questions = [f"sdt em 0912 345 {600 + i} mất thẻ căn cước thì làm sao" for i in range(11)]
        for question in questions[:3]:
            assert await deliver(first, update(question)) == 200
        await wait_until(lambda: len(fake.texts(LAN["id"])) >= 3, 30, "the first answers", log_path)
        first.kill()
        # The person goes on writing while the server is down: Telegram gets no 200 and keeps the updates.
        for question in questions[3:]:
            assert await deliver(first, update(question)) != 200
        assert len(unacknowledged) == 8
        answered_before = len(fake.texts(LAN["id"]))

        second = Server(env, port, log_path)
        servers.append(second)
        await second.wait_ready()
        assert await redeliver_until_taken(second, update("/xoa")) == 200
        await wait_until(lambda: len(fake.texts(LAN["id"])) > answered_before, 30, "the erasure prompt", log_path)
        await asyncio.sleep(1.1)  # the person reads the prompt, then confirms (Telegram dates to the second)
        assert await redeliver_until_taken(second, update("1")) == 200
        await wait_until(lambda: any(t.startswith("Đã xóa") for t in fake.texts(LAN["id"])), 30, "the confirmation", log_path)
        confirmed = len(fake.texts(LAN["id"]))
        # Now Telegram delivers again what was never acknowledged: taken (200), dropped by the erasure.
        for old in list(unacknowledged):
            unacknowledged.remove(old)
            assert await redeliver_until_taken(second, old) == 200
        await asyncio.sleep(3)  # time for any reply the sender would make
        texts = fake.texts(LAN["id"])
        assert texts[-1].startswith("Đã xóa") and len(texts) == confirmed, texts
    finally:
        for server in servers:
            server.stop()
        await fake.close()

    db = Database(db_url)
    try:
        async with db.transaction() as session:
            assert (await session.execute(select(User))).scalars().all() == []
            assert (await session.execute(select(Chat))).scalars().all() == []
            assert (await session.execute(select(ConversationState))).scalars().all() == []
            logged = (await session.execute(select(QueryLog.text, QueryLog.user_ref, QueryLog.chat_ref))).all()
            assert logged and all(row == (None, None, None) for row in logged), logged
            assert all(ref is None for ref in (await session.execute(select(GuideEvent.user_ref))).scalars())
            # The inbox holds the platform's keys of what was taken, and nothing else of the person.
            keys = (await session.execute(select(InboxEntry.update_key))).scalars().all()
            assert sorted(keys) == sorted(f"{TOKEN.split(':')[0]}:{uid}" for uid in acknowledged)
            pending = (await session.execute(select(OutboxMessage).where(OutboxMessage.status == "pending"))).scalars().all()
            assert pending == []
            assert len((await session.execute(select(Erasure))).scalars().all()) == 1
    finally:
        await db.close()
    logs = log_path.read_text(errors="replace")
    assert "0912" not in logs and "345 6" not in logs and "Lan" not in logs
