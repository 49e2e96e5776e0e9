"""Agents' grants as this process reads them, each kept for a moment.

Every heartbeat batch needs its agent's grant; reading it from the database for
each would cost a query per batch. A grant is kept `ttl` seconds (2 by default):
a change made through this process applies at once (the service forgets the
entry), one made through another process of the zone within `ttl`. A deleted
agent's tokens stop at once anyway (its account goes, and revocations reach every
process within a second).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select

from skyfed.compute.agent_accounts.models import AgentGrant
from skyfed.compute.hosts.grants import HostGrant
from skyfed.db.engine import Database


def grant_of(row: AgentGrant | None) -> HostGrant:
    """The grant a row says; no row: one covering nothing (an agent made otherwise)."""
    if row is None:
        return HostGrant.of((), 0)
    return HostGrant.of(row.hosts, row.max_hosts)


class GrantBook:
    def __init__(
        self,
        db: Database,
        ttl: float = 2.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[HostGrant, float]] = {}

    async def get(self, agent: str) -> HostGrant:
        hit = self._entries.get(agent)
        now = self.clock()
        if hit is not None and hit[1] > now:
            return hit[0]
        async with self.db.session() as session:
            row = await session.scalar(select(AgentGrant).where(AgentGrant.name == agent))
        grant = grant_of(row)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[agent] = (grant, now + self.ttl)
        return grant

    def forget(self, agent: str) -> None:
        self._entries.pop(agent, None)
