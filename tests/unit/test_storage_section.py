"""The storage section of a zone summary, from its clusters as last polled."""

from __future__ import annotations

from skyfed.objects.models import DOWN, UP, StorageCluster
from skyfed.objects.section import storage_section
from skyfed.zones.sections import Section

GiB = 1 << 30


def cluster(
    name: str, tiers: list[str], capacity: int, used: int, state: str = UP
) -> StorageCluster:
    return StorageCluster(
        name=name,
        tiers={t: t for t in tiers},
        capacity_bytes=capacity,
        used_bytes=used,
        state=state,
    )


def test_free_and_used_add_up_per_tier_and_the_largest_free_cluster_is_kept() -> None:
    section = storage_section(
        [
            cluster("a", ["gold"], 10 * GiB, 4 * GiB),
            cluster("b", ["gold", "silver"], 20 * GiB, 5 * GiB),
            cluster("c", ["silver"], 8 * GiB, 1 * GiB),
        ]
    )
    assert section.sum == {
        "clusters_up": 3,
        "clusters_down": 0,
        "free_bytes:gold": 21 * GiB,  # 6 + 15
        "used_bytes:gold": 9 * GiB,
        "free_bytes:silver": 22 * GiB,  # 15 + 7: b's free counts under both its tiers
        "used_bytes:silver": 6 * GiB,
    }
    assert section.max == {"free_bytes:gold": 15 * GiB, "free_bytes:silver": 15 * GiB}


def test_a_down_cluster_is_counted_but_offers_no_room() -> None:
    section = storage_section(
        [
            cluster("a", ["gold"], 10 * GiB, 1 * GiB, state=DOWN),
            cluster("b", ["gold"], 4 * GiB, 5 * GiB),  # over its configured size: 0 free
        ]
    )
    assert section.sum["clusters_down"] == 1 and section.sum["clusters_up"] == 1
    assert section.sum["free_bytes:gold"] == 0
    assert section.max["free_bytes:gold"] == 0


def test_sections_of_two_zones_merge_as_the_tree_merges_them() -> None:
    one = storage_section([cluster("a", ["gold"], 10 * GiB, 2 * GiB)])
    two = storage_section([cluster("b", ["gold"], 30 * GiB, 0)])
    merged = Section.from_dict(one.merged(two).to_dict())
    assert merged.sum["free_bytes:gold"] == 38 * GiB
    assert merged.max["free_bytes:gold"] == 30 * GiB
    assert merged.sum["clusters_up"] == 2
