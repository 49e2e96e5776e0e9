"""Compute routes: flavors, servers (project-scoped), actions, locate, scheduler explain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from skyfed.compute.deps import PartsDep
from skyfed.compute.lifecycle import STATUSES
from skyfed.compute.schemas import (
    ActionIn,
    DelegatedCreated,
    DelegatedCreates,
    DelegatedOutcome,
    ExplainIn,
    FlavorCreate,
    FlavorList,
    FlavorOut,
    ServerCreate,
    ServerList,
    ServersCreated,
    ZoneLocation,
)
from skyfed.compute.service import ComputeService
from skyfed.errors import AppError
from skyfed.identity.deps import AdminDep, DirectUserDep, UserDep
from skyfed.schema_types import NAME_PATTERN

router = APIRouter(prefix="/v1", tags=["compute"])
ServerId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$", description="A server id")]
Id = Annotated[str, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


def _flavor_out(flavor: Any) -> FlavorOut:
    return FlavorOut.model_validate(flavor, from_attributes=True)


@router.get("/flavors", response_model=FlavorList)
async def list_flavors(principal: DirectUserDep, parts: PartsDep) -> FlavorList:
    flavors = await ComputeService(parts.ctx, principal).list_flavors()
    return FlavorList(flavors=[_flavor_out(f) for f in flavors])


@router.post("/flavors", status_code=201, response_model=FlavorOut)
async def create_flavor(body: FlavorCreate, principal: AdminDep, parts: PartsDep) -> FlavorOut:
    return _flavor_out(await ComputeService(parts.ctx, principal).create_flavor(body))


@router.post("/servers", status_code=202, response_model=ServersCreated)
async def create_servers(body: ServerCreate, principal: UserDep, parts: PartsDep) -> ServersCreated:
    """Create `count` servers (one reservation); 202 once the request is durable."""
    return await ComputeService(parts.ctx, principal).create(body)


@router.post("/servers/delegated", response_model=DelegatedCreated)
async def create_delegated(
    body: DelegatedCreates, principal: UserDep, parts: PartsDep
) -> DelegatedCreated:
    """A parent zone passes down the servers it placed here, many in one request.

    Each answer says the server's placement after at most `wait` seconds, or the
    error (with its HTTP status) that refused that one server.
    """
    service = ComputeService(parts.ctx, principal)
    outcomes = await service.create_delegated(body.servers, body.wait, body.traces)
    return DelegatedCreated(
        results=[
            DelegatedOutcome(error={"status": o.status, **o.body()["error"]})
            if isinstance(o, AppError)
            else DelegatedOutcome(server=o)
            for o in outcomes
        ]
    )


# A status no server can have is refused (422, naming the ones there are), not
# answered with an empty list.
_STATUS_PATTERN = "^(" + "|".join(STATUSES) + ")$"


@router.get("/servers", response_model=ServerList)
async def list_servers(
    principal: UserDep,
    parts: PartsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    marker: Annotated[str | None, Query(max_length=512)] = None,
    status: Annotated[str | None, Query(pattern=_STATUS_PATTERN)] = None,
    name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    project_id: Id | None = None,
) -> ServerList:
    """Every server under this zone, newest first; `unavailable_zones` names the silent."""
    return await ComputeService(parts.ctx, principal).list(
        status=status, name=name, limit=limit, marker=marker, project_id=project_id
    )


@router.get("/servers/{server_id}")
async def get_server(server_id: ServerId, principal: UserDep, parts: PartsDep) -> JSONResponse:
    return JSONResponse(await ComputeService(parts.ctx, principal).get(server_id))


@router.delete("/servers/{server_id}", status_code=202)
async def delete_server(server_id: ServerId, principal: UserDep, parts: PartsDep) -> dict[str, Any]:
    return await ComputeService(parts.ctx, principal).delete(server_id)


@router.post("/servers/{server_id}/action", status_code=202)
async def server_action(
    server_id: ServerId, body: ActionIn, principal: UserDep, parts: PartsDep
) -> dict[str, Any]:
    """reboot, stop or start; 409 naming the state when the server cannot do it now."""
    return await ComputeService(parts.ctx, principal).action(server_id, body.action)


@router.get("/zones/locate", response_model=ZoneLocation)
async def locate(principal: UserDep, parts: PartsDep, project: Id) -> ZoneLocation:
    """The lowest zone whose subtree holds all of a project's servers."""
    return await ComputeService(parts.ctx, principal).locate(project)


@router.post("/scheduler/explain")
async def explain(body: ExplainIn, principal: AdminDep, parts: PartsDep) -> dict[str, Any]:
    """Which candidates each filter dropped and how the rest scored, changing nothing."""
    return await ComputeService(parts.ctx, principal).explain(body)
