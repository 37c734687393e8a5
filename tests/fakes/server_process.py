"""The real server in a process of its own (as `cccd-bot serve` runs it), with recovery timings for tests.

    python -m tests.fakes.server_process      # configured by CCCD_* variables like the real server

CCCD_TEST_RECOVER_AFTER and CCCD_TEST_RECOVER_EVERY (seconds) shorten how long a delivery must be left
unfinished before recovery takes it, and how often recovery looks: a test cannot wait two minutes. With
CCCD_TEST_RECOVERY_GATE (a file path), recovery takes nothing until that file exists: a test decides
when, whatever the start-up time of a busy machine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from bot.catalog import load_valid_catalog
from bot.config import Settings
from bot.server import create_app


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(_env_file=None)
    app = create_app(settings, load_valid_catalog(settings.content_dir))
    after = timedelta(seconds=float(os.environ.get("CCCD_TEST_RECOVER_AFTER", "120")))
    every = float(os.environ.get("CCCD_TEST_RECOVER_EVERY", "60"))
    gate = Path(os.environ["CCCD_TEST_RECOVERY_GATE"]) if os.environ.get("CCCD_TEST_RECOVERY_GATE") else None
    ledgers = [app[key].ledger for key in list(app) if hasattr(app[key], "ledger")]
    for ledger in ledgers:
        ledger.recover_after = after if gate is None else timedelta(days=365)
        ledger.recover_every = every

    async def open_gate() -> None:
        while not gate.exists():
            await asyncio.sleep(0.1)
        for ledger in ledgers:
            ledger.recover_after = after

    tasks: list[asyncio.Task] = []

    async def watch(_app: web.Application) -> None:
        if gate is not None:
            tasks.append(asyncio.get_running_loop().create_task(open_gate()))

    app.on_startup.append(watch)
    web.run_app(app, host=settings.host, port=settings.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
