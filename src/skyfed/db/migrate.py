"""Runs Alembic migrations at start; concurrent starters on PostgreSQL take turns."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from skyfed.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number: the advisory lock that serialises migrations across processes.
_MIGRATION_LOCK = 0x5C1F_ED01


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def upgrade(db: Database) -> None:
    async with db.engine.begin() as conn:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        await conn.run_sync(_upgrade)
