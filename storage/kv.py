"""A small versioned key-value table for secrets and tokens that must survive restarts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import KeyValue


async def get(session: AsyncSession, key: str) -> tuple[dict[str, Any], int] | None:
    """Return (value, version) or None."""
    row = await session.get(KeyValue, key, populate_existing=True)
    return (dict(row.value), row.version) if row else None


async def put_if_version(
    session: AsyncSession, key: str, value: dict[str, Any], expected_version: int | None, now: datetime
) -> bool:
    """Write `value` only if the stored version is still `expected_version` (None: not stored yet)."""
    if expected_version is None:
        try:
            async with session.begin_nested():
                session.add(KeyValue(key=key, value=value, version=1, updated_at=now))
                await session.flush()
        except IntegrityError:
            return False
        return True
    result = await session.execute(
        update(KeyValue)
        .where(KeyValue.key == key, KeyValue.version == expected_version)
        .values(value=value, version=expected_version + 1, updated_at=now)
    )
    return result.rowcount == 1
