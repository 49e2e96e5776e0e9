"""The zone's database: one async engine and session factory, plus a readiness probe."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from skyfed.db.inline_sqlite import inline_creator


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # hide_parameters: an error's message (logged) never carries the values bound to
        # the statement, which may be password hashes, sealed secrets or tenant metadata.
        kwargs: dict[str, Any] = {
            "echo": echo,
            "pool_pre_ping": not self.is_sqlite,
            "hide_parameters": True,
        }
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                _private_file(Path(self.url.database))
            kwargs["async_creator"] = inline_creator(self.url.database or ":memory:", 30.0)
            # One connection: transactions queue for it in asyncio instead of contending
            # for SQLite's write lock, whose busy handler sleeps in steps of up to 100 ms.
            # So never hold a session open across a network call.
            kwargs.update(pool_size=1, max_overflow=0, pool_timeout=60)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_timeout=10)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise if the database cannot answer a trivial query within `timeout`."""
        async with asyncio.timeout(timeout):
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _private_file(path: Path) -> None:
    """Make the database file readable by its owner only before SQLite opens it (its
    -wal and -shm files take the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers proceed during a write; the busy timeout serialises writers.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
