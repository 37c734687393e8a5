"""SQLite connections for the async engine that cross to their thread once per statement.

SQLAlchemy's aiosqlite adapter makes four calls into aiosqlite's thread for each statement (open a
cursor, execute, fetch the rows, close the cursor), each a wake-up of that thread and of the event loop;
on a busy machine each waits for a CPU, and a message's transaction is a dozen statements. These
connections run the statement and fetch its rows in one call to the connection's own thread and answer
the rest from memory; in a transaction that holds the write lock, not even that (`hold_write_lock`). They speak aiosqlite's interface (what the adapter calls), so the engine is the same
`sqlite+aiosqlite` engine, given these connections through `async_creator`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Cursor:
    """A cursor whose statement ran, and rows were fetched, in one call to the connection's thread."""

    arraysize = 1

    def __init__(self, connection: Connection):
        self._connection = connection
        self.description: Sequence[Any] | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def _ran(self, cursor: sqlite3.Cursor) -> None:
        self.description = cursor.description
        self._rows = cursor.fetchall() if cursor.description else []
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid
        cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        def run(conn: sqlite3.Connection) -> None:
            self._ran(conn.execute(sql, parameters))

        await self._connection.run(run, inline=True)
        return self

    async def executemany(self, sql: str, seq_of_parameters: Any) -> Cursor:
        def run(conn: sqlite3.Connection) -> None:
            self._ran(conn.executemany(sql, seq_of_parameters))

        await self._connection.run(run, inline=True)
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = size or self.arraysize
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def nextset(self) -> None:
        return None

    async def close(self) -> None:
        self._rows = []


class Connection:
    """One sqlite3 connection, used only from its own thread (as aiosqlite does)."""

    def __init__(self, path: str, **kwargs: Any):
        self._path = path
        self._kwargs = kwargs
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        # Set by the holder of the database's write lock for the rest of its transaction (see `hold_write_lock`).
        self.inline = False

    @property
    def _connection(self) -> sqlite3.Connection | None:
        """What SQLAlchemy's adapter checks before a commit or a rollback (aiosqlite's name)."""
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = False) -> T:
        conn = self._conn
        if conn is None:
            raise ValueError("Connection closed")
        if inline and self.inline:
            return fn(conn)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    async def connect(self) -> Connection:
        def open_() -> sqlite3.Connection:
            return sqlite3.connect(self._path, check_same_thread=False, **self._kwargs)

        self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, open_)
        return self

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return await Cursor(self).execute(sql, parameters)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level if self._conn is not None else None

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self.run(lambda conn: conn.create_function(*args, **kwargs))

    async def commit(self) -> None:
        self.inline = False
        await self.run(lambda conn: conn.commit())

    async def rollback(self) -> None:
        self.inline = False
        await self.run(lambda conn: conn.rollback())

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)

    def stop(self) -> None:
        """Close at once (SQLAlchemy terminating a connection it cannot close gracefully)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._executor.submit(conn.close)
        self._executor.shutdown(wait=False)


def hold_write_lock(driver_connection: Any) -> None:
    """The connection's transaction holds the database's write lock: its statements run in the event
    loop's thread until it ends, without the two wake-ups a call to the connection's thread costs.

    They can no longer wait: readers never block the writer in WAL mode, and the writer is this
    transaction. The pipeline's statements are index lookups and inserts of a few rows, shorter than the
    wake-ups they save; the commit (which may wait for the disk) still goes to the thread.
    """
    if isinstance(driver_connection, Connection):
        driver_connection.inline = True


def creator(path: str) -> Callable[[], Any]:
    """The `async_creator` of an engine on the SQLite file `path`."""

    async def connect() -> Connection:
        return await Connection(path).connect()

    return connect
