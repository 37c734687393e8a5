"""A database that is away (retry later) told from a bug (say sorry once), on the real PostgreSQL errors.

The server raises these while it shuts down, crashes or starts up; SQLAlchemy wraps asyncpg's error in its
own, and the webhook must still answer "try again" rather than have the person told of a fault
(tests/test_faults.py shows it with a real restart).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.pipeline import is_unavailable
from storage.db import Database


async def raised(db_url: str, sqlstate: str) -> DBAPIError:
    db = Database(db_url)
    try:
        with pytest.raises(DBAPIError) as caught:
            async with db.transaction() as session:
                await session.execute(text(f"DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '{sqlstate}', MESSAGE = 'x'; END $$"))
        return caught.value
    finally:
        await db.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sqlstate", ["57P01", "57P02", "57P03", "08006"])  # shut down, crashed, starting up, connection lost
async def test_a_server_shutting_down_or_starting_up_is_unavailable(db_url, sqlstate):
    assert is_unavailable(await raised(db_url, sqlstate))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sqlstate", ["23505", "42P01", "22001"])  # unique violation, no such table, value too long
async def test_a_bug_is_not_unavailable(db_url, sqlstate):
    assert not is_unavailable(await raised(db_url, sqlstate))
