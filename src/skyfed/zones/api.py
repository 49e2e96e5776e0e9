"""Zone routes: this zone itself (for parents and admins) and its registry of children."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from skyfed.identity.deps import AdminDep, PeerDep
from skyfed.runtime import RuntimeDep, SessionDep
from skyfed.settings import NAME_PATTERN
from skyfed.zones.models import ChildZone
from skyfed.zones.schemas import (
    ChildBrief,
    ZoneCreate,
    ZoneDetail,
    ZoneList,
    ZoneOut,
    ZoneSelf,
    ZoneUpdate,
)
from skyfed.zones.service import ZoneService

router = APIRouter(prefix="/v1", tags=["zones"])
Ref = Annotated[str, Path(pattern=NAME_PATTERN, description="A child zone's id or name")]


def _service(runtime: RuntimeDep, session: SessionDep) -> ZoneService:
    return ZoneService(session, runtime.zone_context())


def _out(child: ChildZone) -> ZoneOut:
    return ZoneOut.model_validate(child, from_attributes=True)


@router.get("/zone", response_model=ZoneSelf)
async def this_zone(_: PeerDep, runtime: RuntimeDep) -> ZoneSelf:
    summary, built_at = runtime.view.summary()
    unreachable = runtime.view.unreachable()
    return ZoneSelf(
        id=runtime.zone_id,
        name=runtime.settings.name,
        capabilities=dict(runtime.settings.capabilities),
        summary=summary.to_dict(),
        unreachable=unreachable.to_dict() if unreachable.paths else None,
        children=[
            ChildBrief(id=c.id, name=c.name, state=c.state, hosts=c.summary.hosts)  # type: ignore[arg-type]
            for c in sorted(runtime.view.children.values(), key=lambda c: c.name)
        ],
        generated_at=built_at,
    )


@router.post("/zones", status_code=201, response_model=ZoneOut)
async def add_zone(
    body: ZoneCreate, _: AdminDep, runtime: RuntimeDep, session: SessionDep
) -> ZoneOut:
    """Add a child: the parent logs in to it first and stores nothing if that fails."""
    return _out(await _service(runtime, session).add(body))


@router.get("/zones", response_model=ZoneList)
async def list_zones(_: AdminDep, runtime: RuntimeDep, session: SessionDep) -> ZoneList:
    return ZoneList(zones=[_out(c) for c in await _service(runtime, session).list()])


@router.get("/zones/{ref}", response_model=ZoneOut)
async def get_zone(ref: Ref, _: AdminDep, runtime: RuntimeDep, session: SessionDep) -> ZoneOut:
    return _out(await _service(runtime, session).find(ref))


@router.get("/zones/{ref}/detail", response_model=ZoneDetail)
async def zone_detail(
    ref: Ref, _: AdminDep, runtime: RuntimeDep, session: SessionDep
) -> ZoneDetail:
    child = await _service(runtime, session).find(ref)
    return ZoneDetail.model_validate(child, from_attributes=True)


@router.put("/zones/{ref}", response_model=ZoneOut)
async def update_zone(
    ref: Ref, body: ZoneUpdate, _: AdminDep, runtime: RuntimeDep, session: SessionDep
) -> ZoneOut:
    return _out(await _service(runtime, session).update(ref, body))


@router.delete("/zones/{ref}", status_code=204)
async def delete_zone(
    ref: Ref, _: AdminDep, runtime: RuntimeDep, session: SessionDep, force: bool = False
) -> Response:
    """Remove a child zone (409 while it holds servers placed from here, unless force)."""
    await _service(runtime, session).delete(ref, force=force)
    return Response(status_code=204)
