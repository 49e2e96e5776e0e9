"""The cross-zone listing merge: one order, markers, every server exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyfed.zones import listing

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def item(n: int, path: list[str] | None = None, status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "id": f"{n:08d}",
        "created_at": (T0 + timedelta(seconds=n // 3)).isoformat(),  # ties on created_at too
        "status": status,
        "location": {"path": path or []},
    }


def page_of(items: list[dict[str, Any]], limit: int, marker: str | None) -> tuple[list, bool]:
    """What one zone answers: its first `limit` items after the marker, newest first."""
    after = listing.decode_marker(marker) if marker else None
    ordered = sorted(items, key=listing.sort_key, reverse=True)
    left = [i for i in ordered if listing.after(listing.sort_key(i), after)]
    return left[:limit], len(left) > limit


def list_all(zones: list[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    marker = None
    for _ in range(1000):
        answers = [page_of(z, limit, marker) for z in zones]
        items, marker = listing.merge([a[0] for a in answers], limit, any(a[1] for a in answers))
        assert len(items) <= limit
        seen += items
        if marker is None:
            return seen
    raise AssertionError("paging did not end")


@given(
    st.lists(st.integers(0, 300), unique=True, max_size=80),
    st.integers(1, 4),
    st.integers(1, 9),
)
def test_paging_lists_every_server_once_in_order(ids: list[int], zones: int, limit: int) -> None:
    split: list[list[dict[str, Any]]] = [[] for _ in range(zones)]
    for n in ids:
        split[n % zones].append(item(n))
    listed = list_all(split, limit)
    assert [i["id"] for i in listed] == [
        i["id"] for i in sorted((item(n) for n in ids), key=listing.sort_key, reverse=True)
    ]


@given(st.lists(st.integers(0, 200), unique=True, max_size=40), st.integers(1, 7))
def test_a_server_on_its_way_to_a_child_is_listed_once_as_the_child_has_it(
    ids: list[int], limit: int
) -> None:
    """The parent still lists servers in transit; the child's copy wins when both answer."""
    parent = [item(n, status="BUILDING") for n in ids]
    child = [item(n, ["dc"], status="ACTIVE") for n in ids if n % 2 == 0]
    listed = list_all([parent, child], limit)
    assert sorted(i["id"] for i in listed) == sorted(f"{n:08d}" for n in ids)
    for entry in listed:
        in_child = int(entry["id"]) % 2 == 0
        assert entry["status"] == ("ACTIVE" if in_child else "BUILDING")
        assert entry["location"]["path"] == (["dc"] if in_child else [])


def test_markers_round_trip_and_foreign_ones_are_refused() -> None:
    key = listing.sort_key(item(7))
    assert listing.decode_marker(listing.encode_marker(key)) == key
    for bad in ("nonsense", "W10", listing.encode_marker(key)[:-3] + "###"):
        with pytest.raises(listing.MarkerError):
            listing.decode_marker(bad)
