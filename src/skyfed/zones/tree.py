"""What the zones feature keeps for a zone process: its id, child links, view and poller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.background import stop
from skyfed.core import Core
from skyfed.transport.observed import LinkMetrics
from skyfed.zones.links import ChildLinks
from skyfed.zones.metrics import ZoneMetrics
from skyfed.zones.models import ZoneIdentity
from skyfed.zones.poller import Poller
from skyfed.zones.reach_policy import parse_patterns
from skyfed.zones.report import ChildState, ZoneReport
from skyfed.zones.service import ZoneContext
from skyfed.zones.view import ZoneView


class ZoneTree:
    def __init__(self, core: Core) -> None:
        settings = core.settings
        self.core = core
        self.view = ZoneView(settings.summary_max_age)
        self.links = ChildLinks(
            core.vault,
            settings.poll_timeout,
            origin=settings.name,
            max_answer_bytes=settings.max_child_answer_bytes,
            http_transport=settings.link_http_transport,
            metrics=LinkMetrics(core.metrics),
            tracing=core.tracing,
        )
        self.poller = Poller(
            core.db,
            self.links,
            self.view,
            interval=settings.poll_interval,
            timeout=settings.poll_timeout,
            failures=settings.poll_failures,
            concurrency=settings.poll_concurrency,
            metrics=ZoneMetrics(core.metrics, self.view, self.links),
        )
        self.allowed_child_hosts = parse_patterns(settings.allowed_child_hosts)
        # Filled as the zone is composed: each feature's forgetting of a removed child.
        self.child_removed: list[Callable[[AsyncSession, str], Awaitable[None]]] = []

    def report(self) -> ZoneReport:
        """What this zone says of itself when its parent polls it."""
        summary, built_at = self.view.summary()
        settings = self.core.settings
        children = sorted(self.view.children.values(), key=lambda c: c.name)
        return ZoneReport(
            self.core.zone_id,
            settings.name,
            dict(settings.capabilities),
            summary,
            self.view.unreachable(),
            tuple(ChildState(c.id, c.name, c.state, c.summary.hosts) for c in children),
            built_at,
        )

    def context(self) -> ZoneContext:
        settings = self.core.settings
        return ZoneContext(
            zone_id=self.core.zone_id,
            vault=self.core.vault,
            links=self.links,
            view=self.view,
            probe_timeout=settings.poll_timeout,
            allowed_hosts=self.allowed_child_hosts,
            child_removed=tuple(self.child_removed),
        )

    @asynccontextmanager
    async def lifespan(self, api: bool) -> AsyncIterator[None]:
        """Know this zone's id, then poll children (API process) or follow what the API
        process records of them (worker-only process)."""
        await self._identify()
        await self.poller.load()
        polling = asyncio.create_task(self.poller.run_forever(follow_only=not api), name="poller")
        try:
            yield
        finally:
            await stop([polling])
            await self.poller.close()
            await self.links.close()

    async def _identify(self) -> None:
        async with self.core.db.session() as session:
            zone = await session.scalar(select(ZoneIdentity))
            if zone is None:
                zone = ZoneIdentity(name=self.core.settings.name)
                session.add(zone)
            zone.name = self.core.settings.name
            await session.commit()
            self.core.zone_id = zone.id
