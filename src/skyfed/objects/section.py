"""Storage's section of the zone summary, from the clusters as last polled (pure).

`sum` figures add up the tree: free and used bytes per tier, clusters up and down.
`max` keeps, per tier, the most free bytes in any one cluster: what one container
placed there could still grow to. A cluster offering several tiers counts its free
bytes under each (its tiers share its disks).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skyfed.objects.models import UP, StorageCluster
from skyfed.zones.sections import Section

NAME = "storage"


def storage_section(clusters: Iterable[StorageCluster]) -> Section:
    sums: dict[str, float] = {"clusters_up": 0, "clusters_down": 0}
    maxes: dict[str, float] = {}
    for cluster in clusters:
        up = cluster.state == UP
        sums["clusters_up" if up else "clusters_down"] += 1
        if not up:
            continue  # its room is not there to be used now
        # A cluster being drained offers no room.
        free = 0 if cluster.draining else max(0, cluster.capacity_bytes - cluster.used_bytes)
        for tier in cluster.tiers:
            sums[f"free_bytes:{tier}"] = sums.get(f"free_bytes:{tier}", 0) + free
            sums[f"used_bytes:{tier}"] = sums.get(f"used_bytes:{tier}", 0) + cluster.used_bytes
            maxes[f"free_bytes:{tier}"] = max(maxes.get(f"free_bytes:{tier}", 0), free)
    return Section(sums, maxes)


def offered(summary: dict[str, Any], tier: str) -> tuple[float, float]:
    """What a child's summary (as it sent it) offers of `tier`: the free bytes in all
    its clusters, and in the one with the most."""
    section = ((summary or {}).get("sections") or {}).get(NAME) or {}
    key = f"free_bytes:{tier}"
    return float((section.get("sum") or {}).get(key, 0)), float(
        (section.get("max") or {}).get(key, 0)
    )


def tiers_of(summary: dict[str, Any]) -> set[str]:
    """The tiers a child's summary offers."""
    section = ((summary or {}).get("sections") or {}).get(NAME) or {}
    return {
        key.split(":", 1)[1] for key in (section.get("sum") or {}) if key.startswith("free_bytes:")
    }
