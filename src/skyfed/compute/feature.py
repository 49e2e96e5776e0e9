"""The compute feature: flavors, servers, hosts and the agents that carry them."""

from __future__ import annotations

from skyfed.compute.agent_accounts.api import router as agent_accounts_router
from skyfed.compute.agent_api import router as agents_router
from skyfed.compute.api import router as servers_router
from skyfed.compute.hosts.api import router as hosts_router
from skyfed.compute.parts import ComputeParts
from skyfed.features import Feature


def feature(parts: ComputeParts) -> Feature:
    return Feature(
        name="compute",
        # Servers before zones: /v1/zones/locate is not a zone id.
        routers=[servers_router, hosts_router, agents_router, agent_accounts_router],
        task_kinds=parts.task_kinds(),
        summary_sections=[parts.ctx.section],
        lifespan=parts.lifespan,
        child_removed=parts.child_removed,
        provides=[parts],
    )
