"""Revoked tokens reach every process of a zone within a second.

Each API process caches resolved tokens for a few seconds (`TokenCache`). A
logout or a deleted user on one process writes a revocation row; every process
follows those rows from housekeeping and drops what they name from its cache,
so a revoked token stops working everywhere, not only where it was revoked.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select

from skyfed.db.base import utcnow
from skyfed.db.engine import Database
from skyfed.identity.models import Revocation
from skyfed.identity.service import TokenCache

KEPT = timedelta(minutes=10)  # far longer than any cache entry lives


class RevocationFeed:
    def __init__(self, db: Database, cache: TokenCache) -> None:
        self.db = db
        self.cache = cache
        self.last_seq: int | None = None

    async def start(self) -> None:
        """Begin after the newest row: the cache is empty, nothing older concerns it."""
        async with self.db.session() as session:
            self.last_seq = int(await session.scalar(select(func.max(Revocation.seq))) or 0)

    async def follow(self) -> int:
        """Apply revocations made since the last call; how many there were."""
        if self.last_seq is None:
            await self.start()
            return 0
        async with self.db.session() as session:
            rows = (
                await session.scalars(
                    select(Revocation)
                    .where(Revocation.seq > self.last_seq)
                    .order_by(Revocation.seq)
                    .limit(10_000)
                )
            ).all()
        for row in rows:
            if row.digest is not None:
                self.cache.forget(row.digest)
            if row.user_id is not None:
                self.cache.forget_user(row.user_id)
            self.last_seq = row.seq
        return len(rows)

    async def prune(self) -> None:
        async with self.db.session() as session:
            await session.execute(delete(Revocation).where(Revocation.revoked_at < utcnow() - KEPT))
            await session.commit()
