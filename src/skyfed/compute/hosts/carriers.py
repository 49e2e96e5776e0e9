"""Who carries a host, as the zone's database says, and how a host changes hands.

A host is carried by the agent its first accepted beat named, for as long as its
shared row (`host_beats`, see sharing.py) names that agent: until an admin
releases it (`POST /v1/hosts/{name}/release`), the agent is deleted, or its grant
no longer covers the host (both release it), or the host is forgotten after
`host_forget_after` of silence. Meanwhile a beat naming another agent is refused
(409). A released host goes on as it was (online until its `host_ttl` passes)
and is carried by the next agent granted for it that beats; that agent takes the
host's pending commands along, so work queued for the old agent is not lost.

Each process keeps the carrier in its registry for the fast path; the row is the
truth where the two may differ (another process took or released the host less
than a share interval ago).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.compute.commands import PENDING
from skyfed.compute.hosts.models import HostBeat
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.models import HostCommand

NO_SYNC = {"synchronize_session": False}  # bulk statements: no ORM objects to keep in step
CHUNK = 1000  # names per IN (...) list


async def holders(session: AsyncSession, names: Sequence[str]) -> dict[str, str]:
    """The agents the shared rows of these hosts name (hosts carried by nobody left out)."""
    found: dict[str, str] = {}
    for start in range(0, len(names), CHUNK):
        rows = await session.execute(
            select(HostBeat.name, HostBeat.agent).where(
                HostBeat.name.in_(names[start : start + CHUNK]), HostBeat.agent.is_not(None)
            )
        )
        found.update({name: agent for name, agent in rows if agent is not None})
    return found


async def reconcile(session: AsyncSession, registry: HostRegistry, names: Sequence[str]) -> None:
    """Take the carriers of these hosts from their shared rows, where this process may
    be behind (a release or a take elsewhere). A host whose beat reached only this
    process since the last share keeps what this process knows: its row is older."""
    ask = sorted(n for n in names if n not in registry.unshared)
    if not ask:
        return
    shared = await holders(session, ask)
    for name in ask:
        registry.set_carrier(name, shared.get(name))


async def release(
    session: AsyncSession,
    registry: HostRegistry,
    *,
    names: Sequence[str] | None = None,
    agent: str | None = None,
) -> None:
    """Release hosts (by name, or all those `agent` carries): carried by nobody until
    the next granted agent beats. Commits."""
    statement = update(HostBeat).where(HostBeat.agent.is_not(None)).execution_options(**NO_SYNC)
    if agent is not None:
        statement = statement.where(HostBeat.agent == agent)
    if names is None:
        await session.execute(statement.values(agent=None))
        local = registry.names_carried_by(agent) if agent is not None else []
    else:
        local = list(names)
        for start in range(0, len(names), CHUNK):
            chunk = list(names[start : start + CHUNK])
            await session.execute(statement.where(HostBeat.name.in_(chunk)).values(agent=None))
    await session.commit()
    for name in local:
        if agent is None or registry.carrier(name) == agent:
            registry.set_carrier(name, None)


async def take_commands(session: AsyncSession, hosts: Sequence[str], agent: str) -> int:
    """The pending commands of hosts `agent` now carries go to it. Commits."""
    moved = 0
    for start in range(0, len(hosts), CHUNK):
        result = await session.execute(
            update(HostCommand)
            .where(
                HostCommand.host.in_(hosts[start : start + CHUNK]),
                HostCommand.state == PENDING,
                HostCommand.agent != agent,
            )
            .values(agent=agent)
            .execution_options(**NO_SYNC)
        )
        moved += int(getattr(result, "rowcount", 0) or 0)
    await session.commit()
    return moved


async def carried_names(session: AsyncSession, registry: HostRegistry, agent: str) -> list[str]:
    """The hosts `agent` carries, as the shared rows and this process's registry say."""
    rows = await session.scalars(select(HostBeat.name).where(HostBeat.agent == agent))
    return sorted(set(rows.all()) | set(registry.names_carried_by(agent)))
