"""Draining a storage cluster, and rebalancing a zone's clusters: containers moved in
bounded numbers at once (objects/moves), by durable tasks.

- **Drain.** The cluster is marked draining at once: the planner places nothing new
  there (nor offers its room up the tree). A task moves every container off it,
  `parallel` at a time, each where the planner would place it now.
- **Rebalance.** For each tier, the containers of the clusters filled above the
  threshold move, largest first, to clusters of that tier below it, each filled
  only up to it, until every cluster is under it or nothing more fits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import AppError
from skyfed.objects import moves
from skyfed.objects.models import (
    ACTIVE_MOVES,
    CANCEL_CLEANING,
    CLEANING,
    UP,
    Container,
    ContainerMove,
    StorageCluster,
)
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import cluster_upstream
from skyfed.objects.service import find_cluster
from skyfed.objects.swift_forward import ask
from skyfed.tasks.models import Task
from skyfed.tasks.store import TaskStore
from skyfed.tasks.worker import TaskFailed

log = logging.getLogger(__name__)

DRAIN = "storage.drain"
REBALANCE = "storage.rebalance"
ROUND = 2.0  # seconds between two looks at the moves under way
STUCK_FOR = 30.0  # a container with no room elsewhere is tried again after this


@dataclass
class DrainState:
    cluster: StorageCluster
    containers_left: int  # on it, not moving yet
    moving: int  # moving off it now (copying or being cleaned)
    task_id: str | None


async def drain_state(session: AsyncSession, ref: str) -> DrainState:
    cluster = await find_cluster(session, ref)
    left = await session.scalar(
        select(func.count()).where(
            Container.cluster_id == cluster.id, Container.moving_to.is_(None)
        )
    )
    moving = await _moving_off(session, cluster.id)
    task = await session.scalar(
        select(Task.id)
        .where(Task.kind == DRAIN, Task.resource_id == cluster.id)
        .order_by(Task.seq.desc())
        .limit(1)
    )
    return DrainState(cluster, int(left or 0), moving, task)


async def _moving_off(session: AsyncSession, cluster_id: str) -> int:
    """Moves taking containers off the cluster now: copying, or emptying it."""
    copying = await session.scalar(
        select(func.count()).where(
            Container.cluster_id == cluster_id, Container.moving_to.is_not(None)
        )
    )
    cleaning = await session.scalar(
        select(func.count()).where(
            or_(
                (ContainerMove.state == CLEANING) & (ContainerMove.source_id == cluster_id),
                (ContainerMove.state == CANCEL_CLEANING) & (ContainerMove.target_id == cluster_id),
            )
        )
    )
    return int(copying or 0) + int(cleaning or 0)


async def start_drain(
    session: AsyncSession, parts: StorageParts, store: TaskStore, ref: str, parallel: int
) -> DrainState:
    cluster = await find_cluster(session, ref)
    cluster.draining = True
    store.enqueue(
        session,
        kind=DRAIN,
        resource_type="storage_cluster",
        resource_id=cluster.id,
        payload={"parallel": parallel},
    )
    await session.commit()
    store.notify()
    await parts.load()  # placed nowhere new from now on, in this process at once
    return await drain_state(session, ref)


async def stop_drain(session: AsyncSession, parts: StorageParts, ref: str) -> DrainState:
    """The cluster takes containers again; moves under way end as they would."""
    cluster = await find_cluster(session, ref)
    cluster.draining = False
    await session.commit()
    await parts.load()
    return await drain_state(session, ref)


async def start_rebalance(
    session: AsyncSession, store: TaskStore, threshold: float, tier: str | None, parallel: int
) -> Task:
    task = store.enqueue(
        session,
        kind=REBALANCE,
        resource_type="storage",
        resource_id="rebalance",  # (one at a time)
        payload={"threshold": threshold, "tier": tier, "parallel": parallel},
    )
    await session.commit()
    store.notify()
    return task


class DrainRunner:
    def __init__(self, parts: StorageParts, store: TaskStore) -> None:
        self.parts = parts
        self.store = store
        self.db = parts.core.db

    async def drain(self, task: Task) -> dict[str, Any]:
        parallel = int(task.payload.get("parallel", 2))
        started = 0
        stuck: dict[tuple[str, str], float] = {}  # no room elsewhere: tried again later
        while True:
            now = time.monotonic()
            stuck = {key: until for key, until in stuck.items() if until > now}
            async with self.db.session() as session:
                cluster = await session.get(StorageCluster, task.resource_id)
                if cluster is None:
                    raise TaskFailed("the storage cluster was deleted")
                if not cluster.draining:
                    return {"stopped": True, "moves_started": started}
                moving = await _moving_off(session, cluster.id)
                waiting = (
                    await session.scalars(
                        select(Container)
                        .where(Container.cluster_id == cluster.id, Container.moving_to.is_(None))
                        .order_by(Container.project_id, Container.name)
                        .limit(parallel + len(stuck))
                    )
                ).all()
            if not waiting and moving == 0:
                return {"drained": True, "moves_started": started}
            for container in waiting:
                key = (container.project_id, container.name)
                if moving >= parallel:
                    break
                if key in stuck:
                    continue
                try:
                    async with self.db.session() as session:
                        await moves.start(
                            session, self.parts, self.store, container.project_id,
                            container.name, None,
                        )  # fmt: skip
                    started, moving = started + 1, moving + 1
                except AppError as exc:
                    log.warning("draining: %s/%s stays for now: %s", *key, exc)
                    stuck[key] = now + STUCK_FOR
            await asyncio.sleep(ROUND)

    async def rebalance(self, task: Task) -> dict[str, Any]:
        threshold = float(task.payload.get("threshold", 0.8))
        only = task.payload.get("tier")
        parallel = int(task.payload.get("parallel", 2))
        plan = await self._plan(threshold, only)
        begun: list[str] = []
        for project_id, name, target, tier in plan:
            await self._until_under_way(parallel - 1)
            try:
                async with self.db.session() as session:
                    move = await moves.start(
                        session, self.parts, self.store, project_id, name, target, tier
                    )
                begun.append(move.id)
            except AppError as exc:
                log.warning("rebalance: %s/%s stays: %s", project_id, name, exc)
        await self._until_under_way(0)
        return {"moves": begun, "planned": len(plan)}

    async def _until_under_way(self, at_most: int) -> None:
        """Wait until at most `at_most` moves of the zone are under way (another
        process's moves end in its own time: they are read from the table)."""
        while True:
            async with self.db.session() as session:
                count = await session.scalar(
                    select(func.count()).where(ContainerMove.state.in_(ACTIVE_MOVES))
                )
            if int(count or 0) <= at_most:
                return
            await asyncio.sleep(ROUND)

    async def _plan(self, threshold: float, only: str | None) -> list[tuple[str, str, str, str]]:
        """(project, container, target cluster id, tier) for each move to make."""
        async with self.db.session() as session:
            clusters = [
                c
                for c in (await session.scalars(select(StorageCluster))).all()
                if c.state == UP and not c.draining and c.capacity_bytes > 0
            ]
            rows = (
                await session.scalars(select(Container).where(Container.moving_to.is_(None)))
            ).all()
        used = {c.id: float(c.used_bytes) for c in clusters}
        cap = {c.id: float(c.capacity_bytes) for c in clusters}
        by_cluster: dict[str, list[Container]] = defaultdict(list)
        for row in rows:
            if row.cluster_id in used and (only is None or row.tier == only):
                by_cluster[row.cluster_id].append(row)
        plan: list[tuple[str, str, str, str]] = []
        for cluster in sorted(clusters, key=lambda c: used[c.id] / cap[c.id], reverse=True):
            excess = used[cluster.id] - threshold * cap[cluster.id]
            if excess <= 0:
                continue
            sizes = await self._sizes(cluster, by_cluster[cluster.id])
            for row, size in sorted(sizes, key=lambda pair: pair[1], reverse=True):
                if excess <= 0:
                    break
                room = [
                    c for c in clusters
                    if c.id != cluster.id and row.tier in c.tiers
                    and used[c.id] + size <= threshold * cap[c.id]
                ]  # fmt: skip
                if not room or size <= 0:
                    continue
                target = min(room, key=lambda c: used[c.id] / cap[c.id])
                plan.append((row.project_id, row.name, target.id, row.tier))
                used[target.id] += size
                used[cluster.id] -= size
                excess -= size
        return plan

    async def _sizes(
        self, cluster: StorageCluster, rows: list[Container]
    ) -> list[tuple[Container, int]]:
        """Each container's bytes, from its account's listing on the cluster."""
        upstream = cluster_upstream(self.parts, cluster)
        by_project: dict[str, list[Container]] = defaultdict(list)
        for row in rows:
            by_project[row.project_id].append(row)
        out: list[tuple[Container, int]] = []
        for project_id, mine in by_project.items():
            try:
                status, _, body = await ask(
                    upstream, "GET", f"AUTH_{project_id}", [("format", "json")]
                )
            except AppError:
                continue
            listed = {
                e.get("name"): int(e.get("bytes", 0)) for e in body or [] if isinstance(e, dict)
            }
            out += [(row, listed.get(row.name, 0)) for row in mine if status == 200]
        return out
