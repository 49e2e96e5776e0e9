"""Where a container goes and where it is: a storage cluster of this zone, or a
child zone, which takes the same decision below it.

A new container's place is the planner's choice (`storage_planner`) among the
clusters and children, on the clusters as last polled and the children's summaries.
The `containers` table's unique key makes the first placement of a name the one
that holds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.db.base import utcnow
from skyfed.errors import BadRequest, Conflict, NotFound, Unavailable
from skyfed.identity.models import Project
from skyfed.identity.principal import Principal
from skyfed.objects.locations import TTL
from skyfed.objects.models import ACTIVE_MOVES, Container, ContainerMove, StorageCluster
from skyfed.objects.move_copy import MoveError, copy_if_missing, offsets
from skyfed.objects.parts import StorageParts
from skyfed.objects.section import tiers_of
from skyfed.objects.storage_planner import (
    ACCOUNT,
    SPREAD,
    Place,
    candidates,
    decide,
    explained,
    place_of,
    request_for,
)
from skyfed.objects.swift_access import Access
from skyfed.objects.swift_forward import CLUSTER, CLUSTER_UNAVAILABLE, ZONE, Upstream
from skyfed.wire import forwarded_headers
from skyfed.zones.models import ChildZone


def cluster_upstream(parts: StorageParts, cluster: StorageCluster) -> Upstream:
    return Upstream(
        CLUSTER,
        cluster.name,
        lambda fresh: parts.pool.session(cluster, fresh=fresh),
        tiers=dict(cluster.tiers),
    )


# How long after a move begins every process has forgotten where the container was.
SETTLE = 2 * TTL


def moving_upstream(
    parts: StorageParts, source: StorageCluster, to: StorageCluster, offset: int
) -> Upstream:
    """A moving container's place: `to`, with `source` for what is not copied yet;
    `offset`: the move's copies' (move_copy.offsets)."""
    came_from, going = cluster_upstream(parts, source), cluster_upstream(parts, to)

    async def fill(account: str, path: tuple[str, ...]) -> None:
        # Before a POST changes an object's metadata where reads look first.
        with contextlib.suppress(MoveError):
            await copy_if_missing(came_from, going, account, (path[0], path[1]), offset)

    return replace(going, source=came_from, fill=fill)


def child_upstream(parts: StorageParts, child: ChildZone, caller: Principal | None) -> Upstream:
    return Upstream(
        ZONE,
        child.name,
        lambda fresh: parts.children.session(child, fresh=fresh),
        tiers={tier: tier for tier in tiers_of(child.summary)},
        headers=forwarded_headers(caller) if caller is not None else {},
    )


async def known_container(session: AsyncSession, access: Access, name: str) -> Container:
    """The container, or 404 to who may see the account's names (403 to others)."""
    found = await session.get(Container, (access.project_id, name))
    if found is None:
        if not (access.owner or access.level):
            access.container("GET", None)  # raises: names are not theirs to learn
        raise NotFound(f"container '{name}' not found")
    return found


async def upstream_of(
    session: AsyncSession, parts: StorageParts, container: Container, caller: Principal | None
) -> Upstream:
    """Where requests on the container go; while it moves, where it goes, with where it
    comes from beside (swift_forward.moving)."""
    if container.moving_to is not None and container.cluster_id is not None:
        to = await session.get(StorageCluster, container.moving_to)
        source = await session.get(StorageCluster, container.cluster_id)
        if to is not None and source is not None:
            move = (
                await session.execute(
                    select(ContainerMove.since, ContainerMove.generation).where(
                        ContainerMove.project_id == container.project_id,
                        ContainerMove.container == container.name,
                        ContainerMove.state.in_(ACTIVE_MOVES),
                    )
                )
            ).first()
            offset = offsets(move.generation)[0] if move is not None else 0
            if move is not None and utcnow() < move.since + timedelta(seconds=SETTLE):
                # Until every process has forgotten the old place (whose cached entries
                # send writes there), writes go there too, deletes to both: one place
                # decides between them. Copies begin after (move_runner).
                return moving_upstream(parts, to, source, offset)
            return moving_upstream(parts, source, to, offset)
    if container.child_id is not None:
        child = await session.get(ChildZone, container.child_id)
        if child is not None:
            return child_upstream(parts, child, caller)
    elif container.cluster_id is not None:
        cluster = await session.get(StorageCluster, container.cluster_id)
        if cluster is not None:
            return cluster_upstream(parts, cluster)
    raise Unavailable(
        f"the place of container '{container.name}' is gone", code=CLUSTER_UNAVAILABLE
    )


async def _places_now(
    session: AsyncSession,
) -> tuple[Sequence[StorageCluster], Sequence[ChildZone]]:
    """This zone's clusters (as last polled) and children (as their summaries said)."""
    clusters = (await session.scalars(select(StorageCluster))).all()
    children = (await session.scalars(select(ChildZone))).all()
    return clusters, children


def _tiers(clusters: Iterable[StorageCluster], children: Iterable[ChildZone]) -> set[str]:
    tiers = {tier for cluster in clusters for tier in cluster.tiers}
    for child in children:
        tiers |= tiers_of(child.summary)
    return tiers


async def offered_tiers(session: AsyncSession) -> set[str]:
    """The tiers of this zone's clusters and of its children's subtrees."""
    return _tiers(*await _places_now(session))


async def _account_members(session: AsyncSession, project_id: str) -> dict[Place, int]:
    where = (Container.cluster_id, Container.child_id)
    rows = await session.execute(
        select(*where, func.count()).where(Container.project_id == project_id).group_by(*where)
    )
    return {(cluster, child): count for cluster, child, count in rows}


def _unknown_tier(tier: str) -> BadRequest:
    return BadRequest(f"Invalid X-Storage-Policy '{tier}'", code="unknown_tier")


def _no_room(tier: str) -> Unavailable:
    return Unavailable(
        f"no storage cluster in this zone's subtree offers tier '{tier}' with room",
        code=CLUSTER_UNAVAILABLE,
    )


async def project_id_of(session: AsyncSession, ref: str) -> str | None:
    """A project's id from its id or name (None: no such project)."""
    return await session.scalar(
        select(Project.id).where(or_(Project.id == ref, Project.name == ref))
    )


async def explain(
    session: AsyncSession, parts: StorageParts, project: str | None, tier: str
) -> dict[str, Any]:
    """Where a new container of `project` (an id or a name; its containers hold the
    next with `storage_placement = "account"`) in `tier` would go now, and why: every
    cluster and child with the filter that dropped it, or its score. Places nothing."""
    mode = parts.core.settings.storage_placement
    project_id = ""
    if project is not None:
        found = await project_id_of(session, project)
        if found is None:
            raise NotFound(f"project '{project}' not found")
        project_id = found
    clusters, children = await _places_now(session)
    containers = await parts.placed.get(session)
    mine = await _account_members(session, project_id) if project_id else {}
    offered_places = candidates(
        tier, clusters, children, containers, mine if mode == ACCOUNT else None
    )
    request = request_for(project_id, "(explain)", tier, mode)
    decision = decide(request, offered_places, zone_name=parts.core.settings.name, explain=True)
    result = explained(decision, tier, mode, containers, mine)
    if not decision.ranked:
        unknown = tier not in _tiers(clusters, children)
        result["reason"] = str(_unknown_tier(tier) if unknown else _no_room(tier))
    return result


async def move_target(
    session: AsyncSession, parts: StorageParts, container: Container, tier: str
) -> StorageCluster | None:
    """The cluster of this zone a container should move to, to be in `tier`: the
    planner's choice among the others that offer it with room (none draining)."""
    clusters, _ = await _places_now(session)
    others = [c for c in clusters if c.id != container.cluster_id]
    containers = await parts.placed.get(session)
    offered_places = candidates(tier, others, [], containers)
    request = request_for(container.project_id, container.name, tier, SPREAD)
    decision = decide(request, offered_places, zone_name=parts.core.settings.name, rng=parts.rng)
    if decision.best is None:
        return None
    chosen = place_of(decision.best)[0]
    return next(c for c in others if c.id == chosen)


async def place(
    session: AsyncSession,
    parts: StorageParts,
    project_id: str,
    name: str,
    tier: str,
    beside: Container | None = None,
) -> tuple[Container, bool]:
    """The container placed now (True), or as another request placed it first.
    `beside`: a container it must share a place with (its versions container)."""
    clusters, children = await _places_now(session)
    if tier not in _tiers(clusters, children):  # (before the planner compiles it)
        raise _unknown_tier(tier)
    mode = parts.core.settings.storage_placement
    containers = await parts.placed.get(session)
    members = await _account_members(session, project_id) if mode == ACCOUNT else None
    offered_places = candidates(tier, clusters, children, containers, members)
    if beside is not None:
        at = (beside.cluster_id, beside.child_id)
        offered_places = [c for c in offered_places if place_of(c) == at]
    request = request_for(project_id, name, tier, mode)
    started = time.perf_counter()
    decision = decide(request, offered_places, zone_name=parts.core.settings.name, rng=parts.rng)
    chosen = decision.best
    parts.placement_decided(chosen.kind if chosen is not None else "none", started)
    if chosen is None and beside is not None:
        raise Conflict(
            f"container '{name}' cannot be placed beside '{beside.name}' (its versions "
            f"container): that place offers no room in tier '{tier}'"
        )
    if chosen is None:
        raise _no_room(tier)
    cluster_id, child_id = place_of(chosen)
    container = Container(
        project_id=project_id, name=name, cluster_id=cluster_id, child_id=child_id, tier=tier
    )
    session.add(container)
    try:
        await session.commit()
    except IntegrityError:  # another request placed it first: that place holds
        await session.rollback()
        found = await session.get(Container, (project_id, name))
        if found is None:
            raise
        return found, False
    parts.placed.placed((cluster_id, child_id))
    return container, True
