"""The database handle: an async engine, sessions, and per-conversation locks."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from weakref import WeakValueDictionary

from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage import sqlite_driver
from storage.migrate import ensure_sqlite_dir, upgrade


# Statements and transactions this process sent (for /metrics and the load benchmark's per-update counts).
STATS = {"statements": 0, "transactions": 0}


def _count_statement(*_args) -> None:
    STATS["statements"] += 1


def _count_transaction(conn, *_args) -> None:
    # Autocommit sessions "begin" without a BEGIN sent: not a transaction of the database.
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        STATS["transactions"] += 1


def advisory_key(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


class Database:
    """An engine plus the locks that serialise the messages of one conversation."""

    def __init__(self, url: str, *, echo: bool = False, reply_before_flush: bool = False):
        self.url = url
        # Receiving transactions commit without waiting for the disk; what they acknowledge waits for
        # `flushed()` instead (`CCCD_PIPELINE_REPLY_BEFORE_FLUSH`, see docs/pipeline.md).
        self.reply_before_flush = reply_before_flush
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._flush_task: asyncio.Task | None = None
        ensure_sqlite_dir(url)
        # No pool_pre_ping: it costs a round trip per checkout. A connection the server dropped fails its
        # first statement; SQLAlchemy then discards the pool's stale connections, and the pipeline
        # retries once or answers "try again" (see bot/pipeline/receiving.py).
        # LIFO: the connection used last is used next, so the few a process needs at a time stay warm
        # (statements prepared, types known) instead of every pooled connection preparing everything.
        kwargs = {"pool_size": 10, "max_overflow": 20} if url.startswith("postgresql") else {}
        if ":memory:" not in url:
            kwargs["pool_use_lifo"] = True
        if url.startswith("postgresql+asyncpg"):
            # Statements of batches of different sizes are different statements to prepare: keep more
            # of them prepared than asyncpg's 100, so a connection does not prepare them again and again.
            kwargs["connect_args"] = {"prepared_statement_cache_size": 500}
        if url.startswith("sqlite+aiosqlite:///") and "?" not in url:
            # One call to the connection's thread per statement instead of aiosqlite's four.
            kwargs["async_creator"] = sqlite_driver.creator(make_url(url).database or ":memory:")
        # Errors never carry the values of a statement: they are what people typed (names, numbers).
        self.engine: AsyncEngine = create_async_engine(url, echo=echo, hide_parameters=True, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            if reply_before_flush:
                # In WAL mode a commit then writes the WAL without syncing it: safe if the process dies
                # (the operating system has the data), on disk at `flushed()` or the next checkpoint.
                event.listen(self.engine.sync_engine, "connect", _sqlite_synchronous_normal)
        # PostgreSQL backend pids of this process's own connections: the sender skips the NOTIFY of
        # commits it was handed directly (bot/pipeline/sending.py).
        self.backend_pids: set[int] = set()
        if not self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", self._note_backend)
            event.listen(self.engine.sync_engine, "close", self._forget_backend)
        event.listen(self.engine.sync_engine, "before_cursor_execute", _count_statement)
        event.listen(self.engine.sync_engine, "begin", _count_transaction)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit_sessions = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        # SQLite has one writer: this process's writers queue here rather than in SQLite's busy handler,
        # which sleeps in growing steps (up to 100 ms) and turns contention into seconds of latency.
        self._writer = asyncio.Lock()

    def _note_backend(self, dbapi_connection, record) -> None:
        pid = getattr(getattr(dbapi_connection, "driver_connection", None), "get_server_pid", lambda: None)()
        if pid is not None:
            record.info["backend_pid"] = pid
            self.backend_pids.add(pid)

    def _forget_backend(self, _dbapi_connection, record) -> None:
        self.backend_pids.discard(record.info.pop("backend_pid", None))

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    async def migrate(self) -> None:
        await upgrade(self.url)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Yield a session inside one transaction; commit on success, roll back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncSession]:
        """A session whose statements commit one by one, for work that is one statement at a time (the
        sender's scans and marks): on PostgreSQL without BEGIN and COMMIT, two round trips fewer each;
        on SQLite a writing transaction."""
        if self.is_sqlite:
            async with self.writing() as session:
                yield session
            return
        async with self._autocommit_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A transaction that writes: on SQLite it waits for this process's other writers first."""
        if not self.is_sqlite:
            async with self.transaction() as session:
                yield session
            return
        async with self._writer:
            async with self.transaction() as session:
                yield session

    async def flushed(self) -> None:
        """Return once everything this process committed before the call is on disk.

        With `reply_before_flush` a receiving transaction's COMMIT returns as soon as it is visible (its
        replies can go out), and the platform's delivery is acknowledged only after this: a crash of the
        database server (not of this process, not a restart) can then lose no acknowledged delivery, only
        repeat the replies of the last moments, handled again when the platform delivers once more.
        Callers arriving together share one flush: PostgreSQL — a statement committed with
        `synchronous_commit` on, whose flush covers every WAL record before its own; SQLite — an
        fdatasync of the WAL file, in a thread. Raises when the database cannot be reached.
        """
        if not self.reply_before_flush:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._flush_waiters.append(waiter)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = loop.create_task(self._flush_rounds())
        await waiter

    async def _flush_rounds(self) -> None:
        # Those who arrive during a flush wait for the next one: theirs may have committed after it began.
        while self._flush_waiters:
            waiters, self._flush_waiters = self._flush_waiters, []
            try:
                await self._flush_once()
            except BaseException as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc if isinstance(exc, Exception) else ConnectionError("shutting down"))
                if not isinstance(exc, Exception):
                    for waiter in self._flush_waiters:
                        if not waiter.done():
                            waiter.set_exception(ConnectionError("shutting down"))
                    self._flush_waiters = []
                    raise
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _flush_once(self) -> None:
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                await asyncio.to_thread(_sync_file, f"{path}-wal")
            return
        async with self._autocommit_sessions() as session, session.begin():
            # A transaction id makes a commit record, and its flush takes every earlier record with it.
            await session.execute(_PG_FLUSH)

    @asynccontextmanager
    async def locked(self, key: str, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """Yield a transaction holding the lock of `key` in this process and, on PostgreSQL, across processes.

        With `write`, on SQLite the transaction takes the database's write lock at once, which is
        what serialises other processes there; callers that open further transactions inside the
        lock (a mutex around several transactions) must not ask for it, or they would wait on themselves.
        """
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            async with self.writing() if write else self.transaction() as session:
                await self._take_locks(session, [key], write)
                yield session

    @asynccontextmanager
    async def locked_many(self, keys: Iterable[str], *, by_first_statement: bool = False) -> AsyncIterator[AsyncSession]:
        """Yield a writing transaction holding the locks of all `keys` across processes (as `locked` with
        `write` does for one). Not this process's own per-key locks: the caller orders its work itself.

        With `by_first_statement`, on PostgreSQL the caller's first statement takes the locks itself (one
        round trip fewer: `deliveries.take_many` with `locks=advisory_keys(keys)`); SQLite's write lock is
        taken here either way. The caller's statements must be short (a message's handling): on SQLite they
        run in the event loop's thread once the write lock is held (storage/sqlite_driver.py).
        """
        async with self.writing() as session:
            if self.is_sqlite or not by_first_statement:
                await self._take_locks(session, keys, True)
            if self.is_sqlite:
                raw = await (await session.connection()).get_raw_connection()
                sqlite_driver.hold_write_lock(raw.driver_connection)
            yield session

    @staticmethod
    def advisory_keys(keys: Iterable[str]) -> list[int]:
        """PostgreSQL's advisory lock numbers of `keys`, in the one order every transaction takes them in."""
        return sorted({advisory_key(key) for key in keys})

    async def _take_locks(self, session: AsyncSession, keys: Iterable[str], write: bool) -> None:
        if self.is_sqlite:
            if write:
                # SQLite has no advisory lock, and its transactions begin at the first write:
                # a no-op write takes the database's write lock now, before anything is read,
                # so a second process waits (busy_timeout) instead of saving over our changes.
                await session.execute(_SQLITE_WRITE_LOCK)
            return
        # In one order (the keys' numbers), so that transactions taking several never wait in a cycle.
        await session.execute(_PG_LOCKS, {"keys": self.advisory_keys(keys)})


_PG_FLUSH = text("SELECT pg_current_xact_id()")


def _sync_file(path: str) -> None:
    import os

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return  # no WAL yet, or checkpointed and removed: what it held is in the database file, synced
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


_SQLITE_WRITE_LOCK = text("UPDATE conversation_states SET channel = channel WHERE 0")
_PG_LOCKS = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS BIGINT[])) AS k")


def _sqlite_synchronous_normal(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
