"""Admin routes of the storage cluster registry: `/v1/storage-clusters`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from skyfed.core import SessionDep, provided
from skyfed.identity.deps import AdminDep
from skyfed.objects import drains
from skyfed.objects.models import StorageCluster
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import explain
from skyfed.objects.schemas import (
    TIER_PATTERN,
    DrainCreate,
    DrainOut,
    RebalanceCreate,
    StorageClusterCreate,
    StorageClusterList,
    StorageClusterOut,
    StorageClusterUpdate,
)
from skyfed.objects.service import StorageClusters
from skyfed.settings import NAME_PATTERN
from skyfed.tasks.api import StoreDep

router = APIRouter(prefix="/v1", tags=["storage"])
Ref = Annotated[str, Path(pattern=NAME_PATTERN, description="A storage cluster's id or name")]
PartsDep = Annotated[StorageParts, Depends(provided(StorageParts))]


def _registry(parts: PartsDep, session: SessionDep) -> StorageClusters:
    return parts.registry(session)


RegistryDep = Annotated[StorageClusters, Depends(_registry)]


def out(cluster: StorageCluster) -> StorageClusterOut:
    """Never the password: it is kept encrypted and only sent to the cluster."""
    return StorageClusterOut(
        id=cluster.id,
        name=cluster.name,
        auth_url=cluster.auth_url,
        username=cluster.username,
        tiers=dict(cluster.tiers),
        capacity_bytes=cluster.capacity_bytes,
        used_bytes=cluster.used_bytes,
        free_bytes=max(0, cluster.capacity_bytes - cluster.used_bytes),
        move_bandwidth=cluster.move_bandwidth,
        draining=cluster.draining,
        state=cluster.state,
        failures=cluster.failures,
        last_error=cluster.last_error,
        last_seen=cluster.last_seen,
        swift_version=(cluster.info or {}).get("version"),  # type: ignore[arg-type]
        created_at=cluster.created_at,
        updated_at=cluster.updated_at,
    )


@router.post("/storage-clusters", status_code=201, response_model=StorageClusterOut)
async def add_cluster(
    body: StorageClusterCreate, _: AdminDep, registry: RegistryDep, parts: PartsDep
) -> StorageClusterOut:
    """Register a Swift cluster: skyfed logs in to it and checks its policies first,
    and stores nothing if that fails."""
    cluster = await registry.add(body)
    await parts.load()  # in the summary at once, not at the next poll
    return out(cluster)


@router.get("/storage-clusters", response_model=StorageClusterList)
async def list_clusters(_: AdminDep, registry: RegistryDep) -> StorageClusterList:
    return StorageClusterList(clusters=[out(c) for c in await registry.list()])


@router.get("/storage-placement")
async def explain_placement(
    _: AdminDep,
    parts: PartsDep,
    session: SessionDep,
    tier: Annotated[str | None, Query(pattern=TIER_PATTERN)] = None,
    project: Annotated[str | None, Query(max_length=64, pattern=NAME_PATTERN)] = None,
) -> dict[str, Any]:
    """Where a new container in `tier` (the zone's default tier otherwise) would be
    placed now: each cluster and child zone with the filter that dropped it, or its
    score and rank. With `storage_placement = "account"`, `project`'s (an id or a name)
    containers hold the next ones. Places nothing."""
    chosen = tier or parts.core.settings.default_storage_tier
    return await explain(session, parts, project, chosen)


@router.get("/storage-clusters/{ref}", response_model=StorageClusterOut)
async def get_cluster(ref: Ref, _: AdminDep, registry: RegistryDep) -> StorageClusterOut:
    return out(await registry.find(ref))


@router.put("/storage-clusters/{ref}", response_model=StorageClusterOut)
async def update_cluster(
    ref: Ref, body: StorageClusterUpdate, _: AdminDep, registry: RegistryDep, parts: PartsDep
) -> StorageClusterOut:
    cluster = await registry.update(ref, body)
    await parts.load()
    return out(cluster)


def _drain_out(state: drains.DrainState) -> DrainOut:
    return DrainOut(
        cluster=state.cluster.name,
        draining=state.cluster.draining,
        containers_left=state.containers_left,
        moving=state.moving,
        task_id=state.task_id,
    )


@router.post("/storage-clusters/{ref}/drain", status_code=202, response_model=DrainOut)
async def drain_cluster(
    ref: Ref,
    _: AdminDep,
    session: SessionDep,
    parts: PartsDep,
    store: StoreDep,
    body: DrainCreate | None = None,
) -> DrainOut:
    """Move every container off a cluster, `parallel` at a time, each where the planner
    places it; nothing new is placed there from now on."""
    parallel = (body or DrainCreate()).parallel
    return _drain_out(await drains.start_drain(session, parts, store, ref, parallel))


@router.get("/storage-clusters/{ref}/drain", response_model=DrainOut)
async def drain_progress(ref: Ref, _: AdminDep, session: SessionDep) -> DrainOut:
    return _drain_out(await drains.drain_state(session, ref))


@router.delete("/storage-clusters/{ref}/drain", response_model=DrainOut)
async def stop_draining(ref: Ref, _: AdminDep, session: SessionDep, parts: PartsDep) -> DrainOut:
    """The cluster takes containers again; moves under way end as they would."""
    return _drain_out(await drains.stop_drain(session, parts, ref))


@router.post("/storage-rebalance", status_code=202)
async def rebalance(
    body: RebalanceCreate, _: AdminDep, session: SessionDep, store: StoreDep
) -> dict[str, str]:
    """Move containers, largest first, from clusters filled above `threshold` to
    clusters of their tier below it (a durable task: follow it at /v1/tasks/{id})."""
    task = await drains.start_rebalance(session, store, body.threshold, body.tier, body.parallel)
    return {"task_id": task.id}


@router.delete("/storage-clusters/{ref}", status_code=204)
async def delete_cluster(ref: Ref, _: AdminDep, registry: RegistryDep, parts: PartsDep) -> Response:
    await registry.delete(ref)
    await parts.load()
    return Response(status_code=204)
