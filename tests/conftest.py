"""Shared fixtures: content, a frozen clock, and databases on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings as hypothesis_settings

from bot.catalog import load_valid_catalog
from bot.config import Settings
from bot.service import ChatService
from storage import registry
from storage.db import Database

# Property tests: a fixed budget and seed in CI; a wider random search on demand.
hypothesis_settings.register_profile(
    "ci", max_examples=400, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile("explore", max_examples=4_000, deadline=None, database=None)
hypothesis_settings.load_profile(os.environ.get("CCCD_TEST_HYPOTHESIS", "ci"))

EXAMPLE_CSV = Path(__file__).parent.parent / "bot" / "content" / "hamlets_example.csv"
PG_ADMIN_URL = os.environ.get("CCCD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
# Separate checkouts running the suite at once each set their own name.
PG_TEST_DB = os.environ.get("CCCD_TEST_PG_DB", "cccd_bot_test")


@dataclass
class FrozenClock:
    """A clock tests move by hand."""

    now: datetime = datetime(2026, 11, 2, 8, 30, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture(autouse=True)
def _no_operator_configuration(monkeypatch):
    """Keep a developer's own CCCD_* variables (tokens, database) out of the tests."""
    for name in list(os.environ):
        if name.startswith("CCCD_") and not name.startswith("CCCD_TEST_") and name != "CCCD_UPDATE_GOLDEN":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def catalog():
    return load_valid_catalog()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


def _pg_required() -> bool:
    return os.environ.get("CCCD_TEST_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true"


async def _fresh_pg_database() -> str:
    """Create (or empty) a dedicated test database and return its URL."""
    import asyncpg

    admin = PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_TEST_DB)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{PG_TEST_DB}"')
    finally:
        await conn.close()
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    url = f"{base}/{PG_TEST_DB}"
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request, tmp_path) -> str:
    """A migrated, empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"
    try:
        return await asyncio.wait_for(_fresh_pg_database(), 15)
    except (OSError, asyncio.TimeoutError, Exception) as exc:  # noqa: B014 - any connection failure
        if _pg_required():
            pytest.fail(f"PostgreSQL is required here but unreachable at {PG_ADMIN_URL}: {exc!r}")
        pytest.skip(f"PostgreSQL unreachable ({exc!r}); set CCCD_TEST_REQUIRE_POSTGRES=1 to fail instead")


@pytest.fixture
async def database(db_url):
    db = Database(db_url)
    await db.migrate()
    yield db
    await db.close()


@pytest.fixture
async def registry_loaded(database):
    async with database.transaction() as session:
        await registry.import_rows(session, registry.parse_csv(EXAMPLE_CSV.read_bytes()))
    return database


@pytest.fixture
def settings(db_url) -> Settings:
    return Settings(_env_file=None, database_url=db_url, officers="console:officer-1,telegram:42")


@pytest.fixture
async def service(registry_loaded, catalog, settings, clock) -> ChatService:
    return ChatService(registry_loaded, catalog, settings, clock=clock)
