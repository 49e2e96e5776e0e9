"""A migrated database (SQLite and PostgreSQL) without a zone around it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from skyfed.db.engine import Database
from skyfed.db.migrate import upgrade


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await upgrade(database)  # a copy of a migrated template: nothing left to do
    yield database
    await database.dispose()
