"""Host routes: heartbeats from agents (and admins), listing, disable/enable and release (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from skyfed.compute.hosts import service
from skyfed.compute.hosts.admission import BeatLimits, Caller
from skyfed.compute.hosts.registry import HostRecord
from skyfed.compute.hosts.schemas import (
    DisableIn,
    HeartbeatBatchIn,
    HeartbeatBatchOut,
    HeartbeatIn,
    HostList,
    HostOut,
    ReleaseOut,
)
from skyfed.identity.deps import AdminDep, ReporterDep
from skyfed.identity.principal import Principal
from skyfed.runtime import Runtime, RuntimeDep, SessionDep
from skyfed.settings import NAME_PATTERN

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])
HostName = Annotated[str, Path(pattern=NAME_PATTERN)]


async def _take(runtime: Runtime, principal: Principal, beats: service.Beats) -> list[HostRecord]:
    caller = Caller(principal.username, None)
    if principal.is_agent:  # its own grant, even if it also held another role
        caller = Caller(principal.username, await runtime.grants.get(principal.username))
    return await service.take_beats(
        runtime.db,
        runtime.hosts,
        BeatLimits.of(runtime.settings),
        caller,
        beats,
        runtime.compute.signals.new_command,
    )


@router.put("", response_model=HeartbeatBatchOut)
async def heartbeat_batch(
    body: HeartbeatBatchIn, principal: ReporterDep, runtime: RuntimeDep
) -> HeartbeatBatchOut:
    """Heartbeats of many hosts at once, taken or refused whole (docs/compute.md)."""
    records = await _take(runtime, principal, [(beat.name, beat) for beat in body.hosts])
    return service.batch_out(records)


@router.put("/{name}", response_model=HostOut)
async def heartbeat(
    name: HostName, body: HeartbeatIn, principal: ReporterDep, runtime: RuntimeDep
) -> HostOut:
    [record] = await _take(runtime, principal, [(name, body)])
    return service.host_out(runtime.hosts, record)


@router.get("", response_model=HostList)
async def list_hosts(
    _: AdminDep,
    runtime: RuntimeDep,
    state: Literal["online", "offline"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    marker: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> HostList:
    return service.list_hosts(runtime.hosts, state, limit, marker)


@router.get("/{name}", response_model=HostOut)
async def get_host(name: HostName, _: AdminDep, runtime: RuntimeDep) -> HostOut:
    return service.get_host(runtime.hosts, name)


@router.post("/{name}/disable", response_model=HostOut)
async def disable_host(
    name: HostName,
    principal: AdminDep,
    runtime: RuntimeDep,
    session: SessionDep,
    body: DisableIn | None = None,
) -> HostOut:
    reason = body.reason if body else ""
    return await service.set_disabled(
        session, runtime.hosts, name, True, reason=reason, by=principal.username
    )


@router.post("/{name}/enable", response_model=HostOut)
async def enable_host(
    name: HostName, _: AdminDep, runtime: RuntimeDep, session: SessionDep
) -> HostOut:
    return await service.set_disabled(session, runtime.hosts, name, False)


@router.post("/{name}/release", response_model=ReleaseOut)
async def release_host(name: HostName, _: AdminDep, runtime: RuntimeDep) -> ReleaseOut:
    """Hand a host over: no agent carries it until the next one granted for it beats
    (that one takes its pending commands)."""
    return await service.release_host(runtime.db, runtime.hosts, name)
