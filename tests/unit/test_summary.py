"""Capability summaries: building, merging, pruning and the wire format (pure)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyfed.zones.capabilities import Constraint, Value, parse_constraint
from skyfed.zones.summary import (
    FREE_KEYS,
    MAX_DISTINCT_VALUES,
    NumericStats,
    Summary,
    SummaryError,
    summarize_hosts,
)


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int


@dataclass
class Host:
    """Implements the HostLike protocol; `values` also carries the free amounts."""

    disabled: bool = False
    capabilities: dict[str, Value] = field(default_factory=dict)
    free: tuple[int, int, int] = (0, 0, 0)

    @property
    def values(self) -> dict[str, Value]:
        return {**self.capabilities, **dict(zip(FREE_KEYS, self.free, strict=True))}


FLAVORS = [
    Flavor("tiny", 1, 512, 1),
    Flavor("small", 2, 2048, 20),
    Flavor("large", 8, 16384, 100),
    Flavor("diskless", 4, 4096, 0),
]


def host(disabled: bool = False, free: tuple[int, int, int] = (0, 0, 0), **caps: Value) -> Host:
    return Host(disabled=disabled, capabilities=dict(caps), free=free)


def summarize(hosts: list[Host]) -> Summary:
    return summarize_hosts(hosts, FLAVORS)


def expected_fits(hosts: list[Host], flavor: Flavor) -> int:
    total = 0
    for h in hosts:
        if h.disabled:
            continue
        fv, fr, fd = h.free
        n = min(fv // flavor.vcpus, fr // flavor.ram_mb)
        if flavor.disk_gb:
            n = min(n, fd // flavor.disk_gb)
        total += n
    return total


# -- strategies ----------------------------------------------------------------------

STRING_VALUES = ["x86_64", "arm64", "riscv", "4", "8", "a100", ""]
KEYS = ["arch", "gpu", "gen", "rack", "ssd", "mixed"]

cap_value = st.one_of(
    st.sampled_from(STRING_VALUES),
    st.integers(min_value=-5, max_value=20),
    st.integers(min_value=-(10**12), max_value=10**12),
)
hosts_strategy = st.builds(
    Host,
    disabled=st.booleans(),
    capabilities=st.dictionaries(st.sampled_from(KEYS), cap_value, max_size=len(KEYS)),
    free=st.tuples(
        st.integers(min_value=0, max_value=70),
        st.integers(min_value=0, max_value=70_000),
        st.integers(min_value=0, max_value=500),
    ),
)
host_lists = st.lists(hosts_strategy, max_size=25)

operand_values = st.one_of(
    st.sampled_from(STRING_VALUES[:-1]),
    st.integers(min_value=-6, max_value=21),
    st.sampled_from(["4", "8", "4.0", "-1", "20"]),
)


@st.composite
def constraints(draw: st.DrawFn) -> Constraint:
    key = draw(st.sampled_from([*KEYS, "free_vcpus", "free_ram_mb", "absent"]))
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "in", "exists", "bare"]))
    if op == "exists":
        return parse_constraint(key, "exists")
    if op == "in":
        return parse_constraint(key, draw(st.lists(operand_values, min_size=1, max_size=4)))
    if op == "bare":
        return parse_constraint(key, draw(operand_values))
    if op in ("<", "<=", ">", ">="):
        number = draw(st.integers(min_value=-(10**12), max_value=10**12))
        return parse_constraint(key, f"{op} {number}")
    return parse_constraint(key, f"{op} {draw(operand_values)}")


def split(items: list[Any], cuts: list[int]) -> list[list[Any]]:
    points = sorted({min(c, len(items)) for c in cuts})
    parts, start = [], 0
    for point in [*points, len(items)]:
        parts.append(items[start:point])
        start = point
    return parts


# -- summarize_hosts -----------------------------------------------------------------


def test_empty_host_list() -> None:
    summary = summarize([])
    assert summary.hosts == 0
    assert summary.disabled == 0
    assert summary.numeric == {}
    assert summary.strings == {}
    assert summary.fits == {f.name: 0 for f in FLAVORS}
    assert summary.enabled_hosts == 0


def test_summarize_counts_numbers_strings_and_disabled() -> None:
    hosts = [
        host(arch="x86_64", gpu=8, free=(8, 16384, 100)),
        host(arch="x86_64", gpu=0, free=(4, 4096, 10)),
        host(arch="arm64", gpu=2, free=(0, 0, 0)),
        host(disabled=True, arch="riscv", gpu=100, free=(64, 1 << 20, 1000)),
    ]
    summary = summarize(hosts)
    assert summary.hosts == 4
    assert summary.disabled == 1
    assert summary.enabled_hosts == 3
    assert summary.zones == 0
    assert summary.strings == {"arch": {"x86_64": 2, "arm64": 1}}
    assert summary.numeric["gpu"] == NumericStats(0, 8, 10, 3)
    assert summary.numeric["free_vcpus"] == NumericStats(0, 8, 12, 3)
    # tiny: 8 + 4 + 0; small: min(4, 8, 5)=4 + min(2, 2, 0)=0; large: 1 + 0
    assert summary.fits == {"tiny": 8 + 4, "small": 4, "large": 1, "diskless": 2 + 1}


def test_disabled_hosts_add_no_capabilities_or_capacity() -> None:
    summary = summarize([host(disabled=True, arch="arm64", free=(64, 1 << 20, 1000))])
    assert summary.hosts == 1
    assert summary.disabled == 1
    assert summary.strings == {}
    assert summary.numeric == {}
    assert all(n == 0 for n in summary.fits.values())
    assert not summary.may_satisfy(parse_constraint("arch", "arm64"))
    assert not summary.may_fit(1, 1, 1)


def test_key_with_string_and_numeric_values_is_kept_in_both() -> None:
    summary = summarize([host(gen="7"), host(gen=8), host(gen=6)])
    assert summary.strings["gen"] == {"7": 1}
    assert summary.numeric["gen"] == NumericStats(6, 8, 14, 2)
    assert summary.hosts_with("gen") == 3


def test_fragmentation_2000_hosts_with_one_free_core_fit_no_two_core_flavor() -> None:
    hosts = [host(free=(1, 1 << 20, 10_000)) for _ in range(2000)]
    two_core = Flavor("two", 2, 1024, 10)
    one_core = Flavor("one", 1, 1024, 10)
    summary = summarize_hosts(hosts, [two_core, one_core])
    assert summary.fits["two"] == 0
    assert summary.fits["one"] == 2000
    assert summary.numeric["free_vcpus"].sum == 2000
    assert not summary.may_fit(2, 1024, 10)
    assert summary.may_fit(1, 1024, 10)


def test_fits_limited_by_the_scarcest_resource() -> None:
    flavor = Flavor("f", 2, 1000, 10)
    assert summarize_hosts([host(free=(100, 3500, 1000))], [flavor]).fits == {"f": 3}
    assert summarize_hosts([host(free=(100, 100_000, 25))], [flavor]).fits == {"f": 2}
    assert summarize_hosts([host(free=(5, 100_000, 1000))], [flavor]).fits == {"f": 2}


def test_flavor_without_disk_ignores_free_disk() -> None:
    flavor = Flavor("nodisk", 1, 1, 0)
    assert summarize_hosts([host(free=(3, 10, 0))], [flavor]).fits == {"nodisk": 3}


def test_numeric_stats_merged() -> None:
    a = NumericStats(1, 5, 9, 3)
    b = NumericStats(-2, 4, 2, 1)
    assert a.merged(b) == NumericStats(-2, 5, 11, 4)
    assert b.merged(a) == NumericStats(-2, 5, 11, 4)


# -- merging -------------------------------------------------------------------------


def test_merge_adds_counts_and_widens_ranges() -> None:
    a = summarize([host(arch="arm64", gpu=2, free=(4, 4096, 40))])
    b = summarize([host(arch="arm64", gpu=8, free=(2, 2048, 20)), host(arch="x86_64")])
    merged = a.merge(b)
    assert merged.hosts == 3
    assert merged.strings["arch"] == {"arm64": 2, "x86_64": 1}
    assert merged.numeric["gpu"] == NumericStats(2, 8, 10, 2)
    assert merged.fits["tiny"] == 4 + 2
    assert merged.fits["small"] == 2 + 1


def test_merge_does_not_mutate_its_inputs() -> None:
    a = summarize([host(arch="arm64", gpu=2)])
    b = summarize([host(arch="arm64", gpu=8)])
    before_a, before_b = a.to_dict(), b.to_dict()
    a.merge(b)
    b.merge(a)
    assert a.to_dict() == before_a
    assert b.to_dict() == before_b


def test_merge_adds_zones() -> None:
    assert Summary(zones=2).merge(Summary(zones=3)).zones == 5


def test_merge_all() -> None:
    parts = [summarize([host(arch="arm64")]), summarize([host(arch="arm64", disabled=True)])]
    merged = Summary.merge_all(parts)
    assert merged.hosts == 2
    assert merged.disabled == 1
    assert merged.strings == {"arch": {"arm64": 1}}
    assert Summary.merge_all([]).to_dict() == Summary().to_dict()


@given(a=host_lists, b=host_lists, c=host_lists)
@settings(max_examples=100)
def test_merge_is_associative(a: list[Host], b: list[Host], c: list[Host]) -> None:
    sa, sb, sc = summarize(a), summarize(b), summarize(c)
    assert sa.merge(sb).merge(sc).to_dict() == sa.merge(sb.merge(sc)).to_dict()


@given(a=host_lists, b=host_lists)
@settings(max_examples=100)
def test_merge_is_commutative(a: list[Host], b: list[Host]) -> None:
    sa, sb = summarize(a), summarize(b)
    assert sa.merge(sb).to_dict() == sb.merge(sa).to_dict()


@given(hosts=host_lists, zones=st.integers(min_value=0, max_value=5))
@settings(max_examples=100)
def test_empty_summary_is_identity(hosts: list[Host], zones: int) -> None:
    summary = summarize(hosts)
    summary.zones = zones
    assert Summary().merge(summary).to_dict() == summary.to_dict()
    assert summary.merge(Summary()).to_dict() == summary.to_dict()


@given(
    hosts=st.lists(hosts_strategy, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=5),
    data=st.data(),
)
@settings(max_examples=150)
def test_merging_parts_equals_summary_of_whole(
    hosts: list[Host], cuts: list[int], data: st.DataObject
) -> None:
    parts = split(hosts, cuts)
    whole = summarize(hosts).to_dict()
    summaries = [summarize(p) for p in parts]
    assert Summary.merge_all(summaries).to_dict() == whole
    # ... in any order.
    shuffled = data.draw(st.permutations(summaries))
    assert Summary.merge_all(shuffled).to_dict() == whole


@given(hosts=st.lists(hosts_strategy, max_size=60))
@settings(max_examples=100)
def test_summary_matches_a_direct_computation(hosts: list[Host]) -> None:
    summary = summarize(hosts)
    enabled = [h for h in hosts if not h.disabled]
    assert summary.hosts == len(hosts)
    assert summary.disabled == len(hosts) - len(enabled)
    for key in {k for h in enabled for k in h.values}:
        numbers = [h.values[key] for h in enabled if isinstance(h.values.get(key), int)]
        strings = [h.values[key] for h in enabled if isinstance(h.values.get(key), str)]
        if numbers:
            assert summary.numeric[key] == NumericStats(
                min(numbers), max(numbers), sum(numbers), len(numbers)
            )
        else:
            assert key not in summary.numeric
        if strings:
            assert summary.strings[key] == {v: strings.count(v) for v in set(strings)}
        else:
            assert key not in summary.strings
        assert summary.hosts_with(key) == len(numbers) + len(strings)


# -- fits ----------------------------------------------------------------------------


@given(hosts=st.lists(hosts_strategy, max_size=60))
@settings(max_examples=150)
def test_fits_is_the_sum_of_per_host_fits(hosts: list[Host]) -> None:
    summary = summarize(hosts)
    assert set(summary.fits) == {f.name for f in FLAVORS}
    for flavor in FLAVORS:
        assert summary.fits[flavor.name] == expected_fits(hosts, flavor)


# -- overflowing string keys -------------------------------------------------------------


def test_many_distinct_values_collapse_to_a_total() -> None:
    n = MAX_DISTINCT_VALUES + 88
    hosts = [host(serial=f"s{i}", arch="arm64") for i in range(n)]
    hosts.append(host(disabled=True, serial="disabled-one"))
    summary = summarize(hosts)
    assert "serial" not in summary.strings
    assert summary.strings_overflow == {"serial": n}
    assert summary.strings["arch"] == {"arm64": n}
    assert summary.hosts_with("serial") == n
    # An overflowed key may hold anything: pruning must not rule it out.
    assert summary.may_satisfy(parse_constraint("serial", "never-seen"))
    assert summary.may_satisfy(parse_constraint("serial", "!= s1"))


def test_exactly_max_distinct_values_are_kept() -> None:
    hosts = [host(serial=f"s{i}") for i in range(MAX_DISTINCT_VALUES)]
    summary = summarize(hosts)
    assert len(summary.strings["serial"]) == MAX_DISTINCT_VALUES
    assert summary.strings_overflow == {}
    assert not summary.may_satisfy(parse_constraint("serial", "never-seen"))


def test_merge_overflows_when_the_union_is_too_large() -> None:
    half = MAX_DISTINCT_VALUES // 2 + 10
    a = summarize([host(serial=f"a{i}") for i in range(half)])
    b = summarize([host(serial=f"b{i}") for i in range(half)] + [host(serial="a0")])
    assert a.strings_overflow == {} and b.strings_overflow == {}
    merged = a.merge(b)
    assert "serial" not in merged.strings
    assert merged.strings_overflow == {"serial": 2 * half + 1}
    # Overflow is sticky: merging with a summary that has the key keeps counting.
    again = merged.merge(summarize([host(serial="a1"), host(serial="zz")]))
    assert again.strings_overflow == {"serial": 2 * half + 3}
    assert "serial" not in again.strings


def string_summary(part: tuple[int, int, int]) -> Summary:
    """A summary of hosts with key `rack`: values r<lo>..r<lo+size-1>, `mult` hosts each."""
    lo, size, mult = part
    hosts = [host(rack=f"r{v}") for v in range(lo, lo + size) for _ in range(mult)]
    return summarize_hosts(hosts, [])


# Ranges of values, sized so that one, two or three parts can cross the threshold.
rack_parts = st.tuples(
    st.integers(min_value=0, max_value=MAX_DISTINCT_VALUES + 200),
    st.integers(min_value=0, max_value=MAX_DISTINCT_VALUES + 20),
    st.integers(min_value=1, max_value=2),
)


@given(a=rack_parts, b=rack_parts, c=rack_parts)
@settings(max_examples=60, deadline=None)
def test_overflow_rule_stays_associative_and_commutative(
    a: tuple[int, int, int], b: tuple[int, int, int], c: tuple[int, int, int]
) -> None:
    sa, sb, sc = string_summary(a), string_summary(b), string_summary(c)
    left = sa.merge(sb).merge(sc).to_dict()
    assert left == sa.merge(sb.merge(sc)).to_dict()
    assert left == sa.merge(sc).merge(sb).to_dict()
    assert left == sc.merge(sb).merge(sa).to_dict()
    total = sum(size * mult for _, size, mult in (a, b, c))
    distinct = {v for lo, size, _ in (a, b, c) for v in range(lo, lo + size)}
    if len(distinct) > MAX_DISTINCT_VALUES:
        assert left["strings_overflow"] == {"rack": total}
        assert "rack" not in left["strings"]
    else:
        assert left["strings_overflow"] == {}
        assert sum(left["strings"].get("rack", {}).values()) == total
        assert len(left["strings"].get("rack", {})) == len(distinct)


@given(counts=st.integers(min_value=MAX_DISTINCT_VALUES + 1, max_value=MAX_DISTINCT_VALUES + 50))
@settings(max_examples=10, deadline=None)
def test_overflow_split_equals_whole(counts: int) -> None:
    hosts = [host(serial=f"s{i}") for i in range(counts)]
    whole = summarize(hosts).to_dict()
    assert whole["strings_overflow"] == {"serial": counts}
    for cut in (0, 1, counts // 2, counts - 1):
        merged = summarize(hosts[:cut]).merge(summarize(hosts[cut:]))
        assert merged.to_dict() == whole


# -- may_satisfy ---------------------------------------------------------------------------


@given(hosts=host_lists, constraint=constraints())
@settings(max_examples=250)
def test_may_satisfy_is_sound(hosts: list[Host], constraint: Constraint) -> None:
    summary = summarize(hosts)
    if any(constraint.matches(h.values) for h in hosts if not h.disabled):
        assert summary.may_satisfy(constraint), constraint
    # Merged from parts, the answer is the same (pruning works at every level).
    merged = Summary.merge_all(summarize([h]) for h in hosts)
    assert merged.may_satisfy(constraint) is summary.may_satisfy(constraint)


@given(hosts=host_lists, constraint=constraints())
@settings(max_examples=100)
def test_may_satisfy_is_sound_after_a_round_trip(hosts: list[Host], constraint: Constraint) -> None:
    summary = Summary.from_dict(json.loads(json.dumps(summarize(hosts).to_dict())))
    if any(constraint.matches(h.values) for h in hosts if not h.disabled):
        assert summary.may_satisfy(constraint)


def test_may_satisfy_prunes_what_cannot_match() -> None:
    summary = summarize(
        [
            host(arch="x86_64", gpu=0, gen=6),
            host(arch="x86_64", gpu=8, gen=7),
            host(disabled=True, arch="arm64", gpu=16, gen=9),
        ]
    )

    def may(key: str, spec: object) -> bool:
        return summary.may_satisfy(parse_constraint(key, spec))

    assert may("arch", "x86_64")
    assert not may("arch", "arm64")  # only a disabled host has it
    assert may("arch", "in arm64, x86_64")
    assert not may("arch", ["arm64", "riscv"])
    assert may("gpu", ">= 8")
    assert not may("gpu", "> 8")
    assert not may("gpu", ">= 16")
    assert may("gpu", "< 1")
    assert not may("gpu", "< 0")
    assert may("gpu", "<= 0")
    assert may("gpu", "= 4")  # within [min, max]: cannot tell
    assert not may("gpu", "= 9")
    assert not may("gen", "= 9")
    assert may("gpu", "exists")
    assert not may("fpga", "exists")
    assert not may("fpga", ">= 0")
    assert not may("arch", ">= 0")  # a string key never meets a range
    assert not may("fpga", "= 1")
    assert may("fpga", "!= 1")  # != holds where the key is absent
    assert may("arch", "!= arm64")
    assert not may("arch", "!= x86_64")  # every enabled host has x86_64


def test_may_satisfy_not_equal_with_all_numbers_equal() -> None:
    summary = summarize([host(gpu=0), host(gpu=0), host(disabled=True, gpu=1)])
    assert not summary.may_satisfy(parse_constraint("gpu", "!= 0"))
    assert summary.may_satisfy(parse_constraint("gpu", "!= 1"))
    mixed = summarize([host(gpu=0), host(gpu="0")])
    assert not mixed.may_satisfy(parse_constraint("gpu", "!= 0"))
    partial = summarize([host(gpu=0), host()])
    assert partial.may_satisfy(parse_constraint("gpu", "!= 0"))


def test_may_satisfy_number_operand_finds_string_capability() -> None:
    summary = summarize([host(gen="8")])
    assert summary.may_satisfy(parse_constraint("gen", 8))
    assert summary.may_satisfy(parse_constraint("gen", "= 8"))
    assert not summary.may_satisfy(parse_constraint("gen", ">= 8"))


def test_empty_summary_satisfies_nothing_but_not_equal_is_false_too() -> None:
    empty = Summary()
    for spec in ("x", "!= x", ">= 0", "exists", "in a, b"):
        assert not empty.may_satisfy(parse_constraint("k", spec)), spec


# -- may_fit -------------------------------------------------------------------------------


def test_may_fit() -> None:
    summary = summarize([host(free=(8, 4096, 50)), host(free=(2, 32768, 500))])
    assert summary.may_fit(8, 4096, 50)
    assert summary.may_fit(2, 32768, 500)
    # Each amount fits some host, though no host has all three: "may" means may.
    assert summary.may_fit(8, 32768, 500)
    assert not summary.may_fit(9, 1, 1)
    assert not summary.may_fit(1, 32769, 1)
    assert not summary.may_fit(1, 1, 501)
    assert summary.may_fit(0, 0, 0)


def test_may_fit_needs_an_enabled_host() -> None:
    assert not Summary().may_fit(0, 0, 0)
    assert not Summary().may_fit(1, 1, 1)
    assert not summarize([host(disabled=True, free=(64, 1 << 20, 1000))]).may_fit(0, 0, 0)


def test_may_fit_ignores_zero_needs_even_without_stats() -> None:
    summary = Summary(hosts=1, numeric={"free_vcpus": NumericStats(4, 4, 4, 1)})
    assert summary.may_fit(4, 0, 0)
    assert not summary.may_fit(4, 1, 0)


@given(hosts=host_lists, need=st.tuples(*(st.integers(min_value=0, max_value=80_000),) * 3))
@settings(max_examples=150)
def test_may_fit_is_sound(hosts: list[Host], need: tuple[int, int, int]) -> None:
    summary = summarize(hosts)
    if any(all(f >= n for f, n in zip(h.free, need, strict=True)) for h in hosts if not h.disabled):
        assert summary.may_fit(*need)
    if not any(not h.disabled for h in hosts):
        assert not summary.may_fit(*need)


# -- wire format ---------------------------------------------------------------------------


def test_to_dict_shape() -> None:
    summary = summarize([host(arch="arm64", gpu=2, free=(1, 512, 1))])
    doc = summary.to_dict()
    assert doc["hosts"] == 1
    assert doc["disabled"] == 0
    assert doc["zones"] == 0
    assert doc["numeric"]["gpu"] == {"min": 2, "max": 2, "sum": 2, "count": 1}
    assert doc["strings"] == {"arch": {"arm64": 1}}
    assert doc["strings_overflow"] == {}
    assert doc["fits"] == {"diskless": 0, "large": 0, "small": 0, "tiny": 1}
    assert json.loads(json.dumps(doc)) == doc


@given(hosts=st.lists(hosts_strategy, max_size=40), zones=st.integers(min_value=0, max_value=9))
@settings(max_examples=100)
def test_round_trip(hosts: list[Host], zones: int) -> None:
    summary = summarize(hosts)
    summary.zones = zones
    doc = summary.to_dict()
    again = Summary.from_dict(json.loads(json.dumps(doc)))
    assert again == summary
    assert again.to_dict() == doc


def test_round_trip_with_overflow() -> None:
    summary = summarize([host(serial=f"s{i}") for i in range(MAX_DISTINCT_VALUES + 1)])
    assert Summary.from_dict(summary.to_dict()) == summary


def test_from_dict_defaults_missing_sections() -> None:
    assert Summary.from_dict({}) == Summary()
    assert Summary.from_dict({"hosts": 3}) == Summary(hosts=3)


def test_from_dict_accepts_float_stats() -> None:
    doc = {"numeric": {"ghz": {"min": 1.5, "max": 3.5, "sum": 5.0, "count": 2}}, "hosts": 2}
    assert Summary.from_dict(doc).numeric["ghz"] == NumericStats(1.5, 3.5, 5.0, 2)


def _valid() -> dict[str, Any]:
    return summarize([host(arch="arm64", gpu=2, free=(4, 4096, 40)), host(disabled=True)]).to_dict()


def _with(path: list[str], value: Any) -> dict[str, Any]:
    doc = _valid()
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def _without(path: list[str]) -> dict[str, Any]:
    doc = _valid()
    target = doc
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "summary",
        42,
        _with(["hosts"], -1),
        _with(["hosts"], True),
        _with(["hosts"], 1.0),
        _with(["hosts"], "2"),
        _with(["disabled"], -1),
        _with(["disabled"], 5),  # more disabled than hosts
        _with(["zones"], -3),
        _with(["zones"], False),
        _with(["numeric"], []),
        _with(["numeric"], {"gpu": [1, 2, 3, 4]}),
        _with(["numeric"], {"gpu": "1"}),
        _with(["numeric"], {"gpu": None}),
        _with(["numeric", "gpu", "min"], True),
        _with(["numeric", "gpu", "max"], False),
        _with(["numeric", "gpu", "sum"], "2"),
        _with(["numeric", "gpu", "min"], math.nan),
        _with(["numeric", "gpu", "max"], math.inf),
        _with(["numeric", "gpu", "sum"], -math.inf),
        pytest.param(_with(["numeric", "gpu", "min"], 10**400), id="int-too-large"),
        _with(["numeric", "gpu", "count"], -1),
        _with(["numeric", "gpu", "count"], 1.5),
        _with(["numeric", "gpu", "count"], True),
        _with(["numeric", "gpu", "min"], 3),  # min above max
        _without(["numeric", "gpu", "count"]),
        _without(["numeric", "gpu", "min"]),
        _with(["strings"], ["arch"]),
        _with(["strings", "arch"], ["arm64"]),
        _with(["strings", "arch", "arm64"], -1),
        _with(["strings", "arch", "arm64"], True),
        _with(["strings", "arch", "arm64"], None),
        _with(["strings_overflow"], {"serial": -5}),
        _with(["strings_overflow"], [1]),
        _with(["fits"], {"tiny": -1}),
        _with(["fits"], {"tiny": 2.0}),
        _with(["fits"], {"tiny": False}),
        _with(["fits"], None),
    ],
)
def test_from_dict_rejects_malformed_documents(doc: Any) -> None:
    with pytest.raises(SummaryError):
        Summary.from_dict(doc)


def test_valid_document_fixture_is_accepted() -> None:
    # The malformed cases above are one edit away from this document.
    assert Summary.from_dict(_valid()).to_dict() == _valid()


def test_summary_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="more disabled hosts"):
        Summary.from_dict({"hosts": 1, "disabled": 2})
