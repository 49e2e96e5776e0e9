"""Placement (pure): the request, candidates, each filter, the weighers, the planner,
the reasons it gives, and reservations ("assume and deduct")."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime

import pytest

from skyfed.compute.hosts.registry import HostRecord, Resources
from skyfed.scheduling.candidates import (
    HostCandidate,
    ZoneCandidate,
    reserve_host,
    reserve_zone,
)
from skyfed.scheduling.config import PlannerConfig
from skyfed.scheduling.decision import Decision
from skyfed.scheduling.filters import (
    FILTER_NAMES,
    FILTERS,
    AffinityFilter,
    CapabilitiesFilter,
    EnabledFilter,
    ExcludeFilter,
    FilterContext,
    ResourcesFilter,
    ZonePathFilter,
)
from skyfed.scheduling.misses import Miss
from skyfed.scheduling.planner import plan
from skyfed.scheduling.request import PlacementRequest, child_request
from skyfed.scheduling.weighers import normalize
from skyfed.zones.capabilities import Value, parse_constraints
from skyfed.zones.summary import NumericStats, Summary, summarize_hosts
from skyfed.zones.view import ChildSnapshot

# -- helpers -----------------------------------------------------------------------


def host(
    name: str,
    free: tuple[int, int, int] = (8, 16384, 100),
    *,
    enabled: bool = True,
    online: bool = True,
    members: int = 0,
    **caps: Value,
) -> HostCandidate:
    free_vcpus, free_ram_mb, free_disk_gb = free
    return HostCandidate(
        name=name,
        values=dict(caps),
        free_vcpus=free_vcpus,
        free_ram_mb=free_ram_mb,
        free_disk_gb=free_disk_gb,
        enabled=enabled,
        online=online,
        group_members=members,
    )


def summary_of(
    *hosts: HostCandidate, flavors: tuple[tuple[str, int, int, int], ...] = ()
) -> Summary:
    """A real summary of these hosts (values with the free amounts, as a registry has)."""

    class Beat:
        def __init__(self, h: HostCandidate) -> None:
            self.disabled = h.disabled
            self.free = h.free
            self.values = {
                **h.values,
                "free_vcpus": h.free_vcpus,
                "free_ram_mb": h.free_ram_mb,
                "free_disk_gb": h.free_disk_gb,
            }

    class Flavor:
        def __init__(self, name: str, vcpus: int, ram_mb: int, disk_gb: int) -> None:
            self.name, self.vcpus, self.ram_mb, self.disk_gb = name, vcpus, ram_mb, disk_gb

    return summarize_hosts([Beat(h) for h in hosts], [Flavor(*f) for f in flavors])


def zone(
    name: str,
    *hosts: HostCandidate,
    active: bool = True,
    caps: dict[str, Value] | None = None,
    offset: float = 0.0,
    scale: float = 1.0,
    members: int = 0,
    flavors: tuple[tuple[str, int, int, int], ...] = (),
) -> ZoneCandidate:
    return ZoneCandidate(
        id=f"id-{name}",
        name=name,
        active=active,
        summary=summary_of(*hosts, flavors=flavors),
        capabilities=caps or {},
        weight_offset=offset,
        weight_scale=scale,
        group_members=members,
    )


def request(
    vcpus: int = 2,
    ram_mb: int = 4096,
    disk_gb: int = 40,
    *,
    flavor: str | None = None,
    constraints: dict[str, object] | None = None,
    **kwargs: object,
) -> PlacementRequest:
    return PlacementRequest(
        server_id="server-1",
        vcpus=vcpus,
        ram_mb=ram_mb,
        disk_gb=disk_gb,
        flavor=flavor,
        constraints=tuple(parse_constraints(constraints or {})),
        **kwargs,  # type: ignore[arg-type]
    )


def split(f, candidates, req, *, group_members=None, hosts=(), zones=()):
    """Run one filter over hosts or zones; return (passed names, dropped names)."""
    ctx = FilterContext(req, hosts or (), zones or (), group_members)
    if all(isinstance(c, HostCandidate) for c in candidates):
        ok, out = f.hosts(list(candidates), ctx)
    else:
        ok, out = f.zones(list(candidates), ctx)
    return [c.name for c in ok], [c.name for c in out]


def names(decision) -> list[str]:
    return [c.name for c in decision.ranked]


SMALL = ("m1.small", 1, 2048, 20)
LARGE = ("m1.large", 4, 8192, 80)


# -- the request -------------------------------------------------------------------


def test_many_field_objects_are_keyword_only() -> None:
    """Positional construction cannot come back: a call site names what it sets."""
    for cls in (Decision, PlacementRequest, HostCandidate, ZoneCandidate, PlannerConfig, Miss):
        assert all(f.kw_only for f in dataclasses.fields(cls) if f.init), cls.__name__
    with pytest.raises(TypeError):
        PlacementRequest("s", 1, 1024, 10)  # type: ignore[misc]


def test_request_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="ram_mb"):
        PlacementRequest(server_id="s", vcpus=1, ram_mb=-1, disk_gb=0)
    with pytest.raises(ValueError, match="group_policy"):
        PlacementRequest(
            server_id="s", vcpus=1, ram_mb=1, disk_gb=0, group="g", group_policy="together"
        )
    with pytest.raises(ValueError, match="needs a group"):
        PlacementRequest(server_id="s", vcpus=1, ram_mb=1, disk_gb=0, group_policy="affinity")
    with pytest.raises(ValueError, match="within"):
        PlacementRequest(server_id="s", vcpus=1, ram_mb=1, disk_gb=0, within=("eu", ""))
    with pytest.raises(ValueError, match="avoid"):
        PlacementRequest(server_id="s", vcpus=1, ram_mb=1, disk_gb=0, avoid=((),))
    with pytest.raises(ValueError, match="strategy"):
        PlannerConfig(strategy="pack")
    with pytest.raises(ValueError, match="sample_size"):
        PlannerConfig(sample_size=0)


def test_request_requirements_in_words() -> None:
    req = request(2, 65536, 0, constraints={"arch": "arm64", "ssd": ">= 1"})
    assert req.requirements() == ["vcpus >= 2", "ram_mb >= 65536", "arch = arm64", "ssd >= 1"]


# -- candidates --------------------------------------------------------------------


def test_host_candidate_from_a_registry_record() -> None:
    record = HostRecord(
        name="h1",
        capabilities={"arch": "x86_64"},
        resources=Resources(16, 32768, 500),
        used=Resources(4, 8192, 100),
        beat_at=0.0,
        seen_at=datetime.now(UTC),
        disabled=True,
    )
    record.refresh()
    h = HostCandidate.from_record(record, online=False, group_members=2)
    assert (h.name, h.free, h.enabled, h.online, h.group_members) == (
        "h1",
        (12, 24576, 400),
        False,
        False,
        2,
    )
    assert h.values is record.values and h.values["arch"] == "x86_64"
    assert h.key == "host:h1" and h.kind == "host" and h.disabled


def test_zone_candidate_from_a_snapshot_shares_its_summary() -> None:
    summary = Summary(hosts=3, fits={"m1.small": 5})
    snapshot = ChildSnapshot(
        id="c1",
        name="eu",
        state="offline",
        summary=summary,
        capabilities={"region": "eu"},
        weight_offset=1.5,
        weight_scale=2.0,
        labels={"tier": "gold"},
    )
    z = ZoneCandidate.from_snapshot(snapshot, group_members=1)
    assert (z.id, z.name, z.active, z.weight_offset, z.weight_scale) == (
        "c1",
        "eu",
        False,
        1.5,
        2.0,
    )
    assert z.summary is summary and z.capabilities == {"region": "eu"}
    assert z.labels == {"tier": "gold"} and z.group_members == 1
    assert z.key == "zone:c1" and z.kind == "zone"


# -- each filter in isolation ------------------------------------------------------


def test_filter_names_and_order() -> None:
    assert FILTER_NAMES == (
        "zone_path",
        "exclude",
        "enabled",
        "affinity",
        "resources",
        "capabilities",
    )
    assert len({type(f) for f in FILTERS}) == len(FILTERS)


def test_enabled_filter_drops_disabled_and_offline_hosts_and_inactive_zones() -> None:
    hosts = [host("ok"), host("off", enabled=False), host("gone", online=False)]
    assert split(EnabledFilter(), hosts, request()) == (["ok"], ["off", "gone"])
    zones = [zone("a", host("x")), zone("b", host("y"), active=False)]
    assert split(EnabledFilter(), zones, request()) == (["a"], ["b"])


def test_resources_filter_on_hosts_needs_every_resource_free() -> None:
    req = request(2, 4096, 40)
    hosts = [
        host("exact", (2, 4096, 40)),
        host("cpu", (1, 9999, 999)),
        host("ram", (9, 4095, 999)),
        host("disk", (9, 9999, 39)),
    ]
    assert split(ResourcesFilter(), hosts, req) == (["exact"], ["cpu", "ram", "disk"])
    assert split(ResourcesFilter(), [host("any", (0, 0, 0))], request(0, 0, 0)) == (["any"], [])


def test_resources_filter_on_zones_trusts_fits_for_a_known_flavor() -> None:
    # Fragmented: 2 hosts with 1 free core each. may_fit sees 1 core max; fits counts 0.
    fragmented = zone(
        "frag", host("a", (1, 8192, 100)), host("b", (1, 8192, 100)), flavors=(LARGE,)
    )
    roomy = zone("roomy", host("c", (8, 16384, 200)), flavors=(LARGE,))
    req = request(4, 8192, 80, flavor="m1.large")
    assert split(ResourcesFilter(), [fragmented, roomy], req) == (["roomy"], ["frag"])
    # fits says 0 even though the maxima would allow it: the host-by-host count wins.
    tricky = zone("tricky", host("d", (4, 100, 80)), host("e", (1, 8192, 80)), flavors=(LARGE,))
    assert tricky.summary.may_fit(4, 8192, 80)
    assert split(ResourcesFilter(), [tricky], req) == ([], ["tricky"])
    # A flavor the summary does not count, or no flavor: the free maxima decide.
    for other in (request(4, 8192, 80, flavor="custom"), request(4, 8192, 80)):
        assert split(ResourcesFilter(), [tricky, fragmented], other) == (["tricky"], ["frag"])


def test_capabilities_filter_on_hosts() -> None:
    hosts = [
        host("arm-big", arch="arm64", ram_gb=512),
        host("arm-small", arch="arm64", ram_gb=64),
        host("x86", arch="x86_64", ram_gb=512),
        host("bare"),
    ]
    req = request(constraints={"arch": "arm64", "ram_gb": ">= 256"})
    assert split(CapabilitiesFilter(), hosts, req) == (
        ["arm-big"],
        ["x86", "bare", "arm-small"],  # dropped constraint by constraint
    )
    assert not CapabilitiesFilter().applies(request())


def test_capabilities_filter_reads_live_free_amounts_not_stale_values() -> None:
    h = HostCandidate(
        name="h", values={"free_ram_mb": 99999}, free_vcpus=4, free_ram_mb=1024, free_disk_gb=10
    )
    req = request(1, 1, 1, constraints={"free_ram_mb": ">= 2048"})
    assert split(CapabilitiesFilter(), [h], req) == ([], ["h"])
    h.free_ram_mb = 4096
    assert split(CapabilitiesFilter(), [h], req) == (["h"], [])


def test_capabilities_filter_on_zones_uses_own_capabilities_then_the_summary() -> None:
    eu = zone("eu", host("a", arch="arm64"), caps={"region": "eu"})
    us = zone("us", host("b", arch="x86_64"), caps={"region": "us"})
    # The summary knows nothing of "region": the child's own capabilities decide.
    assert split(CapabilitiesFilter(), [eu, us], request(constraints={"region": "eu"})) == (
        ["eu"],
        ["us"],
    )
    assert split(CapabilitiesFilter(), [eu, us], request(constraints={"arch": "arm64"})) == (
        ["eu"],
        ["us"],
    )
    # An own capability overrides what the hosts report for the same key.
    odd = zone("odd", host("c", arch="arm64"), caps={"arch": "x86_64"})
    assert split(CapabilitiesFilter(), [odd], request(constraints={"arch": "arm64"})) == (
        [],
        ["odd"],
    )


def test_zone_path_filter() -> None:
    eu, us = zone("eu", host("a")), zone("us", host("b"))
    hosts = [host("local")]
    within = request(within=("eu", "eu-dc1"))
    assert split(ZonePathFilter(), [eu, us], within) == (["eu"], ["us"])
    assert split(ZonePathFilter(), hosts, within) == ([], ["local"])
    avoid = request(avoid=(("us",), ("eu", "eu-dc1")))
    assert split(ZonePathFilter(), [eu, us], avoid) == (["eu"], ["us"])  # eu-dc1 is for eu
    assert split(ZonePathFilter(), hosts, avoid) == (["local"], [])
    assert not ZonePathFilter().applies(request(avoid=(("eu", "eu-dc1"),)))
    assert not ZonePathFilter().applies(request())


def test_exclude_filter() -> None:
    req = request(exclude=frozenset({"host:a", "zone:id-eu"}))
    assert split(ExcludeFilter(), [host("a"), host("b")], req) == (["b"], ["a"])
    assert split(ExcludeFilter(), [zone("eu", host("x")), zone("us", host("y"))], req) == (
        ["us"],
        ["eu"],
    )
    assert not ExcludeFilter().applies(request())


def test_affinity_filter() -> None:
    hosts = [host("with", members=1), host("without")]
    zones = [zone("zw", host("x"), members=2), zone("zo", host("y"))]
    aff = request(group="g", group_policy="affinity")
    anti = request(group="g", group_policy="anti-affinity")
    f = AffinityFilter()
    assert split(f, hosts, aff, hosts=hosts, zones=zones) == (["with"], ["without"])
    assert split(f, zones, aff, hosts=hosts, zones=zones) == (["zw"], ["zo"])
    # No member anywhere yet: the first server of an affinity group may go anywhere.
    fresh = [host("a"), host("b")]
    assert split(f, fresh, aff, hosts=fresh) == (["a", "b"], [])
    # Anti-affinity drops hosts with members, never zones (they are weighed down).
    assert split(f, hosts, anti, hosts=hosts) == (["without"], ["with"])
    assert split(f, zones, anti, zones=zones) == (["zw", "zo"], [])
    assert not f.applies(request())


def test_group_members_mapping_replaces_the_candidates_counts() -> None:
    hosts = [host("a", members=5), host("b")]
    anti = request(group="g", group_policy="anti-affinity")
    members = {"host:b": 1}
    assert split(AffinityFilter(), hosts, anti, hosts=hosts, group_members=members) == (
        ["a"],
        ["b"],
    )
    d = plan(anti, hosts, [], zone_name="z", group_members=members)
    assert names(d) == ["a"] and d.dropped == {"affinity": ["host:b"]}


# -- weighers ----------------------------------------------------------------------


def test_normalize() -> None:
    assert normalize([]) == []
    assert normalize([5, 5]) == [0.0, 0.0]
    assert normalize([0, 5, 10]) == [0.0, 0.5, 1.0]
    assert normalize([0, 5, 10], reverse=True) == [1.0, 0.5, 0.0]


def test_spread_prefers_free_ram_and_fill_prefers_full_hosts() -> None:
    hosts = [
        host("mid", (8, 8192, 100)),
        host("empty", (8, 65536, 100)),
        host("full", (8, 4096, 100)),
    ]
    spread = plan(request(), hosts, [], zone_name="z")
    fill = plan(request(), hosts, [], zone_name="z", config=PlannerConfig(strategy="fill"))
    assert names(spread) == ["empty", "mid", "full"]
    assert names(fill) == ["full", "mid", "empty"]
    assert spread.scores == {
        "host:empty": 1.0,
        "host:mid": pytest.approx(4096 / 61440),
        "host:full": 0.0,
    }
    assert fill.scores["host:full"] == 1.0 and fill.scores["host:empty"] == 0.0


def test_zones_weigh_by_fits_of_the_flavor_else_free_ram() -> None:
    # "many" has more units of m1.small but less total free RAM than "big".
    many = zone("many", *(host(f"m{i}", (2, 4096, 100)) for i in range(6)), flavors=(SMALL,))
    big = zone("big", host("b", (1, 20000, 100)), flavors=(SMALL,))
    assert many.summary.fits["m1.small"] == 12 and big.summary.fits["m1.small"] == 1
    assert names(plan(request(1, 2048, 20, flavor="m1.small"), [], [big, many], zone_name="r")) == [
        "many",
        "big",
    ]
    assert names(plan(request(1, 2048, 20), [], [many, big], zone_name="r")) == ["many", "big"]
    assert names(plan(request(1, 1024, 20), [], [many, big], zone_name="r")) == ["many", "big"]
    roomier = zone("roomier", host("r", (1, 40000, 100)), flavors=(SMALL,))
    assert names(plan(request(1, 1024, 20), [], [many, roomier], zone_name="r")) == [
        "roomier",
        "many",
    ]


def test_weight_offset_and_scale_of_zones() -> None:
    best = zone("best", host("a", (8, 65536, 100)))
    worst = zone("worst", host("b", (8, 8192, 100)))
    req = request()
    assert names(plan(req, [], [best, worst], zone_name="r")) == ["best", "worst"]
    worst.weight_offset = 1.5  # an operator prefers it
    d = plan(req, [], [best, worst], zone_name="r")
    assert names(d) == ["worst", "best"]
    assert d.scores == {"zone:id-worst": 1.5, "zone:id-best": 1.0}
    worst.weight_offset, best.weight_scale = 0.0, 0.0  # drained: never above the others
    assert names(plan(req, [], [best, worst], zone_name="r"))[0] in ("best", "worst")
    best.weight_scale = -1.0
    assert names(plan(req, [], [best, worst], zone_name="r")) == ["worst", "best"]


def test_anti_affinity_weighs_zones_down_by_members() -> None:
    crowded = zone("crowded", host("a", (8, 65536, 100)), members=3)
    some = zone("some", host("b", (8, 60000, 100)), members=1)
    empty = zone("empty", host("c", (8, 8192, 100)))
    anti = request(group="g", group_policy="anti-affinity")
    d = plan(anti, [], [crowded, some, empty], zone_name="r")
    # free RAM 1.0 / 0.90 / 0.0, minus 0.5 x members / the most members (3)
    assert names(d) == ["some", "crowded", "empty"]
    assert d.scores["zone:id-crowded"] == pytest.approx(1.0 - 0.5)
    assert d.scores["zone:id-some"] == pytest.approx((60000 - 8192) / (65536 - 8192) - 0.5 / 3)
    strong = PlannerConfig(anti_affinity_multiplier=10.0)
    assert names(plan(anti, [], [crowded, some, empty], zone_name="r", config=strong)) == [
        "empty",
        "some",
        "crowded",
    ]
    # Without the policy the members do not count.
    assert names(plan(request(), [], [crowded, some, empty], zone_name="r"))[0] == "crowded"


def test_ties_go_by_key_or_at_random_with_an_rng() -> None:
    hosts = [host(n) for n in ("c", "a", "d", "b")]
    d = plan(request(), hosts, [], zone_name="z")
    assert names(d) == ["a", "b", "c", "d"]
    assert set(d.scores.values()) == {0.0}
    seen = {
        tuple(names(plan(request(), hosts, [], zone_name="z", rng=random.Random(s))))
        for s in range(40)
    }
    assert len(seen) > 1 and all(sorted(s) == ["a", "b", "c", "d"] for s in seen)


def test_hosts_and_zones_compete_in_one_ranking() -> None:
    local = [host("small", (8, 4096, 100)), host("large", (8, 65536, 100))]
    child = zone("child", host("x", (8, 9999, 100)), offset=0.5)
    d = plan(request(), local, [child], zone_name="z")
    assert names(d) == ["large", "child", "small"]
    assert d.scores == {"host:large": 1.0, "zone:id-child": 0.5, "host:small": 0.0}


# -- the planner -------------------------------------------------------------------


def test_max_ranked_and_best() -> None:
    hosts = [host(f"h{i:02d}", (8, 1000 + i, 100)) for i in range(20)]
    d = plan(request(1, 1, 1), hosts, [], zone_name="z", config=PlannerConfig(max_ranked=3))
    assert names(d) == ["h19", "h18", "h17"] and d.best is d.ranked[0]
    assert d.reason() == ""


def test_sampling_scans_a_bounded_number_when_many_pass() -> None:
    hosts = [host(f"h{i}") for i in range(5000)]
    d = plan(request(), hosts, [], zone_name="z", config=PlannerConfig(sample_size=16))
    assert d.scanned == 16 and len(d.ranked) == 8 and len(d.passed) == 16
    full = plan(request(), hosts, [], zone_name="z", explain=True)
    assert full.scanned == 5000 and len(full.passed) == 5000


def test_sampling_is_random_but_reproducible() -> None:
    hosts = [host(f"h{i:04d}", (8, 1000 + i % 7, 100)) for i in range(1000)]
    cfg = PlannerConfig(sample_size=8)

    def sample(req: PlacementRequest, rng: random.Random | None = None) -> set[str]:
        return {c.name for c in plan(req, hosts, [], zone_name="z", config=cfg, rng=rng).passed}

    a, b = (
        request(1, 512, 1),
        PlacementRequest(server_id="server-2", vcpus=1, ram_mb=512, disk_gb=1),
    )
    assert sample(a) == sample(a) and sample(a) != sample(b)
    assert sample(a, random.Random(1)) == sample(a, random.Random(1))
    assert sample(a, random.Random(1)) != sample(a, random.Random(2))


def test_dropped_and_explain() -> None:
    hosts = [
        host("ok", arch="arm64"),
        host("off", enabled=False, arch="arm64"),
        host("small", (1, 512, 1), arch="arm64"),
        host("x86", arch="x86_64"),
        host("tried", arch="arm64"),
    ]
    eu = zone("eu", host("e", arch="arm64"), active=False)
    req = request(constraints={"arch": "arm64"}, exclude=frozenset({"host:tried"}))
    d = plan(req, hosts, [eu], zone_name="dc", explain=True)
    assert names(d) == ["ok"]
    assert d.dropped == {
        "exclude": ["host:tried"],
        "enabled": ["host:off", "zone:id-eu"],
        "resources": ["host:small"],
        "capabilities": ["host:x86"],
    } or {k: sorted(v) for k, v in d.dropped.items()} == {
        "exclude": ["host:tried"],
        "enabled": ["host:off", "zone:id-eu"],
        "resources": ["host:small"],
        "capabilities": ["host:x86"],
    }
    out = d.explain()
    json.dumps(out)  # JSON-able
    by_key = {c["key"]: c for c in out["candidates"]}
    assert [c["key"] for c in out["candidates"]] == [
        "host:ok",
        "host:off",
        "host:small",
        "host:x86",
        "host:tried",
        "zone:id-eu",
    ]
    assert by_key["host:ok"] == {
        "key": "host:ok",
        "name": "ok",
        "kind": "host",
        "passed": True,
        "dropped_by": None,
        "score": 0.0,
        "rank": 0,
    }
    assert (
        by_key["zone:id-eu"]["kind"] == "zone" and by_key["zone:id-eu"]["dropped_by"] == "enabled"
    )
    assert (
        by_key["host:x86"]["dropped_by"] == "capabilities" and by_key["host:x86"]["score"] is None
    )
    assert out["ranked"] == ["host:ok"] and out["reason"] is None
    assert out["offered"] == out["scanned"] == 6 and out["filters"] == list(FILTER_NAMES)


def test_explain_without_explain_lists_what_was_scanned() -> None:
    hosts = [host("a"), host("b", enabled=False)]
    out = plan(request(), hosts, [], zone_name="z").explain()
    assert {c["key"]: c["dropped_by"] for c in out["candidates"]} == {
        "host:a": None,
        "host:b": "enabled",
    }


def test_affinity_places_with_the_group_and_anti_affinity_apart() -> None:
    hosts = [host("h1", members=1), host("h2"), host("h3", (8, 99999, 100))]
    aff = request(group="web", group_policy="affinity")
    assert names(plan(aff, hosts, [], zone_name="z")) == ["h1"]
    anti = request(group="web", group_policy="anti-affinity")
    assert names(plan(anti, hosts, [], zone_name="z")) == ["h3", "h2"]
    # Affinity is strict: the member's host being full means no placement.
    hosts[0].free_ram_mb = 0
    d = plan(aff, hosts, [], zone_name="dc1")
    assert d.ranked == []
    assert d.reason() == (
        "no host with ram_mb >= 4096 in dc1 (2 candidates ruled out by the affinity of group 'web')"
    )


def test_within_and_avoid() -> None:
    local = [host("local", (64, 999999, 9999))]
    eu, us, asia = zone("eu", host("a")), zone("us", host("b")), zone("asia", host("c"))
    d = plan(request(within=("us", "us-dc2")), local, [eu, us, asia], zone_name="global")
    assert names(d) == ["us"]
    d = plan(request(avoid=(("us",), ("eu", "eu-dc1"))), local, [eu, us, asia], zone_name="g")
    assert set(names(d)) == {"local", "eu", "asia"}
    d = plan(request(within=("mars",)), local, [eu, us], zone_name="global")
    assert d.ranked == [] and d.reason() == "no child zone 'mars' in global"


def test_exclude_moves_a_retry_to_the_next_candidate() -> None:
    hosts = [host("best", (8, 65536, 100)), host("next", (8, 32768, 100))]
    first = plan(request(), hosts, [], zone_name="z")
    assert names(first) == ["best", "next"]
    retry = plan(request(exclude=frozenset({first.ranked[0].key})), hosts, [], zone_name="z")
    assert names(retry) == ["next"]
    last = plan(request(exclude=frozenset({"host:best", "host:next"})), hosts, [], zone_name="z")
    assert last.reason() == "no host in z (2 candidates already tried)"


# -- reasons -----------------------------------------------------------------------


def test_reason_names_the_unmet_combination() -> None:
    # The arm64 hosts are small, the big hosts are x86: neither alone is missing.
    hosts = [
        host("arm-a", (16, 32768, 100), arch="arm64"),
        host("arm-b", (16, 16384, 100), arch="arm64"),
        host("x86", (16, 131072, 100), arch="x86_64"),
    ]
    req = request(2, 65536, 10, constraints={"arch": "arm64"})
    d = plan(req, hosts, [], zone_name="eu")
    assert d.ranked == [] and d.scanned == 3
    assert d.reason() == "no host with ram_mb >= 65536 and arch = arm64 in eu"


def test_reason_names_only_what_nobody_meets() -> None:
    hosts = [host("a", (1, 8192, 100), arch="arm64"), host("b", (16, 8192, 100), arch="x86_64")]
    req = request(2, 65536, 10, constraints={"arch": "arm64"})
    assert plan(req, hosts, [], zone_name="eu").reason() == "no host with ram_mb >= 65536 in eu"


def test_reason_over_child_zones() -> None:
    eu = zone("eu-dc1", host("a", (16, 32768, 100), arch="arm64"), caps={"region": "eu"})
    us = zone("us-dc1", host("b", (16, 262144, 100), arch="arm64"), caps={"region": "us"})
    req = request(2, 65536, 10, constraints={"region": "eu"})
    assert plan(req, [], [eu, us], zone_name="global").reason() == (
        "no host with ram_mb >= 65536 and region = eu in global"
    )
    # fits says none although each resource is free somewhere: the combination is named.
    frag = zone("frag", host("c", (4, 100, 80)), host("d", (1, 8192, 80)), flavors=(LARGE,))
    d = plan(request(4, 8192, 80, flavor="m1.large"), [], [frag], zone_name="r")
    assert d.reason() == "no host with vcpus >= 4 and ram_mb >= 8192 and disk_gb >= 80 in r"


def test_reason_when_there_is_nothing_or_nothing_is_up() -> None:
    assert plan(request(), [], [], zone_name="eu").reason() == (
        "no host in eu: it has no hosts and no child zones"
    )
    d = plan(
        request(), [host("a", enabled=False)], [zone("z", host("b"), active=False)], zone_name="eu"
    )
    assert d.reason() == "no host in eu (2 candidates disabled, offline or inactive)"
    d = plan(request(), [host("a", enabled=False), host("b", (0, 0, 0))], [], zone_name="eu")
    assert d.reason() == (
        "no host with vcpus >= 2 and ram_mb >= 4096 and disk_gb >= 40 in eu "
        "(1 candidate disabled, offline or inactive)"
    )


# -- passing a request down --------------------------------------------------------


def test_child_request_rewrites_paths_for_the_chosen_child() -> None:
    req = request(
        within=("eu", "eu-dc1", "huddle-a"),
        avoid=(("eu", "eu-dc1", "huddle-b"), ("eu", "eu-dc2"), ("us", "us-dc1"), ("asia",)),
        exclude=frozenset({"zone:x"}),
    )
    down = child_request(req, "eu")
    assert down.within == ("eu-dc1", "huddle-a")
    assert down.avoid == (("eu-dc1", "huddle-b"), ("eu-dc2",))
    assert down.exclude == frozenset()
    assert (down.server_id, down.vcpus, down.constraints) == (req.server_id, 2, req.constraints)
    further = child_request(down, "eu-dc1")
    assert further.within == ("huddle-a",) and further.avoid == (("huddle-b",),)
    assert child_request(child_request(further, "huddle-a"), "anything").within == ()
    with pytest.raises(ValueError, match="within"):
        child_request(req, "us")
    with pytest.raises(ValueError, match="avoids"):
        child_request(request(avoid=(("asia",),)), "asia")
    plain = request()
    assert child_request(plain, "eu") is plain


# -- reservations ------------------------------------------------------------------


def test_reserve_host_deducts_and_refuses_to_overcommit() -> None:
    h = host("h", (4, 8192, 100))
    reserve_host(h, request(2, 4096, 40))
    assert h.free == (2, 4096, 60)
    reserve_host(h, request(2, 4096, 60))
    assert h.free == (0, 0, 0)
    with pytest.raises(ValueError, match="has"):
        reserve_host(h, request(1, 0, 0))
    assert h.free == (0, 0, 0)


def test_reserve_zone_deducts_from_its_summary() -> None:
    z = zone("z", host("a", (4, 8192, 100)), host("b", (2, 4096, 50)), flavors=(SMALL,))
    before = z.summary.numeric["free_ram_mb"]
    shared_parent = Summary().merge(z.summary)  # a merge may share NumericStats objects
    assert z.summary.fits["m1.small"] == 6
    reserve_zone(z, request(1, 2048, 20, flavor="m1.small"))
    assert z.summary.fits["m1.small"] == 5
    after = z.summary.numeric["free_ram_mb"]
    assert (after.sum, after.max, after.min) == (12288 - 2048, 8192, 4096)
    assert before == NumericStats(min=4096, max=8192, sum=12288, count=2) and after is not before
    assert shared_parent.numeric["free_ram_mb"].sum == 12288
    # A sum that falls below the largest free amount pulls the maximum down with it.
    reserve_zone(z, request(0, 9000, 0))
    stats = z.summary.numeric["free_ram_mb"]
    assert stats.sum == 1240 and stats.max == 1240 and stats.min == 1240
    reserve_zone(z, request(0, 99999, 0, flavor="unknown"))
    assert z.summary.numeric["free_ram_mb"].sum == 0 and z.summary.fits["m1.small"] == 5
    for _ in range(10):
        reserve_zone(z, request(1, 0, 0, flavor="m1.small"))
    assert z.summary.fits["m1.small"] == 0


def test_a_burst_spreads_over_hosts_when_each_decision_reserves() -> None:
    hosts = [host(f"h{i}", (4, 16384, 100)) for i in range(4)]
    chosen = []
    for i in range(8):
        d = plan(
            PlacementRequest(server_id=f"s{i}", vcpus=2, ram_mb=8192, disk_gb=10),
            hosts,
            [],
            zone_name="z",
        )
        reserve_host(
            d.ranked[0], PlacementRequest(server_id=f"s{i}", vcpus=2, ram_mb=8192, disk_gb=10)
        )
        chosen.append(d.ranked[0].name)
    assert sorted(chosen) == ["h0", "h0", "h1", "h1", "h2", "h2", "h3", "h3"]
    assert all(h.free == (0, 0, 80) for h in hosts)
    d = plan(
        PlacementRequest(server_id="s9", vcpus=2, ram_mb=8192, disk_gb=10), hosts, [], zone_name="z"
    )
    assert d.reason() == "no host with vcpus >= 2 and ram_mb >= 8192 in z"
