"""Placement properties (hypothesis): the fast paths answer what the reference
answers, sampling never misses a fit, and reserving never overcommits a host."""

from __future__ import annotations

import random
from itertools import compress, product
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyfed.scheduling.candidates import HostCandidate, ZoneCandidate, reserve_host
from skyfed.scheduling.config import PlannerConfig
from skyfed.scheduling.filters import (
    FILTERS,
    NO_ROOM,
    FilterContext,
    compile_constraint,
    compile_summary_constraint,
    host_flags,
    host_meets,
    host_screen,
    screen_hosts,
    screen_zones,
    zone_flags,
    zone_has_room,
    zone_may_satisfy,
    zone_screen,
)
from skyfed.scheduling.planner import ScanOrder, _steps, plan
from skyfed.scheduling.request import PlacementRequest
from skyfed.scheduling.weighers import zone_room
from skyfed.zones.capabilities import OPERATORS, Constraint, Value, parse_constraint
from skyfed.zones.summary import FREE_KEYS, NumericStats, Summary, summarize_hosts

KEYS = ("arch", "ssd", "gpu", "gen", "free_ram_mb")
TEXTS = ("arm64", "x86_64", "1", "2.5", "a100")
numbers = st.one_of(st.integers(-3, 12), st.sampled_from([0.5, 2.5, 1e6, -0.0]))
values: st.SearchStrategy[Value] = st.one_of(st.sampled_from(TEXTS), numbers)
caps_strategy = st.dictionaries(st.sampled_from(KEYS[:4]), values, max_size=4)


@st.composite
def constraints(draw: Any) -> Constraint:
    key = draw(st.sampled_from(KEYS))
    kind = draw(st.sampled_from(["bare", "op", "in", "list", "exists", "number"]))
    if kind == "bare":
        spec: object = draw(st.sampled_from(TEXTS))
    elif kind == "number":
        spec = draw(numbers)
    elif kind == "op":
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        operand = draw(numbers) if op in ("<", "<=", ">", ">=") else draw(values)
        spec = f"{op} {operand}"
    elif kind == "in":
        spec = "in " + ", ".join(str(v) for v in draw(st.lists(values, min_size=1, max_size=3)))
    elif kind == "list":
        spec = draw(st.lists(values, min_size=1, max_size=3))
    else:
        spec = "exists"
    return parse_constraint(key, spec)


@st.composite
def hosts_strategy(draw: Any, min_size: int = 0, max_size: int = 8) -> list[HostCandidate]:
    n = draw(st.integers(min_size, max_size))
    out = []
    for i in range(n):
        out.append(
            HostCandidate(
                name=f"h{i}",
                values=draw(caps_strategy),
                free_vcpus=draw(st.integers(0, 8)),
                free_ram_mb=draw(st.integers(0, 8)) * 1024,
                free_disk_gb=draw(st.integers(0, 4)) * 10,
                enabled=draw(st.booleans()) or draw(st.booleans()),
                online=draw(st.booleans()) or draw(st.booleans()),
                group_members=draw(st.integers(0, 2)) if draw(st.booleans()) else 0,
            )
        )
    return out


class _Beat:
    def __init__(self, h: HostCandidate) -> None:
        self.disabled = h.disabled
        self.free = h.free
        self.values = {**h.values, **dict(zip(FREE_KEYS, h.free, strict=True))}


class _Flavor:
    name, vcpus, ram_mb, disk_gb = "f1", 2, 2048, 10


@st.composite
def zones_strategy(draw: Any, max_size: int = 5) -> list[ZoneCandidate]:
    n = draw(st.integers(0, max_size))
    out = []
    for i in range(n):
        summary = summarize_hosts([_Beat(h) for h in draw(hosts_strategy())], [_Flavor()])
        if summary.strings and draw(st.booleans()):  # as if a key had too many values
            key = draw(st.sampled_from(sorted(summary.strings)))
            summary.strings_overflow[key] = sum(summary.strings.pop(key).values())
        out.append(
            ZoneCandidate(
                id=f"z{i}",
                name=f"zone{i}",
                active=draw(st.booleans()) or draw(st.booleans()),
                summary=summary,
                capabilities=draw(caps_strategy),
                weight_offset=draw(st.sampled_from([0.0, 0.5, -1.0])),
                weight_scale=draw(st.sampled_from([1.0, 0.0, 2.0])),
                group_members=draw(st.integers(0, 2)) if draw(st.booleans()) else 0,
            )
        )
    return out


@st.composite
def requests(
    draw: Any, zone_names: tuple[str, ...] = ("zone0", "zone1", "zone9")
) -> PlacementRequest:
    policy = draw(st.sampled_from([None, "affinity", "anti-affinity"]))
    path = st.lists(st.sampled_from(zone_names), min_size=1, max_size=2).map(tuple)
    return PlacementRequest(
        server_id=f"s{draw(st.integers(0, 10**6))}",
        vcpus=draw(st.integers(0, 4)),
        ram_mb=draw(st.integers(0, 4)) * 1024,
        disk_gb=draw(st.integers(0, 2)) * 10,
        flavor=draw(st.sampled_from([None, "f1", "other"])),
        constraints=tuple(draw(st.lists(constraints(), max_size=2))),
        group="g" if policy else None,
        group_policy=policy,
        within=draw(st.one_of(st.just(()), path)),
        avoid=tuple(draw(st.lists(path, max_size=2))),
        exclude=frozenset(draw(st.lists(st.sampled_from(["host:h1", "zone:z0", "host:h3"])))),
    )


# -- compiled constraints answer what the reference answers --------------------------


@given(constraints(), caps_strategy)
def test_compiled_constraint_is_matches(constraint: Constraint, caps: dict[str, Value]) -> None:
    assert compile_constraint(constraint)(caps) == constraint.matches(caps)


@given(constraints(), hosts_strategy(max_size=6))
def test_host_flags_are_host_meets(constraint: Constraint, hosts: list[HostCandidate]) -> None:
    assert host_flags(constraint)(hosts) == [host_meets(h, constraint) for h in hosts]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(constraints(), zones_strategy())
def test_zone_flags_are_may_satisfy(constraint: Constraint, zones: list[ZoneCandidate]) -> None:
    assert [compile_summary_constraint(constraint)(z.summary) for z in zones] == [
        z.summary.may_satisfy(constraint) for z in zones
    ]
    assert zone_flags(constraint)(zones) == [zone_may_satisfy(z, constraint) for z in zones]


@given(requests())
def test_steps_follow_each_filters_applies(request: PlacementRequest) -> None:
    host_steps, _, zone_steps, _ = _steps(request)
    applying = [f.name for f in FILTERS if f.applies(request)]
    assert [name for name, _ in host_steps] == applying == [name for name, _ in zone_steps]


def test_generated_screens_at_the_boundaries() -> None:
    host = HostCandidate(
        name="h",
        values={"gen": 3, "arch": "arm64"},
        free_vcpus=1,
        free_ram_mb=1024,
        free_disk_gb=10,
    )
    summary = summarize_hosts([_Beat(host)], [_Flavor()])
    inner = ZoneCandidate(id="z", name="inner", active=True, summary=summary)  # by its summary
    own = ZoneCandidate(
        id="o", name="own", active=True, summary=summary, capabilities={"gen": 2, "arch": "x86_64"}
    )
    # (host and inner, own): the child's own capabilities answer for it: gen 2, x86_64.
    for key, spec, want, want_own in (
        ("gen", ">= 3", True, False),
        ("gen", ">= 2", True, True),
        ("gen", ">= 3.5", False, False),
        ("gen", "= 3", True, False),
        ("arch", "arm64", True, False),
        ("arch", "x86_64", False, True),
    ):
        request = PlacementRequest(
            server_id="s",
            vcpus=1,
            ram_mb=1024,
            disk_gb=10,
            constraints=(parse_constraint(key, spec),),
        )
        assert screen_hosts([host], request) == [want], (key, spec)
        assert screen_zones([inner], request) == [want], (key, spec)
        assert screen_zones([own], request) == [want_own], (key, spec)


# -- the generated screens against the plain definitions, operator by operator -------
#
# `host_screen` and `zone_screen` are built as source text and compiled (see
# filters.py). Here they meet the definitions they stand for, with no compiled piece
# in between: `Constraint.matches` on a host's values (its live free amounts over
# them) or a child's own capabilities, `Summary.may_satisfy`, `Summary.may_fit`, and
# the room `weighers.zone_room` gives. Every operator gets its own run, its operand
# often taken from what the candidates hold (so = and the ranges meet their
# boundaries), next to other constraints in any order.


@st.composite
def summaries(draw: Any) -> Summary:
    """Any well-formed summary, not only one of real hosts: the screens must agree
    with the definitions on whatever a child reports."""
    hosts = draw(st.integers(0, 4))
    numeric = {}
    for key in draw(st.lists(st.sampled_from(KEYS + FREE_KEYS), unique=True, max_size=6)):
        low, high = sorted((draw(numbers), draw(numbers)))
        numeric[key] = NumericStats(
            min=low, max=high, sum=draw(numbers), count=draw(st.integers(0, 4))
        )
    strings = {
        key: draw(st.dictionaries(st.sampled_from(TEXTS), st.integers(1, 3), max_size=3))
        for key in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))
    }
    overflow = draw(st.dictionaries(st.sampled_from(KEYS), st.integers(1, 9), max_size=2))
    return Summary(
        hosts=hosts,
        disabled=draw(st.integers(0, hosts)),
        numeric=numeric,
        strings={k: v for k, v in strings.items() if k not in overflow},
        strings_overflow=overflow,
        fits=draw(st.dictionaries(st.sampled_from(["f1", "other"]), st.integers(0, 3))),
    )


@st.composite
def mixed_zones(draw: Any) -> list[ZoneCandidate]:
    """Children with summaries of real hosts, and with any summary."""
    zones = draw(zones_strategy(max_size=3))
    for i in range(draw(st.integers(0, 3))):
        zones.append(
            ZoneCandidate(
                id=f"y{i}",
                name=f"any{i}",
                active=draw(st.booleans()) or draw(st.booleans()),
                summary=draw(summaries()),
                capabilities=draw(caps_strategy),
            )
        )
    return zones


def _pairs_of(candidate: HostCandidate | ZoneCandidate) -> list[list[tuple[str, Value]]]:
    """(key, value) pairs a candidate holds, grouped by where they come from (a
    group is drawn from as often as another): a host's values, its free amounts; a
    child's own capabilities, its summary's bounds, its summary's strings (and keys
    that overflowed, with a text)."""
    if isinstance(candidate, HostCandidate):
        groups = [list(candidate.values.items()), list(zip(FREE_KEYS, candidate.free, strict=True))]
    else:
        summary = candidate.summary
        bounds = [(k, b) for k, stats in summary.numeric.items() for b in (stats.min, stats.max)]
        strings = [(k, text) for k, counts in summary.strings.items() for text in counts]
        strings += [(k, text) for k in summary.strings_overflow for text in ("arm64", "a100")]
        groups = [list(candidate.capabilities.items()), bounds, strings]
    return [group for group in groups if group]


def _shape_of(candidate: HostCandidate | ZoneCandidate) -> tuple[int, int, int]:
    """A request of exactly a host's free amounts, or of a child's largest ones."""
    if isinstance(candidate, HostCandidate):
        return candidate.free
    numeric = candidate.summary.numeric

    def top(key: str) -> int:
        stats = numeric.get(key)
        return max(0, int(stats.max)) if stats is not None else 0

    return top("free_vcpus"), top("free_ram_mb"), top("free_disk_gb")


@st.composite
def constraint_on(draw: Any, op: str, groups: list[list[tuple[str, Value]]]) -> Constraint:
    """A constraint with operator `op`, most often on a pair of one of `groups` (so
    that = and the ranges meet their boundaries), else on any key and value."""
    ranged = op in ("<", "<=", ">", ">=")
    if ranged:  # a number on both sides
        groups = [[(k, v) for k, v in g if not isinstance(v, str)] for g in groups]
        groups = [g for g in groups if g]
    if groups and draw(st.integers(0, 3)):
        key, value = draw(st.sampled_from(draw(st.sampled_from(groups))))
    else:
        key, value = draw(st.sampled_from(KEYS + FREE_KEYS)), draw(numbers if ranged else values)
    if op == "exists":
        return parse_constraint(key, "exists")
    if op == "in":
        return parse_constraint(key, [value, *draw(st.lists(values, max_size=2))])
    if op == "=" and draw(st.booleans()):  # a bare value, as {"arch": "arm64"}
        return parse_constraint(key, value)
    return parse_constraint(key, f"{op} {value}")


def _plain_host_passes(
    h: HostCandidate, v: int, m: int, d: int, cs: tuple[Constraint, ...]
) -> bool:
    """EnabledFilter, ResourcesFilter, CapabilitiesFilter as defined."""
    values = {**h.values, **dict(zip(FREE_KEYS, h.free, strict=True))}
    return (
        h.enabled
        and h.online
        and h.free_vcpus >= v
        and h.free_ram_mb >= m
        and h.free_disk_gb >= d
        and all(c.matches(values) for c in cs)
    )


def _plain_zone_room(
    z: ZoneCandidate, v: int, m: int, d: int, flavor: str | None, cs: tuple[Constraint, ...]
) -> float:
    """The same filters over a child, and its room when it passes (else NO_ROOM)."""
    s, own = z.summary, z.capabilities
    met = all(c.matches(own) if c.key in own else s.may_satisfy(c) for c in cs)
    units = s.fits.get(flavor) if flavor is not None else None
    if not z.active or not met:
        return NO_ROOM
    if units is not None:
        return units if units > 0 else NO_ROOM
    if not s.may_fit(v, m, d):
        return NO_ROOM
    free_ram = s.numeric.get("free_ram_mb")
    return free_ram.sum if free_ram is not None else 0.0


@pytest.mark.parametrize("op", OPERATORS)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(hosts=hosts_strategy(max_size=8), zones=mixed_zones(), data=st.data())
def test_generated_screens_are_the_plain_definitions(
    op: str, hosts: list[HostCandidate], zones: list[ZoneCandidate], data: Any
) -> None:
    draw = data.draw
    # The constraints are drawn mostly on what one candidate holds, so that it passes
    # some and meets their boundaries: the others pass or fail around it.
    anchor = draw(st.sampled_from([*hosts, *zones])) if hosts or zones else None
    groups = _pairs_of(anchor) if anchor is not None else []
    main = [draw(constraint_on(op, groups)) for _ in range(draw(st.integers(1, 2)))]
    near = st.sampled_from(OPERATORS).flatmap(lambda other: constraint_on(other, groups))
    others = draw(st.lists(st.one_of(near, constraints()), max_size=2))
    cs = tuple(draw(st.permutations([*main, *others])))
    shapes = [
        (draw(st.integers(0, 4)), draw(st.integers(0, 4)) * 1024, draw(st.integers(0, 2)) * 10),
        (0, 0, 0),  # the constraints alone decide
    ]
    if anchor is not None:
        shapes.append(_shape_of(anchor))
    flavor = draw(st.sampled_from([None, "f1", "other"]))
    # And everything the anchor holds first among its pairs, as constraints it meets:
    # several inlined tests in one comprehension, on different keys.
    first = groups[0] if groups else []
    held = [parse_constraint(k, v) for k, v in first]
    held += [parse_constraint(k, f">= {v}") for k, v in first[:2] if type(v) is not str]
    held = draw(st.permutations(held))
    checks = [*product(shapes, [cs, tuple(held)]), *(((0, 0, 0), (c,)) for c in cs)]
    for (v, m, d), chosen in checks:
        passes = [_plain_host_passes(h, v, m, d, chosen) for h in hosts]
        rooms = [_plain_zone_room(z, v, m, d, flavor, chosen) for z in zones]
        assert host_screen(v, m, d, chosen)(hosts) == list(compress(hosts, passes))
        assert zone_screen(v, m, d, flavor, chosen)(zones) == rooms
        request = PlacementRequest(
            server_id="s", vcpus=v, ram_mb=m, disk_gb=d, flavor=flavor, constraints=chosen
        )
        assert screen_hosts(hosts, request) == passes
        assert screen_zones(zones, request) == [room != NO_ROOM for room in rooms]
        # And the per-candidate helpers that reasons and weights use say the same.
        assert passes == [
            h.enabled
            and h.online
            and min(h.free_vcpus - v, h.free_ram_mb - m, h.free_disk_gb - d) >= 0
            and all(host_meets(h, c) for c in chosen)
            for h in hosts
        ]
        assert [room != NO_ROOM for room in rooms] == [
            z.active and zone_has_room(z, request) and all(zone_may_satisfy(z, c) for c in chosen)
            for z in zones
        ]
        assert [room for room in rooms if room != NO_ROOM] == [
            zone_room(z, request) for z, room in zip(zones, rooms, strict=True) if room != NO_ROOM
        ]


# -- the planner against a reference -----------------------------------------------


def _reference(request: PlacementRequest, hosts: list[HostCandidate], zones: list[ZoneCandidate]):
    """Each candidate alone through every filter in order: the first that drops it."""
    ctx = FilterContext(request, hosts, zones)
    fate: dict[str, str | None] = {}
    for c in [*hosts, *zones]:
        fate[c.key] = None
        for f in FILTERS:
            if not f.applies(request):
                continue
            passed, _ = f.hosts([c], ctx) if isinstance(c, HostCandidate) else f.zones([c], ctx)
            if not passed:
                fate[c.key] = f.name
                break
    return fate


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests(),
    hosts_strategy(max_size=12),
    zones_strategy(),
    st.integers(1, 6),
    st.sampled_from(["spread", "fill"]),
    st.one_of(st.none(), st.integers(0, 99)),
)
def test_plan_drops_each_candidate_by_the_first_filter_it_fails(
    request: PlacementRequest,
    hosts: list[HostCandidate],
    zones: list[ZoneCandidate],
    sample: int,
    strategy: str,
    seed: int | None,
) -> None:
    want = _reference(request, hosts, zones)
    passing = {k for k, v in want.items() if v is None}
    config = PlannerConfig(strategy=strategy, sample_size=sample, max_ranked=3)
    rng = random.Random(seed) if seed is not None else None
    full = plan(request, hosts, zones, zone_name="z", config=config, rng=rng, explain=True)
    assert {c["key"]: c["dropped_by"] for c in full.explain()["candidates"]} == want
    assert {c.key for c in full.passed} == passing
    assert len(full.ranked) == min(3, len(passing)) and set(full.scores) == passing
    best = max(full.scores.values(), default=None)
    assert not full.ranked or full.scores[full.ranked[0].key] == best
    # Sampled: whatever it scans is judged the same; it stops early only on success.
    rng = random.Random(seed) if seed is not None else None
    quick = plan(request, hosts, zones, zone_name="z", config=config, rng=rng)
    for name, keys in quick.dropped.items():
        assert all(want[k] == name for k in keys)
    assert {c.key for c in quick.passed} <= passing
    assert len(quick.passed) >= min(sample, len(passing))
    if not passing:
        assert quick.scanned == len(hosts) + len(zones) and quick.ranked == []
        assert quick.reason() == full.reason() != ""


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(st.just(5000), st.integers(1, 5000)),
    st.data(),
    st.sampled_from(["full", "disabled", "arch", "excluded"]),
    st.integers(1, 64),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_sampling_never_misses_the_only_host_that_fits(
    n: int, data: Any, why: str, sample: int, seed: int | None
) -> None:
    fits = data.draw(st.integers(0, n - 1))
    arm = {"arch": "arm64"}
    x86 = {"arch": "x86_64"}
    fit: dict[str, Any] = {"values": arm, "free_vcpus": 4, "free_ram_mb": 8192}
    other: dict[str, Any] = {
        "full": {"values": arm, "free_vcpus": 1, "free_ram_mb": 8192},
        "disabled": {"values": arm, "free_vcpus": 8, "free_ram_mb": 99999, "enabled": False},
        "arch": {"values": x86, "free_vcpus": 8, "free_ram_mb": 99999},
        "excluded": {"values": arm, "free_vcpus": 8, "free_ram_mb": 99999},
    }[why]
    hosts = [
        HostCandidate(name=f"h{i}", free_disk_gb=100, **(fit if i == fits else other))
        for i in range(n)
    ]
    exclude = (
        frozenset(f"host:h{i}" for i in range(n) if i != fits) if why == "excluded" else frozenset()
    )
    req = PlacementRequest(
        server_id=f"s{seed}",
        vcpus=2,
        ram_mb=4096,
        disk_gb=10,
        constraints=(parse_constraint("arch", "arm64"),),
        exclude=exclude,
    )
    rng = random.Random(seed) if seed is not None else None
    d = plan(req, hosts, [], zone_name="z", config=PlannerConfig(sample_size=sample), rng=rng)
    assert [c.name for c in d.ranked] == [f"h{fits}"]
    if sample > 1:  # looking for more than one, it had to see them all
        assert d.scanned == n


@settings(deadline=None)  # up to 3,000 items: slow on a loaded machine
@given(st.integers(1, 3000), st.data())
def test_scan_order_visits_every_item_once(n: int, data: Any) -> None:
    stride = data.draw(st.sampled_from([s for s in (1, 3, 5, 7, 11, 13, 31) if n % s or s == 1]))
    from math import gcd

    if gcd(stride, n) != 1:
        stride = 1
    start = data.draw(st.integers(0, n - 1))
    order = ScanOrder(list(range(n)), start, stride)
    seen: list[int] = []
    for _ in range(n + 2):
        seen += order.take(data.draw(st.integers(1, 700)))
        if order.left == 0:
            break
    assert sorted(seen) == list(range(n))
    assert seen[:3] == [(start + k * stride) % n for k in range(min(3, n))]
    assert order.take(5) == []


# -- reservations never overcommit -------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 16), st.integers(0, 64), st.integers(0, 200)),
        min_size=1,
        max_size=40,
    ),
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 16), st.integers(0, 50)),
        min_size=1,
        max_size=120,
    ),
    st.integers(1, 8),
    st.sampled_from(["spread", "fill"]),
    st.integers(0, 1000),
)
def test_planning_and_reserving_never_overcommits(
    capacities: list[tuple[int, int, int]],
    shapes: list[tuple[int, int, int]],
    sample: int,
    strategy: str,
    seed: int,
) -> None:
    hosts = [
        HostCandidate(name=f"h{i}", values={}, free_vcpus=v, free_ram_mb=r, free_disk_gb=d)
        for i, (v, r, d) in enumerate(capacities)
    ]
    rng = random.Random(seed)
    config = PlannerConfig(strategy=strategy, sample_size=sample)
    used = {h.name: [0, 0, 0] for h in hosts}
    for i, (v, r, d) in enumerate(shapes):
        req = PlacementRequest(server_id=f"s{i}", vcpus=v, ram_mb=r, disk_gb=d)
        decision = plan(req, hosts, [], zone_name="z", config=config, rng=rng)
        fits_somewhere = any(
            h.free_vcpus >= v and h.free_ram_mb >= r and h.free_disk_gb >= d for h in hosts
        )
        assert bool(decision.ranked) == fits_somewhere
        if decision.ranked:
            chosen = decision.ranked[0]
            assert isinstance(chosen, HostCandidate)
            reserve_host(chosen, req)
            for k, need in enumerate((v, r, d)):
                used[chosen.name][k] += need
    for h, (v, r, d) in zip(hosts, capacities, strict=True):
        assert min(h.free) >= 0
        assert used[h.name] == [v - h.free_vcpus, r - h.free_ram_mb, d - h.free_disk_gb]
