"""SQLite for SQLAlchemy's asyncio engine, run on the event loop's own thread.

aiosqlite runs every call (open a cursor, execute, fetch, close, commit) on a
helper thread and wakes the event loop for each answer. A zone makes its
statements on one connection (see `engine.py`), and each takes SQLite tens of
microseconds on a local file, so those hand-offs cost more than the work:
profiled under load they were about a third of a zone's CPU. This module gives
SQLAlchemy's `sqlite+aiosqlite` dialect a connection with the same awaitable
methods that runs them at once, on the loop's thread.

What it gives up: while another process holds SQLite's write lock, a statement
here waits on the busy handler without yielding to the loop. Zones on SQLite run
one process per database (skyfed up); several processes sharing a zone belong on
PostgreSQL, which this does not touch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    async def nextset(self) -> None:
        return None

    async def close(self) -> None:
        self._cursor.close()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()


class InlineConnection:
    """The parts of `aiosqlite.Connection` that SQLAlchemy's adapter calls."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn  # the adapter checks it is open

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        # SQLAlchemy enters it with `async with`, as it does aiosqlite's cursor.
        return InlineCursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        return InlineCursor(self._conn.execute(sql, parameters))

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def inline_creator(path: str, timeout: float) -> Any:
    """An `async_creator` for `create_async_engine` opening `path` inline."""

    async def connect() -> InlineConnection:
        # Opened and used on the loop's thread only; SQLAlchemy may close it from
        # another thread at interpreter exit, which is harmless for a closed file.
        conn = sqlite3.connect(
            path,
            timeout=timeout,
            check_same_thread=False,
            uri=path.startswith("file:"),
        )
        return InlineConnection(conn)

    return connect
