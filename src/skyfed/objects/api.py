"""Admin routes of the storage cluster registry: `/v1/storage-clusters`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from skyfed.core import SessionDep, provided
from skyfed.identity.deps import AdminDep
from skyfed.objects.models import StorageCluster
from skyfed.objects.parts import StorageParts
from skyfed.objects.schemas import (
    StorageClusterCreate,
    StorageClusterList,
    StorageClusterOut,
    StorageClusterUpdate,
)
from skyfed.objects.service import StorageClusters
from skyfed.settings import NAME_PATTERN

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


@router.delete("/storage-clusters/{ref}", status_code=204)
async def delete_cluster(ref: Ref, _: AdminDep, registry: RegistryDep, parts: PartsDep) -> Response:
    await registry.delete(ref)
    await parts.load()
    return Response(status_code=204)
