"""The SQLite database: one aiosqlite connection, the migration runner, small query helpers.

Every statement goes through `Database`, always with parameters. A single lock
serialises access to the connection so that one coroutine's transaction never
sees, or is interleaved with, another's statements. A database held by another
process for longer than the busy timeout is reported as the domain's ServerBusy.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiosqlite

from .errors import ServerBusy
from .owner_only import create_owner_only_file, owner_only_directory

log = logging.getLogger(__name__)

# The repository's migrations/ folder; the project is installed in editable mode.
MIGRATIONS_DIR: Final = Path(__file__).resolve().parents[2] / "migrations"
BUSY_TIMEOUT_MS: Final = 5000

Row = aiosqlite.Row


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def to_db_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times must carry a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_db_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class Transaction:
    """Statements inside `Database.transaction()`; committed together or not at all."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement; returns the new row id for an INSERT."""
        cursor = await self._conn.execute(sql, tuple(params))
        return cursor.lastrowid or 0

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(r) for r in rows])

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())


class Database:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        # aiosqlite logs every statement with its parameters (names, emails, phones)
        # at debug level: keep that out of the server's log at any log level.
        logging.getLogger("aiosqlite").setLevel(logging.INFO)
        owner_only_directory(path.parent)
        # SQLite gives its -wal, -shm and -journal files the database file's mode.
        create_owner_only_file(path)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock:
            with _busy_as_server_busy():
                try:
                    # IMMEDIATE takes the write lock now, so a concurrent writer (the CLI)
                    # waits on busy_timeout instead of failing half-way.
                    await self._conn.execute("BEGIN IMMEDIATE")
                    yield Transaction(self._conn)
                except BaseException:
                    # Also when cancelled while BEGIN was still queued: the rollback runs
                    # after it on the connection's thread, and is a no-op without one.
                    await self._conn.rollback()
                    raise
                await self._conn.commit()

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        async with self._lock:
            with _busy_as_server_busy():
                return await Transaction(self._conn).fetchone(sql, params)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        async with self._lock:
            with _busy_as_server_busy():
                return await Transaction(self._conn).fetchall(sql, params)

    async def migrate(self, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
        """Apply the numbered .sql files not yet recorded; returns the names applied."""
        async with self._lock:
            with _busy_as_server_busy():
                await self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
        applied = {row["name"] for row in await self.fetchall("SELECT name FROM schema_migrations")}
        done = []
        for path in migration_files(migrations_dir):
            if path.name in applied:
                continue
            async with self.transaction() as tx:
                for statement in _split_statements(path.read_text(encoding="utf-8")):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                    (path.name, to_db_time(utc_now())),
                )
            log.info("applied migration %s", path.name)
            done.append(path.name)
        return done


@contextmanager
def _busy_as_server_busy() -> Iterator[None]:
    """SQLite's answer when another connection (a backup tool, a second server) holds
    the database past the busy timeout becomes ServerBusy: what was begun is rolled
    back, and the request may be sent again."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        # The primary result code; an extended one (SQLITE_BUSY_SNAPSHOT...) adds bits above.
        if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise ServerBusy() from exc
        raise


def migration_files(migrations_dir: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(migrations_dir.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def _split_statements(script: str) -> list[str]:
    """Split a migration into statements, so each runs inside our own transaction
    (sqlite3's executescript would commit first)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError("migration ends inside a statement")
    return statements
