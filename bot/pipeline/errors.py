"""Telling a database that is away (retry later) from a bug (retrying cannot help)."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, TimeoutError as PoolTimeout


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached now (down, restarting, connection lost)."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, OSError, asyncio.TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        # asyncpg's "the database system is starting up / shutting down" and lost connections. SQLAlchemy
        # wraps asyncpg's error in its own `Error`: its SQLSTATE tells (class 08: connection exception;
        # 57P01-57P03: shut down, crashed, starting up), and the original is its cause.
        if str(getattr(exc.orig, "sqlstate", None) or "").startswith(("08", "57P01", "57P02", "57P03")):
            return True
        inner = exc.orig.__cause__ if exc.orig is not None and exc.orig.__cause__ is not None else exc.orig
        name = type(inner).__name__ if inner is not None else ""
        return name in {"CannotConnectNowError", "ConnectionDoesNotExistError", "AdminShutdownError", "ConnectionFailureError"} or (
            "connection" in str(exc.orig).lower() and "closed" in str(exc.orig).lower()
        )
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and isinstance(cause, (OSError, ConnectionError))
