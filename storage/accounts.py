"""Accounts of the officers' dashboard: argon2 password hashes, roles, commune scope, lock-out."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import CodedError
from storage.models import Commune, WebAccount

ROLES = ("admin", "officer", "team")
USERNAME_RE = re.compile(r"^[A-Za-z0-9._-]{2,64}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 200
LOCK_AFTER = 5  # failed logins in a row
LOCK_FOR = timedelta(minutes=15)

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 "low memory") defaults
_dummy_hash: str | None = None


def use_hasher(hasher: PasswordHasher) -> None:
    """Use other argon2 parameters (tests use cheap ones; stored hashes keep their own)."""
    global _hasher, _dummy_hash
    _hasher, _dummy_hash = hasher, None


def _dummy() -> str:
    """Verified when the username is unknown, so a wrong name costs as long as a wrong password."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("not a password of anyone")
    return _dummy_hash


class AccountError(CodedError):
    """A request about accounts that cannot be done; `code` is its sentence in operator.yaml."""


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError("account_err_password_short", min=MIN_PASSWORD)
    if len(password) > MAX_PASSWORD:
        raise AccountError("account_err_password_long", max=MAX_PASSWORD)


async def get(session: AsyncSession, username: str) -> WebAccount | None:
    return (await session.execute(select(WebAccount).where(WebAccount.username == username))).scalar_one_or_none()


async def add(session: AsyncSession, username: str, password: str, role: str, commune: str | None, now: datetime) -> WebAccount:
    if not USERNAME_RE.match(username):
        raise AccountError("account_err_username")
    if role not in ROLES:
        raise AccountError("account_err_role", roles=", ".join(ROLES))
    if commune and await session.get(Commune, commune) is None:
        raise AccountError("account_err_commune", commune=commune)
    if await get(session, username) is not None:
        raise AccountError("account_err_exists", username=username)
    check_password_rules(password)
    account = WebAccount(
        username=username, password_hash=_hasher.hash(password), role=role, commune_code=commune or None,
        active=True, failed_logins=0, created_at=now,
    )
    session.add(account)
    await session.flush()
    return account


async def set_password(session: AsyncSession, username: str, password: str) -> None:
    account = await get(session, username)
    if account is None:
        raise AccountError("account_err_unknown", username=username)
    check_password_rules(password)
    account.password_hash = _hasher.hash(password)
    account.failed_logins = 0
    account.locked_until = None


async def set_active(session: AsyncSession, username: str, active: bool) -> None:
    account = await get(session, username)
    if account is None:
        raise AccountError("account_err_unknown", username=username)
    account.active = active


async def list_all(session: AsyncSession) -> list[WebAccount]:
    return list((await session.execute(select(WebAccount).order_by(WebAccount.username))).scalars())


def _aware(ts: datetime | None) -> datetime | None:
    from datetime import timezone

    return ts.replace(tzinfo=timezone.utc) if ts is not None and ts.tzinfo is None else ts


async def authenticate(session: AsyncSession, username: str, password: str, now: datetime) -> tuple[WebAccount | None, str]:
    """Return (account, "ok") or (None, reason) with reason "bad", "locked" or "disabled".

    Each failure counts; after LOCK_AFTER in a row the account is locked for LOCK_FOR, whatever is typed.
    """
    account = await get(session, username) if USERNAME_RE.match(username or "") else None
    if account is None:
        try:
            _hasher.verify(_dummy(), password or "-")
        except VerificationError:
            pass
        return None, "bad"
    locked_until = _aware(account.locked_until)
    if locked_until is not None and locked_until > now:
        return None, "locked"
    try:
        _hasher.verify(account.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        account.failed_logins += 1
        if account.failed_logins >= LOCK_AFTER:
            account.locked_until = now + LOCK_FOR
            account.failed_logins = 0
            return None, "locked"
        return None, "bad"
    if not account.active:
        return None, "disabled"
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = now
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = _hasher.hash(password)
    return account, "ok"
