"""Per-feature summary sections: how they merge up the tree and what a child may send."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyfed.zones.sections import MAX_SECTION_KEYS, MAX_SECTIONS, Section
from skyfed.zones.summary import Summary, SummaryError

keys = st.sampled_from(["free_bytes:gold", "free_bytes:silver", "clusters_up", "used_bytes:gold"])
figures = st.dictionaries(keys, st.integers(min_value=0, max_value=10**15), max_size=4)
sections = st.builds(Section, figures, figures)
summaries = st.builds(
    lambda d: Summary(sections=d),
    st.dictionaries(st.sampled_from(["storage", "volumes"]), sections, max_size=2),
)


@given(summaries, summaries, summaries)
def test_sections_merge_in_any_grouping_and_order(a: Summary, b: Summary, c: Summary) -> None:
    left = a.merge(b).merge(c).to_dict()
    assert left == a.merge(b.merge(c)).to_dict()
    assert left == c.merge(b).merge(a).to_dict()


def test_sums_add_up_and_maxima_keep_the_largest() -> None:
    dc1 = Summary(sections={"storage": Section({"free_bytes:gold": 10}, {"free_bytes:gold": 7})})
    dc2 = Summary(sections={"storage": Section({"free_bytes:gold": 5}, {"free_bytes:gold": 5})})
    dc3 = Summary(sections={"volumes": Section({"free_gib:ssd": 3})})
    merged = Summary.merge_all([dc1, dc2, dc3])
    assert merged.sections["storage"] == Section({"free_bytes:gold": 15}, {"free_bytes:gold": 7})
    assert merged.sections["volumes"] == Section({"free_gib:ssd": 3}, {})


def test_a_section_goes_up_the_tree_unchanged() -> None:
    summary = Summary(sections={"storage": Section({"clusters_up": 2}, {"free_bytes:gold": 1.5})})
    assert Summary.from_dict(summary.to_dict()) == summary
    assert "sections" not in Summary().to_dict()  # as a zone without such features sends


@pytest.mark.parametrize(
    "sections",
    [
        [],
        {"Storage": {}},
        {"storage": []},
        {"storage": {"sum": {"free": -1}}},
        {"storage": {"sum": {"free": float("nan")}}},
        {"storage": {"sum": {"free": True}}},
        {"storage": {"max": {"bad key!": 1}}},
        {"storage": {"sum": {f"k{i}": 1 for i in range(MAX_SECTION_KEYS + 1)}}},
        {f"s{i}": {} for i in range(MAX_SECTIONS + 1)},
    ],
)
def test_a_malformed_section_from_a_child_is_refused(sections: Any) -> None:
    with pytest.raises(SummaryError):
        Summary.from_dict({"sections": sections})
