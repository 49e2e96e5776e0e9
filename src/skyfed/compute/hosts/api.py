"""Host routes: heartbeats from agents (service role), listing and disable/enable (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from skyfed.compute.hosts import service
from skyfed.compute.hosts.schemas import (
    DisableIn,
    HeartbeatBatchIn,
    HeartbeatBatchOut,
    HeartbeatIn,
    HostList,
    HostOut,
)
from skyfed.identity.deps import AdminDep, ReporterDep
from skyfed.runtime import RuntimeDep, SessionDep
from skyfed.settings import NAME_PATTERN

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])
HostName = Annotated[str, Path(pattern=NAME_PATTERN)]


@router.put("", response_model=HeartbeatBatchOut)
async def heartbeat_batch(
    body: HeartbeatBatchIn, _: ReporterDep, runtime: RuntimeDep
) -> HeartbeatBatchOut:
    """Heartbeats of many hosts at once (an agent carrying simulated hosts sends these)."""
    return service.heartbeat_batch(runtime.hosts, body)


@router.put("/{name}", response_model=HostOut)
async def heartbeat(
    name: HostName, body: HeartbeatIn, _: ReporterDep, runtime: RuntimeDep
) -> HostOut:
    return service.heartbeat(runtime.hosts, name, body)


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
