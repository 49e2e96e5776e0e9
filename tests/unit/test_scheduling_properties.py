"""Placement properties (hypothesis): the fast paths answer what the reference
answers, sampling never misses a fit, and reserving never overcommits a host."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyfed.scheduling.candidates import HostCandidate, ZoneCandidate, reserve_host
from skyfed.scheduling.config import PlannerConfig
from skyfed.scheduling.filters import (
    FILTERS,
    FilterContext,
    compile_constraint,
    compile_summary_constraint,
    host_flags,
    host_meets,
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
from skyfed.zones.capabilities import Constraint, Value, parse_constraint
from skyfed.zones.summary import FREE_KEYS, summarize_hosts

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


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests(),
    st.lists(constraints(), max_size=3).map(tuple),
    hosts_strategy(max_size=10),
    zones_strategy(),
    st.data(),
)
def test_generated_screens_answer_what_the_filters_answer(
    request: PlacementRequest,
    more: tuple[Constraint, ...],
    hosts: list[HostCandidate],
    zones: list[ZoneCandidate],
    data: Any,
) -> None:
    r = request
    cs = r.constraints + more
    # And one on a value a host or zone has, so that the boundaries of = and >= are met.
    seen = [(k, v) for h in hosts for k, v in h.values.items()]
    seen += [(k, v) for z in zones for k, v in z.capabilities.items()]
    seen += [(k, n.max) for z in zones for k, n in z.summary.numeric.items()]
    if seen:
        key, value = data.draw(st.sampled_from(seen))
        op = data.draw(st.sampled_from(["= ", ">= ", "<= "] if type(value) is not str else ["= "]))
        cs = (parse_constraint(key, f"{op}{value}"), *more[:2])
    for v, m, d in ((r.vcpus, r.ram_mb, r.disk_gb), (0, 0, 0)):  # also every host's values
        screened = screen_hosts(
            hosts, PlacementRequest(server_id="s", vcpus=v, ram_mb=m, disk_gb=d, constraints=cs)
        )
        assert screened == [
            h.enabled
            and h.online
            and h.free_vcpus >= v
            and h.free_ram_mb >= m
            and h.free_disk_gb >= d
            and all(host_meets(h, c) for c in cs)
            for h in hosts
        ]
    zoned = PlacementRequest(
        server_id="s",
        vcpus=r.vcpus,
        ram_mb=r.ram_mb,
        disk_gb=r.disk_gb,
        flavor=r.flavor,
        constraints=cs,
    )
    want = [
        z.active and zone_has_room(z, zoned) and all(zone_may_satisfy(z, c) for c in cs)
        for z in zones
    ]
    assert screen_zones(zones, zoned) == want
    rooms = zone_screen(r.vcpus, r.ram_mb, r.disk_gb, r.flavor, cs)(zones)
    assert [room for room, ok in zip(rooms, want, strict=True) if ok] == [
        zone_room(z, zoned) for z, ok in zip(zones, want, strict=True) if ok
    ]


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
