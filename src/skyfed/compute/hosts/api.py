"""Host routes: heartbeats from agents (and admins), listing, disable/enable and release (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from skyfed.compute.deps import PartsDep
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
from skyfed.compute.parts import ComputeParts
from skyfed.core import SessionDep
from skyfed.identity.deps import AdminDep, ReporterDep
from skyfed.identity.principal import Principal
from skyfed.settings import NAME_PATTERN

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])
HostName = Annotated[str, Path(pattern=NAME_PATTERN)]


async def _take(
    parts: ComputeParts, principal: Principal, beats: service.Beats
) -> list[HostRecord]:
    caller = Caller(principal.username, None)
    if principal.is_agent:  # its own grant, even if it also held another role
        caller = Caller(principal.username, await parts.grants.get(principal.username))
    return await service.take_beats(
        parts.core.db,
        parts.hosts,
        BeatLimits.of(parts.core.settings),
        caller,
        beats,
        parts.ctx.signals.new_command,
    )


@router.put("", response_model=HeartbeatBatchOut)
async def heartbeat_batch(
    body: HeartbeatBatchIn, principal: ReporterDep, parts: PartsDep
) -> HeartbeatBatchOut:
    """Heartbeats of many hosts at once, taken or refused whole (docs/compute.md)."""
    records = await _take(parts, principal, [(beat.name, beat) for beat in body.hosts])
    return service.batch_out(records)


@router.put("/{name}", response_model=HostOut)
async def heartbeat(
    name: HostName, body: HeartbeatIn, principal: ReporterDep, parts: PartsDep
) -> HostOut:
    [record] = await _take(parts, principal, [(name, body)])
    return service.host_out(parts.hosts, record)


@router.get("", response_model=HostList)
async def list_hosts(
    _: AdminDep,
    parts: PartsDep,
    state: Literal["online", "offline"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    marker: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> HostList:
    return service.list_hosts(parts.hosts, state, limit, marker)


@router.get("/{name}", response_model=HostOut)
async def get_host(name: HostName, _: AdminDep, parts: PartsDep) -> HostOut:
    return service.get_host(parts.hosts, name)


@router.post("/{name}/disable", response_model=HostOut)
async def disable_host(
    name: HostName,
    principal: AdminDep,
    parts: PartsDep,
    session: SessionDep,
    body: DisableIn | None = None,
) -> HostOut:
    reason = body.reason if body else ""
    return await service.set_disabled(
        session, parts.hosts, name, True, reason=reason, by=principal.username
    )


@router.post("/{name}/enable", response_model=HostOut)
async def enable_host(name: HostName, _: AdminDep, parts: PartsDep, session: SessionDep) -> HostOut:
    return await service.set_disabled(session, parts.hosts, name, False)


@router.post("/{name}/release", response_model=ReleaseOut)
async def release_host(name: HostName, _: AdminDep, parts: PartsDep) -> ReleaseOut:
    """Hand a host over: no agent carries it until the next one granted for it beats
    (that one takes its pending commands)."""
    return await service.release_host(parts.core.db, parts.hosts, name)
