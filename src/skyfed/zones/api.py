"""Zone routes: this zone itself (for parents and admins) and its registry of children."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse

from skyfed.core import SessionDep, provided
from skyfed.identity.deps import AdminDep, PeerDep
from skyfed.settings import NAME_PATTERN
from skyfed.zones.models import ChildZone
from skyfed.zones.schemas import (
    ZoneCreate,
    ZoneDetail,
    ZoneList,
    ZoneOut,
    ZoneSelf,
    ZoneUpdate,
)
from skyfed.zones.service import ZoneService
from skyfed.zones.tree import ZoneTree

router = APIRouter(prefix="/v1", tags=["zones"])
Ref = Annotated[str, Path(pattern=NAME_PATTERN, description="A child zone's id or name")]
TreeDep = Annotated[ZoneTree, Depends(provided(ZoneTree))]


def _service(tree: TreeDep, session: SessionDep) -> ZoneService:
    return ZoneService(session, tree.context())


def _out(child: ChildZone) -> ZoneOut:
    return ZoneOut.model_validate(child, from_attributes=True)


@router.get("/zone", response_model=ZoneSelf)
async def this_zone(_: PeerDep, tree: TreeDep) -> JSONResponse:
    """What this zone says of itself to its parent (and to admins)."""
    return JSONResponse(tree.report().to_dict())


@router.post("/zones", status_code=201, response_model=ZoneOut)
async def add_zone(body: ZoneCreate, _: AdminDep, tree: TreeDep, session: SessionDep) -> ZoneOut:
    """Add a child: the parent logs in to it first and stores nothing if that fails."""
    return _out(await _service(tree, session).add(body))


@router.get("/zones", response_model=ZoneList)
async def list_zones(_: AdminDep, tree: TreeDep, session: SessionDep) -> ZoneList:
    return ZoneList(zones=[_out(c) for c in await _service(tree, session).list()])


@router.get("/zones/{ref}", response_model=ZoneOut)
async def get_zone(ref: Ref, _: AdminDep, tree: TreeDep, session: SessionDep) -> ZoneOut:
    return _out(await _service(tree, session).find(ref))


@router.get("/zones/{ref}/detail", response_model=ZoneDetail)
async def zone_detail(ref: Ref, _: AdminDep, tree: TreeDep, session: SessionDep) -> ZoneDetail:
    child = await _service(tree, session).find(ref)
    return ZoneDetail.model_validate(child, from_attributes=True)


@router.put("/zones/{ref}", response_model=ZoneOut)
async def update_zone(
    ref: Ref, body: ZoneUpdate, _: AdminDep, tree: TreeDep, session: SessionDep
) -> ZoneOut:
    return _out(await _service(tree, session).update(ref, body))


@router.delete("/zones/{ref}", status_code=204)
async def delete_zone(
    ref: Ref, _: AdminDep, tree: TreeDep, session: SessionDep, force: bool = False
) -> Response:
    """Remove a child zone (409 while it holds servers placed from here, unless force)."""
    await _service(tree, session).delete(ref, force=force)
    return Response(status_code=204)
