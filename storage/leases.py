"""Named leases in the database: exactly one live holder, taken over when the holder stops renewing.

Generic on purpose: the broadcast sender holds one, and any other single-runner job (an outbox sender)
can hold its own under another name. Every change is one conditional statement, atomic on SQLite and
PostgreSQL alike, so two processes racing for a free lease cannot both win.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Lease


async def acquire(session: AsyncSession, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease `name` for `holder`; False while another holder's lease is live."""
    result = await session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at <= now))
        .values(
            holder=holder,
            expires_at=now + ttl,
            epoch=case((Lease.holder == holder, Lease.epoch), else_=Lease.epoch + 1),
        )
    )
    if result.rowcount:
        return True
    exists = (await session.execute(select(Lease.name).where(Lease.name == name))).scalar_one_or_none()
    if exists is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(Lease(name=name, holder=holder, expires_at=now + ttl, epoch=1))
    except IntegrityError:
        return False
    return True


async def release(session: AsyncSession, name: str, holder: str, now: datetime) -> None:
    """Give the lease up at once (a clean stop), so a successor need not wait for it to expire."""
    await session.execute(update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=now))


async def holder_of(session: AsyncSession, name: str) -> Lease | None:
    return await session.get(Lease, name)
