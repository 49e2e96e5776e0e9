"""Reading a child's page in a scatter-gather list: paths, markers and its silent zones."""

from __future__ import annotations

from typing import Any

import pytest

from skyfed.client import SkyfedError, ZoneUnreachable
from skyfed.zones.scatter import Silent, read_page, why_silent


def item(ident: str, *path: str) -> dict[str, Any]:
    return {
        "id": ident,
        "created_at": "2026-01-01T00:00:00+00:00",
        "location": {"path": list(path)},
    }


def test_a_childs_items_are_placed_below_it_and_its_silent_zones_kept_with_why() -> None:
    answer = {
        "servers": [item("a", "dc1"), item("b")],
        "next_marker": "m",
        "unavailable": [
            {"zone": "dc2", "reason": "timed_out"},
            {"zone": "dc3/h", "reason": "offline"},
            {"zone": "dc4", "reason": "made-up"},  # an unknown reason is a failure
        ],
    }
    page = read_page("eu", answer, "servers")
    assert [i["location"]["path"] for i in page.items] == [["eu", "dc1"], ["eu"]]
    assert page.more
    assert page.silent == [
        Silent("eu/dc2", "timed_out"),
        Silent("eu/dc3/h", "offline"),
        Silent("eu/dc4", "failed"),
    ]


def test_a_zone_that_names_its_silent_zones_without_why_has_them_failed() -> None:
    page = read_page("eu", {"servers": [], "unavailable_zones": ["dc2"]}, "servers")
    assert page.silent == [Silent("eu/dc2", "failed")] and not page.more


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {"servers": "x"},
        {"servers": [{"id": "a"}]},
        {"servers": [item("a")], "unavailable": [1]},
    ],
)
def test_an_answer_that_is_not_a_page_is_refused(answer: Any) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        read_page("eu", answer, "servers")


def test_out_of_time_is_told_from_failed() -> None:
    assert why_silent(ZoneUnreachable("http://x", "no answer", timed_out=True)) == "timed_out"
    assert why_silent(ZoneUnreachable("http://x", "connection refused")) == "failed"
    assert why_silent(SkyfedError(500, "internal", "boom")) == "failed"
    assert why_silent(KeyError("servers")) == "failed"
