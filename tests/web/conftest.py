"""A dashboard on the hand-counted fixture, with one account of each role and scope."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.config import Settings
from bot.web.app import PREFIX, DashboardConfig, create_dashboard
from bot.web.auth import LoginThrottle
from storage import accounts
from tests.conftest import FrozenClock
from tests.web.fixture import COMMUNE, OTHER, seed

PASSWORD = "mật khẩu đủ dài 1"
ACCOUNTS = {
    "admin": ("admin", None),
    "officer": ("officer", COMMUNE),
    "team": ("team", COMMUNE),
    "team_all": ("team", None),
    "officer_other": ("officer", OTHER),
}
CHANGES = web.AppKey("registry_changes", list)
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(autouse=True)
def cheap_password_hashing():
    """argon2 at its defaults takes about a second on this shared machine; the tests need not."""
    from argon2 import PasswordHasher

    accounts.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield
    accounts.use_hasher(PasswordHasher())


@pytest.fixture
def dash_clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc))


@pytest.fixture
async def dashboard(database, catalog, dash_clock):
    await seed(database)
    async with database.transaction() as s:
        for name, (role, commune) in ACCOUNTS.items():
            await accounts.add(s, name, PASSWORD, role, commune, dash_clock())
    changes = []
    cfg = DashboardConfig(
        db=database, settings=Settings(_env_file=None, database_url=database.url, telegram_bot_username="cccd_test_bot"),
        catalog=lambda: catalog, clock=dash_clock, throttle=LoginThrottle(delay=0), on_registry_change=lambda: changes.append(1),
    )
    app = web.Application()
    app.add_subapp(PREFIX, create_dashboard(cfg))
    app[CHANGES] = changes
    return app


@pytest.fixture
async def client(dashboard):
    async with TestClient(TestServer(dashboard)) as c:
        yield c


async def csrf_of(client, path=f"{PREFIX}/login") -> str:
    resp = await client.get(path)
    return CSRF_RE.search(await resp.text()).group(1)


async def login(client, username, password=PASSWORD):
    token = await csrf_of(client)
    return await client.post(
        f"{PREFIX}/login", data={"username": username, "password": password, "csrf": token, "next": f"{PREFIX}/"}, allow_redirects=False
    )


@pytest.fixture
def sign_in(client):
    async def go(username):
        resp = await login(client, username)
        assert resp.status == 303, await resp.text()
        return client

    return go
