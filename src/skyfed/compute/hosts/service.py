"""Host logic: heartbeats into the registry (once admitted), listing, disable/enable,
and handing a host to another agent."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.compute.hosts import admission, carriers
from skyfed.compute.hosts.admission import BeatLimits, Caller
from skyfed.compute.hosts.models import DisabledHost, HostBeat
from skyfed.compute.hosts.registry import HostRecord, HostRegistry, Resources
from skyfed.compute.hosts.schemas import (
    HeartbeatBatchIn,
    HeartbeatBatchOut,
    HeartbeatIn,
    HostList,
    HostOut,
    ReleaseOut,
    ResourcesIn,
    ResourcesOut,
)
from skyfed.db.engine import Database
from skyfed.errors import NotFound

Beats = Sequence[tuple[str, HeartbeatIn]]


def _resources(body: ResourcesIn) -> Resources:
    return Resources(body.vcpus, body.ram_mb, body.disk_gb)


def host_out(registry: HostRegistry, record: HostRecord) -> HostOut:
    r, u, f, a = record.resources, record.used, record.free, record.allocated
    return HostOut(
        name=record.name,
        state="online" if registry.is_online(record) else "offline",
        disabled=record.disabled,
        disabled_reason=record.disabled_reason,
        capabilities=record.capabilities,
        resources=ResourcesOut(vcpus=r.vcpus, ram_mb=r.ram_mb, disk_gb=r.disk_gb),
        used=ResourcesOut(vcpus=u.vcpus, ram_mb=u.ram_mb, disk_gb=u.disk_gb),
        allocated=ResourcesOut(vcpus=a[0], ram_mb=a[1], disk_gb=a[2]),
        free=ResourcesOut(vcpus=f[0], ram_mb=f[1], disk_gb=f[2]),
        agent=record.agent,
        last_seen=record.seen_at,
    )


async def take_beats(
    db: Database,
    registry: HostRegistry,
    limits: BeatLimits,
    caller: Caller,
    beats: Beats,
    wake: Callable[[str], None],
) -> list[HostRecord]:
    """Admit a batch of beats whole (admission.py) and apply it; or refuse it whole,
    changing nothing. `wake(agent)` is called when the batch brought the agent
    pending commands of hosts it took over."""
    screened = admission.screen(registry, limits, caller, beats)
    if screened.contested:
        async with db.session() as session:
            await carriers.reconcile(session, registry, list(screened.contested))
        # Screened again after the wait: what is contested now is carried by another.
        screened = admission.screen(registry, limits, caller, beats)
        admission.refuse_carried(screened.contested)
    taken = admission.check_caps(registry, limits, caller, screened.agent, [n for n, _ in beats])
    records = apply_beats(registry, beats, screened.agent)
    if taken and screened.agent is not None:
        async with db.session() as session:
            if await carriers.take_commands(session, taken, screened.agent):
                wake(screened.agent)
    return records


def apply_beats(registry: HostRegistry, beats: Beats, agent: str | None) -> list[HostRecord]:
    """Beats into the registry, unchecked (admitted ones; benchmarks fill registries so)."""
    return [
        registry.heartbeat(
            name, beat.capabilities, _resources(beat.resources), _resources(beat.used), agent
        )
        for name, beat in beats
    ]


def apply_batch(registry: HostRegistry, body: HeartbeatBatchIn) -> None:
    for beat in body.hosts:
        apply_beats(registry, [(beat.name, beat)], beat.agent)


def batch_out(records: list[HostRecord]) -> HeartbeatBatchOut:
    return HeartbeatBatchOut(
        accepted=len(records), disabled=[r.name for r in records if r.disabled]
    )


async def release_host(db: Database, registry: HostRegistry, name: str) -> ReleaseOut:
    """Hand a host over: no agent carries it until the next one granted for it beats."""
    async with db.session() as session:
        row = await session.get(HostBeat, name)
        if row is None and registry.get(name) is None:
            raise NotFound(f"host '{name}' is not known (it has not sent a heartbeat)")
        previous = (row.agent if row is not None else None) or registry.carrier(name)
        await carriers.release(session, registry, names=[name])
    return ReleaseOut(name=name, released_from=previous)


def list_hosts(
    registry: HostRegistry, state: str | None, limit: int, marker: str | None
) -> HostList:
    names = registry.sorted_names()
    start = bisect.bisect_right(names, marker) if marker is not None else 0
    page: list[HostRecord] = []
    more = False
    for name in names[start:]:
        record = registry.get(name)
        if record is None or (
            state is not None and registry.is_online(record) != (state == "online")
        ):
            continue
        if len(page) == limit:
            more = True
            break
        page.append(record)
    next_marker = page[-1].name if more else None
    return HostList(hosts=[host_out(registry, r) for r in page], next_marker=next_marker)


def get_host(registry: HostRegistry, name: str) -> HostOut:
    record = registry.get(name)
    if record is None:
        raise NotFound(f"host '{name}' is not known (it has not sent a heartbeat)")
    return host_out(registry, record)


async def load_disabled(session: AsyncSession, registry: HostRegistry) -> None:
    rows = (await session.scalars(select(DisabledHost))).all()
    registry.load_disabled({row.name: row.reason for row in rows})


async def set_disabled(
    session: AsyncSession,
    registry: HostRegistry,
    name: str,
    disabled: bool,
    *,
    reason: str = "",
    by: str = "",
) -> HostOut:
    if not registry.known(name):
        raise NotFound(f"host '{name}' is not known (it has not sent a heartbeat)")
    row = await session.get(DisabledHost, name)
    if disabled:
        if row is None:
            session.add(DisabledHost(name=name, reason=reason, disabled_by=by))
        else:
            row.reason, row.disabled_by = reason, by
    elif row is not None:
        await session.delete(row)
    await session.commit()
    registry.set_disabled(name, disabled, reason)
    return get_host(registry, name) if registry.get(name) else _placeholder(name, disabled, reason)


def _placeholder(name: str, disabled: bool, reason: str) -> HostOut:
    """A host known only by its persisted disable (it has not beaten since this start)."""
    empty = ResourcesOut(vcpus=0, ram_mb=0, disk_gb=0)
    return HostOut(
        name=name,
        state="offline",
        disabled=disabled,
        disabled_reason=reason if disabled else "",
        capabilities={},
        resources=empty,
        used=empty,
        allocated=empty,
        free=empty,
        last_seen=None,
    )
