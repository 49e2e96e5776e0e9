"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from skyfed.db.engine import Database
from skyfed.db.metadata import metadata
from skyfed.db.migrate import upgrade


async def test_migrated_schema_matches_the_models(empty_database_url: str) -> None:
    """From an empty database (the other tests' databases are copies of one migrated once)."""

    def diff(connection) -> list:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)

    db = Database(empty_database_url)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(diff) != []  # empty: every table is missing
        await upgrade(db)
        async with db.engine.connect() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await db.dispose()
    assert differences == []
