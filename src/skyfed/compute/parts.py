"""What the compute feature keeps for a zone process, and its life in one.

Hosts (their registry, shared with the zone's other processes through the database),
flavors, servers' task kinds, and the agents that carry the hosts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.background import stop
from skyfed.compute import allocations
from skyfed.compute.agent_accounts.book import GrantBook
from skyfed.compute.agent_accounts.service import AgentAccounts
from skyfed.compute.cancels import Cancels
from skyfed.compute.command_wakeups import CommandWakeups
from skyfed.compute.context import ComputeContext
from skyfed.compute.handlers import ServerHandlers
from skyfed.compute.hosts import service as host_service
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.hosts.sharing import HostSharing
from skyfed.compute.metrics import PlacementMetrics
from skyfed.compute.models import SERVERS, Flavor, Server
from skyfed.compute.placement import Placer
from skyfed.core import Core
from skyfed.identity.identities import Identities
from skyfed.settings import FlavorSpec
from skyfed.tasks.engine import TaskEngine
from skyfed.tasks.kinds import Kind
from skyfed.zones.tree import ZoneTree

log = logging.getLogger(__name__)

# Rounds of housekeeping between passes that forget long-gone hosts.
FORGET_EVERY = 60


class ComputeParts:
    def __init__(
        self, core: Core, identities: Identities, tree: ZoneTree, engine: TaskEngine
    ) -> None:
        settings = core.settings
        self.core = core
        self.identities = identities
        self.hosts = HostRegistry(settings.host_ttl, settings.host_forget_after)
        self.ctx = ComputeContext(
            core=core, view=tree.view, hosts=self.hosts, links=tree.links, tasks=engine.store
        )
        self.placer = Placer(self.ctx, PlacementMetrics(core.metrics))
        self.handlers = ServerHandlers(self.ctx)
        self.cancels = Cancels(self.ctx)
        self.sharing = HostSharing(core.db, self.hosts)
        self.grants = GrantBook(core.db)

    def task_kinds(self) -> dict[str, Kind]:
        placer, handlers, cancels = self.placer, self.handlers, self.cancels
        return {
            "place": Kind(
                placer.run, give_up=placer.give_up, cancel=cancels.place, retry=placer.retried
            ),
            "action": Kind(handlers.action, give_up=handlers.action_gave_up, cancel=cancels.action),
            "delete": Kind(handlers.delete, give_up=handlers.delete_gave_up, cancel=cancels.delete),
        }

    async def child_removed(self, session: AsyncSession, child_id: str) -> None:
        """Forget the servers placed in a child removed by force (they live on only there)."""
        await session.execute(delete(Server).where(Server.id.in_(SERVERS.in_child(child_id))))

    @asynccontextmanager
    async def lifespan(self, api: bool) -> AsyncIterator[None]:
        await self._bootstrap()
        background = [asyncio.create_task(self._housekeeping(), name="housekeeping")]
        settings = self.core.settings
        if settings.bus_url.startswith("amqp"):
            told = CommandWakeups(settings.bus_url, settings.name, self.ctx.signals)
            background.append(asyncio.create_task(told.run(), name="command-wakeups"))
        try:
            yield
        finally:
            await stop(background)

    async def _bootstrap(self) -> None:
        settings = self.core.settings
        # Know the hosts other processes heard from (and who carries them) first.
        await self.sharing.share()
        async with self.core.db.session() as session:
            if settings.agent_username and settings.agent_password:
                if not settings.agent_hosts:
                    log.warning(
                        "the settings agent carries no host until agent_hosts names some",
                        extra={"agent": settings.agent_username},
                    )
                identity = self.identities.service(session)
                await AgentAccounts(
                    session, identity, self.hosts, self.grants, settings.agent_username
                ).configure(
                    settings.agent_username,
                    settings.agent_password.get_secret_value(),
                    list(settings.agent_hosts),
                    settings.agent_max_hosts,
                )
            await host_service.load_disabled(session, self.hosts)
            await self._seed_flavors(session)
            self.hosts.set_allocations(await allocations.load(session))

    async def _seed_flavors(self, session: AsyncSession) -> None:
        """The configured flavors exist in the database; all of them count in summaries."""
        known = {f.name for f in (await session.scalars(select(Flavor))).all()}
        for spec in self.core.settings.flavors:
            if spec.name not in known:
                session.add(
                    Flavor(
                        name=spec.name, vcpus=spec.vcpus, ram_mb=spec.ram_mb, disk_gb=spec.disk_gb
                    )
                )
        await session.commit()
        flavors = (await session.scalars(select(Flavor))).all()
        self.ctx.set_flavors(
            {
                f.name: FlavorSpec(name=f.name, vcpus=f.vcpus, ram_mb=f.ram_mb, disk_gb=f.disk_gb)
                for f in flavors
            }
        )

    async def _housekeeping(self) -> None:
        """Share host beats with the zone's other processes, pick up their disables and
        claims, and forget long-gone hosts."""
        settings = self.core.settings
        interval = settings.host_share_interval or min(1.0, settings.host_ttl / 5)
        rounds = 0
        while True:
            await asyncio.sleep(interval)
            rounds += 1
            try:
                await self.sharing.share()
                async with self.core.db.session() as session:
                    await host_service.load_disabled(session, self.hosts)
                    mark = self.hosts.allocation_changes
                    self.hosts.set_allocations(await allocations.load(session), read_after=mark)
                if rounds % FORGET_EVERY == 0:
                    self.hosts.expire()
                    await self.sharing.forget(settings.host_forget_after)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed")
