"""The real server in a process of its own (as `cccd-bot serve` runs it), for tests that kill it.

    python -m tests.fakes.server_process      # configured by CCCD_* variables like the real server
"""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from bot.catalog import load_valid_catalog
from bot.config import Settings
from bot.server import create_app


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(_env_file=None)
    app = create_app(settings, load_valid_catalog(settings.content_dir))
    web.run_app(app, host=settings.host, port=settings.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
