"""Where a container goes and where it is: a storage cluster of this zone, or a
child zone, which takes the same decision below it.

A new container's place is drawn at random among those up that offer its tier with
room, weighted by their free bytes (a child's: the sum over its subtree, as its
summary last said), so an account's containers spread. The `containers` table's
unique key makes the first placement of a name the one that holds.
"""

from __future__ import annotations

import random

from sqlalchemy import distinct, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import BadRequest, Conflict, NotFound, Unavailable
from skyfed.identity.principal import Principal
from skyfed.objects.models import UP, Container, StorageCluster
from skyfed.objects.parts import StorageParts
from skyfed.objects.section import offered, tiers_of
from skyfed.objects.swift_access import Access
from skyfed.objects.swift_forward import CLUSTER_UNAVAILABLE, Upstream
from skyfed.wire import forwarded_headers
from skyfed.zones.models import ChildZone

ACTIVE = "active"


def cluster_upstream(parts: StorageParts, cluster: StorageCluster) -> Upstream:
    return Upstream(
        "storage cluster",
        cluster.name,
        lambda fresh: parts.pool.session(cluster, fresh=fresh),
        tiers=dict(cluster.tiers),
    )


def child_upstream(parts: StorageParts, child: ChildZone, caller: Principal | None) -> Upstream:
    return Upstream(
        "zone",
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


async def _beside_account(
    session: AsyncSession, project_id: str, weighted: list[tuple[Container, float]]
) -> Container:
    """Where the account has most containers already; for its first, the place
    holding the fewest accounts (then the most free bytes): the same choice each
    time for the same state, so accounts spread one per place while they can."""
    where = (Container.cluster_id, Container.child_id)
    mine = dict(
        ((cluster, child), count)
        for cluster, child, count in await session.execute(
            select(*where, func.count()).where(Container.project_id == project_id).group_by(*where)
        )
    )
    accounts = dict(
        ((cluster, child), count)
        for cluster, child, count in await session.execute(
            select(*where, func.count(distinct(Container.project_id))).group_by(*where)
        )
    )

    def rank(item: tuple[Container, float]) -> tuple[int, int, float, str]:
        key = (item[0].cluster_id, item[0].child_id)
        return (-mine.get(key, 0), accounts.get(key, 0), -item[1], str(key))

    return min(weighted, key=rank)[0]


async def offered_tiers(session: AsyncSession) -> set[str]:
    """The tiers of this zone's clusters and of its children's subtrees."""
    tiers = {
        tier for c in (await session.scalars(select(StorageCluster))).all() for tier in c.tiers
    }
    for summary in (await session.scalars(select(ChildZone.summary))).all():
        tiers |= tiers_of(summary)
    return tiers


async def place(
    session: AsyncSession,
    project_id: str,
    name: str,
    tier: str,
    beside: Container | None = None,
    mode: str = "spread",
) -> tuple[Container, bool]:
    """The container placed now (True), or as another request placed it first.
    `beside`: a container it must share a place with (its versions container);
    `mode`: the zone's `storage_placement`."""
    clusters = (await session.scalars(select(StorageCluster))).all()  # as last polled
    children = (await session.scalars(select(ChildZone).where(ChildZone.state == ACTIVE))).all()
    weighted: list[tuple[Container, float]] = [
        (
            Container(project_id=project_id, name=name, cluster_id=c.id, tier=tier),
            c.capacity_bytes - c.used_bytes,
        )
        for c in clusters
        if c.state == UP and tier in c.tiers and c.capacity_bytes > c.used_bytes
    ]
    for child in children:
        total, largest = offered(child.summary, tier)
        if largest > 0:
            weighted.append(
                (Container(project_id=project_id, name=name, child_id=child.id, tier=tier), total)
            )
    if beside is not None:
        weighted = [
            (c, w)
            for c, w in weighted
            if (c.cluster_id, c.child_id) == (beside.cluster_id, beside.child_id)
        ]
        if not weighted:
            raise Conflict(
                f"container '{name}' cannot be placed beside '{beside.name}' (its versions "
                f"container): that place offers no room in tier '{tier}'"
            )
    if not weighted and tier not in await offered_tiers(session):
        raise BadRequest(f"Invalid X-Storage-Policy '{tier}'", code="unknown_tier")
    if not weighted:
        raise Unavailable(
            f"no storage cluster in this zone's subtree offers tier '{tier}' with room",
            code=CLUSTER_UNAVAILABLE,
        )
    if mode == "account":
        chosen = await _beside_account(session, project_id, weighted)
    else:
        chosen = random.choices([c for c, _ in weighted], weights=[w for _, w in weighted])[0]
    session.add(chosen)
    try:
        await session.commit()
    except IntegrityError:  # another request placed it first: that place holds
        await session.rollback()
        found = await session.get(Container, (project_id, name))
        if found is None:
            raise
        return found, False
    return chosen, True
