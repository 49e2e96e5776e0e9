"""A new container's place, decided by the planner that places servers (pure).

The candidates are this zone's storage clusters and its child zones, both given to
`scheduling.planner.plan` as zone candidates with a summary of what they offer:

- a cluster is a place of one: up or down (the `enabled` filter), and the tier's
  free bytes (`free_bytes:<tier>`, the `capabilities` filter asks for at least one);
- a child offers what its summary's `storage` section says of its subtree: the
  most free bytes in one cluster (the constraint's `max`) and their sum.

The planner's weighers read a candidate's room as the `free_ram_mb` sum of its
summary. Here room is the tier's free MiB per container already placed there, of any tier
(plus one): a place with ten times the free bytes takes ten times the containers, and a
burst of creates, counted as they are placed, spreads instead of piling onto the
place that looked best first (the planner's "assume and deduct").

With `storage_placement = "account"` the request is in the affinity group of its
account: a place already holding the account's containers is kept while one has
room, as a server group's members are.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from skyfed.objects.models import UP, StorageCluster
from skyfed.objects.section import offered
from skyfed.scheduling.candidates import ZoneCandidate
from skyfed.scheduling.config import PlannerConfig
from skyfed.scheduling.decision import Decision
from skyfed.scheduling.planner import plan
from skyfed.scheduling.request import AFFINITY, PlacementRequest
from skyfed.zones.capabilities import Constraint, Operand
from skyfed.zones.models import ChildZone
from skyfed.zones.summary import NumericStats, Summary

ACTIVE = "active"
ROOM_KEY = "free_ram_mb"  # what the planner's weighers read as a zone's room
MIB = 1 << 20
SPREAD = "spread"
ACCOUNT = "account"

# A place: (cluster id, child id), one of them None, as the containers table keeps it.
Place = tuple[str | None, str | None]

CONFIG = PlannerConfig(strategy="spread")


@dataclass(slots=True, kw_only=True)
class ClusterCandidate(ZoneCandidate):
    """A storage cluster of the deciding zone (its key says so in explain)."""

    kind: ClassVar[str] = "cluster"

    @property
    def key(self) -> str:
        return "cluster:" + self.id


def place_of(candidate: ZoneCandidate) -> Place:
    if isinstance(candidate, ClusterCandidate):
        return (candidate.id, None)
    return (None, candidate.id)


@lru_cache(maxsize=256)
def tier_constraints(tier: str) -> tuple[Constraint, ...]:
    """`free_bytes:<tier> >= 1`, one tuple per tier (the planner compiles a request's
    shape once per constraints tuple)."""
    return (Constraint(f"free_bytes:{tier}", ">=", (Operand.of(1),)),)


def _summary(tier: str, largest: float, total: float, count: int, containers: int) -> Summary:
    """What the planner reads of a place: the most free bytes in one of its clusters,
    their sum over `count` clusters, and its room (free MiB per container, plus one)."""
    room = total / MIB / (containers + 1)
    return Summary(
        hosts=1,
        numeric={
            f"free_bytes:{tier}": NumericStats(0.0, largest, total, count),
            ROOM_KEY: NumericStats(room, room, room, 1),
        },
    )


def candidates(
    tier: str,
    clusters: Iterable[StorageCluster],
    children: Iterable[ChildZone],
    containers: Mapping[Place, int],
    members: Mapping[Place, int] | None = None,
) -> list[ZoneCandidate]:
    """Every cluster and child as a candidate for a container of `tier`, those that
    cannot take it too (explain says which filter dropped them). `containers`: the
    containers placed in each place; `members`: the account's own (affinity)."""
    members = members or {}

    def candidate(
        kind: type[ZoneCandidate], place: Place, name: str, up: bool, total: float, largest: float
    ) -> ZoneCandidate:
        return kind(
            id=place[0] or place[1] or "",
            name=name,
            active=up,
            summary=_summary(tier, largest, total, 1, containers.get(place, 0)),
            # The account's place holds the next container while it can take it.
            group_members=members.get(place, 0) if up and largest > 0 else 0,
        )

    out: list[ZoneCandidate] = []
    for cluster in clusters:
        free = max(0, cluster.capacity_bytes - cluster.used_bytes) if tier in cluster.tiers else 0
        up = cluster.state == UP and not cluster.draining  # (a drained one takes nothing)
        out.append(candidate(ClusterCandidate, (cluster.id, None), cluster.name, up, free, free))
    for child in children:
        total, largest = offered(child.summary, tier)
        up = child.state == ACTIVE
        out.append(candidate(ZoneCandidate, (None, child.id), child.name, up, total, largest))
    return out


def request_for(project_id: str, name: str, tier: str, mode: str) -> PlacementRequest:
    together = mode == ACCOUNT and bool(project_id)
    return PlacementRequest(
        server_id=f"{project_id}/{name}",  # the planner's name for what it places
        vcpus=0,
        ram_mb=0,
        disk_gb=0,
        constraints=tier_constraints(tier),
        group=project_id if together else None,
        group_policy=AFFINITY if together else None,
    )


def decide(
    request: PlacementRequest,
    offered_places: list[ZoneCandidate],
    *,
    zone_name: str,
    rng: random.Random | None = None,
    explain: bool = False,
) -> Decision:
    return plan(
        request, [], offered_places, zone_name=zone_name, config=CONFIG, rng=rng, explain=explain
    )


def explained(
    decision: Decision,
    tier: str,
    mode: str,
    containers: Mapping[Place, int],
    mine: Mapping[Place, int],
) -> dict[str, Any]:
    """The planner's explain, with the figures of each candidate's room (free bytes,
    containers placed there) and the account's containers beside its fate."""
    result = decision.explain()
    by_key = {c.key: c for c in decision.zones}
    key = f"free_bytes:{tier}"
    for entry in result["candidates"]:
        candidate = by_key[entry["key"]]
        stats = candidate.summary.numeric[key]
        entry["free_bytes"] = int(stats.sum)
        entry["largest_free_bytes"] = int(stats.max)
        entry["containers"] = containers.get(place_of(candidate), 0)
        entry["account_containers"] = mine.get(place_of(candidate), 0)
    result["request"] = {"tier": tier, "placement": mode}
    return result
