"""`cccd-bot serve` in processes of their own, configured like production by CCCD_* variables, and the
platform's side of the Telegram webhook (posting each chat's updates in order, each until answered 2xx).

Used by the fault tests (tests/test_faults.py), which kill these processes or take their database away,
and by the load benchmark (bench/load.py), which starts them with the same environment.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123:abc"
SECRET = "s3cret"
HOOK_PATH = "/tg/hook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def free_port() -> int:
    """A loopback port nobody listens on now (the suites of several checkouts run side by side)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bot_env(
    db_url: str,
    api_base_url: str,
    port: int,
    instance: str,
    *,
    token: str = TOKEN,
    secret: str = SECRET,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one `cccd-bot serve` process: this machine's own CCCD_* variables left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCCD_")}
    env.update(
        CCCD_DATABASE_URL=db_url,
        CCCD_TELEGRAM_TOKEN=token,
        CCCD_TELEGRAM_BASE_URL=api_base_url,
        CCCD_TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}{HOOK_PATH}",
        CCCD_TELEGRAM_WEBHOOK_SECRET=secret,
        CCCD_INSTANCE_NAME=instance,
        CCCD_LOG_LEVEL="WARNING",
    )
    env.update(extra or {})
    return env


class BotProcess:
    """One `cccd-bot serve` process; its output goes to `log_path` (shown when it fails to come up)."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path, *, role: str = "all"):
        self.env = env
        self.port = port
        self.log_path = log_path
        self.role = role
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hook_url(self) -> str:
        return self.url + HOOK_PATH

    async def start(self) -> BotProcess:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "serve", "--port", str(self.port), "--role", self.role,
                env=self.env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    async def readyz(self, http: aiohttp.ClientSession, timeout: float = 5.0) -> int | None:
        """The status /readyz answers, None when nothing answers in `timeout` seconds."""
        try:
            async with http.get(self.url + "/readyz", timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 120.0) -> None:
        """Until /readyz answers 200 (migrated, database reachable); fails with the log if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise AssertionError(f"cccd-bot serve exited ({self.proc.returncode if self.proc else None}):\n{self.log_tail()}")
            if await self.readyz(http) == 200:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"cccd-bot serve never became ready in {timeout:.0f} s:\n{self.log_tail()}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no drain."""
        if self.running:
            self.proc.kill()
        if self.proc is not None:
            await self.proc.wait()

    async def stop(self, timeout: float = 20.0) -> None:
        """SIGINT (a clean stop), SIGKILL if it has not ended in `timeout` seconds."""
        if not self.running:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self.kill()


class WebhookPlatform:
    """Telegram's side of the webhook: each chat's updates in order, each posted until answered 2xx.

    Every answer is counted by status ("timeout" when none came in `timeout` seconds, "refused" when the
    connection failed); `on_answer(url, status, posted_at)` sees each one as it comes, with the
    `time.monotonic()` at which its post was made.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        secret: str = SECRET,
        timeout: float = 10.0,
        retry_every: float = 0.2,
        on_answer: Callable[[str, int | str, float], None] | None = None,
    ):
        self.http = http
        self.secret = secret
        self.timeout = timeout
        self.retry_every = retry_every
        self.on_answer = on_answer
        self.answers: collections.Counter[int | str] = collections.Counter()
        self.acknowledged = 0

    async def post_once(self, url: str, update: dict) -> int | str:
        posted_at = time.monotonic()
        try:
            async with self.http.post(
                url, json=update, headers={SECRET_HEADER: self.secret}, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                await resp.read()
                status: int | str = resp.status
        except asyncio.TimeoutError:
            status = "timeout"
        except aiohttp.ClientError:
            status = "refused"
        self.answers[status] += 1
        if self.on_answer is not None:
            self.on_answer(url, status, posted_at)
        return status

    async def deliver(self, url: str, update: dict) -> None:
        """Post until the bot answers 2xx, as Telegram retries an update it was not acknowledged."""
        while True:
            status = await self.post_once(url, update)
            if isinstance(status, int) and 200 <= status < 300:
                self.acknowledged += 1
                return
            await asyncio.sleep(self.retry_every)

    async def chat(self, updates: Sequence[dict], urls: Sequence[str], gap: float = 0.05) -> None:
        """One chat's updates in order, the k-th to `urls[k % len(urls)]` (several processes take turns)."""
        for k, update in enumerate(updates):
            await self.deliver(urls[k % len(urls)], update)
            await asyncio.sleep(gap)
