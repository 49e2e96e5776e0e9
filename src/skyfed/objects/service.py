"""Registering storage clusters: checked, probed and stored only if the cluster answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.db.base import utcnow
from skyfed.errors import BadRequest, Conflict, NotFound
from skyfed.identity.vault import Vault
from skyfed.objects.models import StorageCluster
from skyfed.objects.schemas import StorageClusterCreate, StorageClusterUpdate
from skyfed.objects.swift_backend import BackendError, SwiftBackend
from skyfed.zones.reach_policy import HostPattern, check_reach


async def probe(
    auth_url: str, username: str, password: str, tiers: dict[str, str], timeout: float
) -> dict[str, Any]:
    """Logs in as the reseller admin and reads `/info`: the cluster's description, or
    BadRequest saying why it cannot be used (nothing is stored then)."""
    backend = SwiftBackend(auth_url, username, password, timeout=timeout)
    try:
        await backend.authenticate()
        info = await backend.info()
    except BackendError as exc:
        code = "cluster_auth_failed" if exc.auth_failed else "cluster_unreachable"
        raise BadRequest(f"{auth_url}: {exc.reason}", code=code) from exc
    finally:
        await backend.aclose()
    swift = info["swift"]
    policies = {p.get("name") for p in swift.get("policies", []) if isinstance(p, dict)}
    missing = sorted(policy for policy in tiers.values() if policy not in policies)
    if missing:
        raise BadRequest(
            f"the cluster has no storage policy {', '.join(missing)} "
            f"(it has {', '.join(sorted(str(p) for p in policies)) or 'none'})",
            code="unknown_policy",
        )
    return {"version": swift.get("version"), "policies": sorted(str(p) for p in policies)}


async def find_cluster(session: AsyncSession, ref: str) -> StorageCluster:
    """A cluster by its id or name (404 otherwise)."""
    cluster = await session.scalar(
        select(StorageCluster).where(or_(StorageCluster.id == ref, StorageCluster.name == ref))
    )
    if cluster is None:
        raise NotFound(f"storage cluster '{ref}' not found")
    return cluster


class StorageClusters:
    def __init__(
        self,
        session: AsyncSession,
        vault: Vault,
        allowed_hosts: tuple[HostPattern, ...],
        probe_timeout: float,
    ) -> None:
        self.session = session
        self.vault = vault
        self.allowed_hosts = allowed_hosts
        self.probe_timeout = probe_timeout

    async def list(self) -> Sequence[StorageCluster]:
        return (await self.session.scalars(select(StorageCluster).order_by("name"))).all()

    async def find(self, ref: str) -> StorageCluster:
        return await find_cluster(self.session, ref)

    async def add(self, body: StorageClusterCreate) -> StorageCluster:
        if await self.session.scalar(
            select(StorageCluster.id).where(StorageCluster.name == body.name)
        ):
            raise Conflict(f"a storage cluster named '{body.name}' exists")
        await self._check_url(body.auth_url)
        info = await probe(
            body.auth_url, body.username, body.password, body.tiers, self.probe_timeout
        )
        cluster = StorageCluster(
            name=body.name,
            auth_url=body.auth_url,
            username=body.username,
            password_secret=self.vault.encrypt(body.password),
            tiers=dict(body.tiers),
            capacity_bytes=body.capacity_bytes,
            move_bandwidth=body.move_bandwidth,
            info=info,
            last_seen=utcnow(),
        )
        self.session.add(cluster)
        await self._commit(body.name)
        return cluster

    async def update(self, ref: str, body: StorageClusterUpdate) -> StorageCluster:
        cluster = await self.find(ref)
        changes = body.model_dump(exclude_unset=True)
        for key, value in changes.items():
            if value is None:
                raise BadRequest(f"{key} cannot be null")
        moved = [
            k
            for k in ("auth_url", "username")
            if k in changes and changes[k] != getattr(cluster, k)
        ]
        if moved and "password" not in changes:
            # The stored key goes only where it went before.
            raise BadRequest(
                f"changing {', '.join(moved)} of '{cluster.name}' needs its password again",
                code="password_required",
            )
        if {"auth_url", "username", "password", "tiers"} & changes.keys():
            auth_url = changes.get("auth_url", cluster.auth_url)
            await self._check_url(auth_url)
            password = changes.get("password") or self.vault.decrypt(cluster.password_secret)
            cluster.info = await probe(
                auth_url,
                changes.get("username", cluster.username),
                password,
                changes.get("tiers", cluster.tiers),
                self.probe_timeout,
            )
        if "password" in changes:
            cluster.password_secret = self.vault.encrypt(changes.pop("password"))
        for key, value in changes.items():
            setattr(cluster, key, dict(value) if key == "tiers" else value)
        cluster.updated_at = utcnow()
        await self._commit(cluster.name)
        return cluster

    async def delete(self, ref: str) -> None:
        cluster = await self.find(ref)
        await self.session.delete(cluster)
        await self.session.commit()

    async def _check_url(self, url: str) -> None:
        await check_reach(
            url,
            self.allowed_hosts,
            setting="allowed_storage_hosts",
            code="cluster_url_not_allowed",
            what="storage cluster",
        )

    async def _commit(self, name: str) -> None:
        try:
            await self.session.commit()
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict(f"a storage cluster named '{name}' exists") from exc
