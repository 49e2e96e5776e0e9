"""The storage planner: a new container's place among clusters and child zones,
through the servers' planner (filters, weighers, explain)."""

from __future__ import annotations

import random
from collections import Counter

from skyfed.objects.models import DOWN, UP, StorageCluster
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
from skyfed.zones.models import ChildZone

GiB = 1 << 30


def cluster(name: str, free_gib: float, tiers: tuple[str, ...] = ("gold",), state: str = UP):
    return StorageCluster(
        id=f"id-{name}",
        name=name,
        tiers={t: t for t in tiers},
        capacity_bytes=int(free_gib * GiB) + GiB,
        used_bytes=GiB,
        state=state,
    )


def child(name: str, tier: str, total_gib: float, largest_gib: float, state: str = "active"):
    section = {
        "sum": {f"free_bytes:{tier}": total_gib * GiB, "clusters_up": 2},
        "max": {f"free_bytes:{tier}": largest_gib * GiB},
    }
    return ChildZone(
        id=f"id-{name}", name=name, state=state, summary={"sections": {"storage": section}}
    )


def place_many(
    n: int,
    clusters: list[StorageCluster],
    children: list[ChildZone] = (),  # type: ignore[assignment]
    *,
    tier: str = "gold",
    mode: str = SPREAD,
    project: str = "p",
    counts: Counter[Place] | None = None,
) -> Counter[str]:
    """Place `n` containers one after the other, each counted where it went."""
    counts = counts if counts is not None else Counter()
    mine: Counter[Place] = Counter()
    names: Counter[str] = Counter()
    rng = random.Random(7)
    for i in range(n):
        offered = candidates(tier, clusters, children, counts, mine)
        decision = decide(
            request_for(project, f"c{i}", tier, mode), offered, zone_name="z", rng=rng
        )
        assert decision.best is not None, decision.reason()
        place = place_of(decision.best)
        counts[place] += 1
        mine[place] += 1
        names[decision.best.name] += 1
    return names


def test_containers_spread_in_proportion_to_free_bytes() -> None:
    placed = place_many(40, [cluster("a", 30), cluster("b", 10)])
    assert placed == {"a": 30, "b": 10}


def test_a_burst_spreads_over_equal_clusters() -> None:
    placed = place_many(30, [cluster("a", 10), cluster("b", 10), cluster("c", 10)])
    assert placed == {"a": 10, "b": 10, "c": 10}


def test_clusters_and_children_weigh_by_the_same_room() -> None:
    # A child with 20 GiB over two clusters against a cluster with 10 GiB.
    placed = place_many(30, [cluster("a", 10)], [child("dc2", "gold", 20, 12)])
    assert placed == {"dc2": 20, "a": 10}


def test_down_full_and_other_tier_clusters_and_inactive_children_are_dropped() -> None:
    offered = candidates(
        "gold",
        [
            cluster("up", 5),
            cluster("down", 50, state=DOWN),
            cluster("full", 0),
            cluster("silver-only", 50, tiers=("silver",)),
        ],
        [child("dc-off", "gold", 100, 50, state="unreachable"), child("dc-silver", "silver", 9, 9)],
        {},
    )
    decision = decide(request_for("p", "c", "gold", SPREAD), offered, zone_name="z", explain=True)
    assert [c.name for c in decision.ranked] == ["up"]
    result = explained(decision, "gold", SPREAD, {}, {})
    fate = {c["name"]: c["dropped_by"] for c in result["candidates"]}
    assert fate == {
        "up": None,
        "down": "enabled",
        "full": "capabilities",
        "silver-only": "capabilities",
        "dc-off": "enabled",
        "dc-silver": "capabilities",
    }
    kinds = {c["name"]: c["kind"] for c in result["candidates"]}
    assert kinds["up"] == "cluster" and kinds["dc-off"] == "zone"
    up = next(c for c in result["candidates"] if c["name"] == "up")
    assert up["rank"] == 0 and up["free_bytes"] == 5 * GiB and up["key"] == "cluster:id-up"


def test_nothing_fits_when_no_place_offers_the_tier() -> None:
    offered = candidates("bronze", [cluster("a", 5)], [], {})
    decision = decide(request_for("p", "c", "bronze", SPREAD), offered, zone_name="z")
    assert decision.best is None


def test_account_mode_keeps_an_account_together_and_spreads_accounts() -> None:
    clusters = [cluster("a", 10), cluster("b", 20)]
    counts: Counter[Place] = Counter()
    homes = []
    for project in ("p1", "p2", "p3"):
        placed = place_many(5, clusters, mode=ACCOUNT, project=project, counts=counts)
        assert len(placed) == 1, placed  # the whole account on one cluster
        homes.append(next(iter(placed)))
    # Most room per container first: b (20), then a (10 against 20/6), then b (20/6 > 10/6).
    assert homes == ["b", "a", "b"]


def test_account_mode_moves_on_when_its_place_is_full() -> None:
    full = cluster("a", 0)
    offered = candidates(
        "gold", [full, cluster("b", 5)], [], {(full.id, None): 3}, {(full.id, None): 3}
    )
    decision = decide(request_for("p", "c", "gold", ACCOUNT), offered, zone_name="z")
    assert decision.best is not None and decision.best.name == "b"
