"""How many containers each place of this zone holds, for the storage planner."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.objects.models import Container
from skyfed.objects.storage_planner import Place


class PlacedCounts:
    """How many containers each place holds: as the table said at most `TTL` seconds
    ago, plus those this process placed since (the planner's room per container; an
    estimate, so counting them all again on every create is not worth it)."""

    TTL = 10.0

    def __init__(self) -> None:
        self._counts: dict[Place, int] = {}
        self._read_at = -self.TTL

    async def get(self, session: AsyncSession) -> dict[Place, int]:
        if time.monotonic() - self._read_at >= self.TTL:
            where = (Container.cluster_id, Container.child_id)
            rows = await session.execute(select(*where, func.count()).group_by(*where))
            self._counts = {(cluster, child): count for cluster, child, count in rows}
            self._read_at = time.monotonic()
        return self._counts

    def placed(self, place: Place) -> None:
        self._counts[place] = self._counts.get(place, 0) + 1

    def removed(self, place: Place) -> None:
        count = self._counts.get(place, 0)
        if count > 0:
            self._counts[place] = count - 1
