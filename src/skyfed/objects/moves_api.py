"""Admin routes of container moves: `/v1/container-moves`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from skyfed.core import SessionDep
from skyfed.identity.deps import AdminDep
from skyfed.objects import moves
from skyfed.objects.api import PartsDep
from skyfed.objects.models import ContainerMove, StorageCluster
from skyfed.objects.schemas import ContainerMoveCreate, ContainerMoveList, ContainerMoveOut
from skyfed.tasks.api import StoreDep

router = APIRouter(prefix="/v1/container-moves", tags=["storage"])
MoveId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


async def _out(session: SessionDep, found: list[ContainerMove]) -> list[ContainerMoveOut]:
    ids = {m.source_id for m in found} | {m.target_id for m in found}
    names = dict(
        (
            await session.execute(
                select(StorageCluster.id, StorageCluster.name).where(StorageCluster.id.in_(ids))
            )
        ).all()
    )
    return [
        ContainerMoveOut(
            id=m.id,
            account=f"AUTH_{m.project_id}",
            container=m.container,
            source=names.get(m.source_id, m.source_id),
            target=names.get(m.target_id, m.target_id),
            tier_from=m.tier_from,
            tier_to=m.tier_to,
            state=m.state,
            task_id=m.task_id,
            objects_total=m.objects_total,
            bytes_total=m.bytes_total,
            objects_copied=m.objects_copied,
            bytes_copied=m.bytes_copied,
            objects_skipped=m.objects_skipped,
            objects_cleaned=m.objects_cleaned,
            error=m.error,
            created_at=m.created_at,
            updated_at=m.updated_at,
            finished_at=m.finished_at,
        )
        for m in found
    ]


@router.post("", status_code=202, response_model=ContainerMoveOut)
async def start_move(
    body: ContainerMoveCreate, _: AdminDep, session: SessionDep, parts: PartsDep, store: StoreDep
) -> ContainerMoveOut:
    """Move a container to another storage cluster of the zone while it is in use (to
    change its tier, too): a durable task copies its objects, switches it over, then
    empties where it was."""
    move = await moves.start(
        session, parts, store, body.account, body.container, body.to, body.tier
    )
    return (await _out(session, [move]))[0]


@router.get("", response_model=ContainerMoveList)
async def list_moves(
    _: AdminDep, session: SessionDep, active: Annotated[bool, Query()] = False
) -> ContainerMoveList:
    """The latest moves (1,000 at most), newest first; `active`: those not ended."""
    return ContainerMoveList(moves=await _out(session, await moves.listed(session, active)))


@router.get("/{move_id}", response_model=ContainerMoveOut)
async def get_move(move_id: MoveId, _: AdminDep, session: SessionDep) -> ContainerMoveOut:
    return (await _out(session, [await moves.get(session, move_id)]))[0]


@router.post("/{move_id}/cancel", response_model=ContainerMoveOut)
async def cancel_move(
    move_id: MoveId, _: AdminDep, session: SessionDep, parts: PartsDep, store: StoreDep
) -> ContainerMoveOut:
    """Turn a copying move back: the container ends whole where it was."""
    move = await moves.cancel(session, parts, store, move_id)
    return (await _out(session, [move]))[0]
