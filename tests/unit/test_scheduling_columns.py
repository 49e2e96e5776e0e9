"""ZoneSet (pure): its columns follow its zones through reservations and updates, and
plan() decides with a ZoneSet exactly as with a plain list of the same zones."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyfed.scheduling.candidates import ZoneCandidate, reserve_zone
from skyfed.scheduling.columns import UNKNOWN, ZoneSet, columnar, fits_row
from skyfed.scheduling.config import PlannerConfig
from skyfed.scheduling.decision import Decision
from skyfed.scheduling.filters import zone_may_satisfy
from skyfed.scheduling.planner import ScanOrder, plan
from skyfed.scheduling.request import PlacementRequest
from skyfed.zones.capabilities import parse_constraints
from skyfed.zones.summary import NumericStats, Summary
from tests.unit.test_scheduling_properties import requests, zones_strategy


def zone(i: int, fits: dict[str, int], *, active: bool = True, **caps: Any) -> ZoneCandidate:
    summary = Summary(
        hosts=4,
        numeric={"free_ram_mb": NumericStats(min=0, max=8192, sum=20000, count=4)},
        strings={"arch": {"x86_64": 3}},
        fits=dict(fits),
    )
    return ZoneCandidate(
        id=f"z{i}", name=f"zone{i}", active=active, summary=summary, capabilities=caps
    )


def request(flavor: str | None = "small", **kw: Any) -> PlacementRequest:
    return PlacementRequest(server_id="s1", vcpus=1, ram_mb=1024, disk_gb=10, flavor=flavor, **kw)


def test_columns_hold_each_zones_units() -> None:
    zones = [zone(0, {"small": 5}), zone(1, {"small": 0}), zone(2, {}), zone(3, {"small": 2})]
    zones[3].active = False
    zs = ZoneSet(zones)
    assert list(zs.fits("small")) == [5, 0, UNKNOWN, 0]
    assert [fits_row(z, "small") for z in zones] == [5, 0, UNKNOWN, 0]
    assert len(zs) == 4 and zs[1] is zones[1] and list(zs) == zones and zs[1:3] == zones[1:3]
    assert [(z.columns, z.column) for z in zones] == [(zs, i) for i in range(4)]


def test_reserve_zone_keeps_the_column() -> None:
    zones = [zone(0, {"small": 2, "large": 1}), zone(1, {"small": 1})]
    zs = ZoneSet(zones)
    small, large = zs.fits("small"), zs.fits("large")
    reserve_zone(zones[0], request())
    assert zones[0].summary.fits["small"] == 1 and list(small) == [1, 1]
    assert list(large) == [1, UNKNOWN]  # the other flavor's count did not change
    reserve_zone(zones[0], request())
    reserve_zone(zones[0], request())  # none left: nothing deducted, the column says 0
    assert zones[0].summary.fits["small"] == 0 and list(small) == [0, 1]
    reserve_zone(zones[1], request("large"))  # a flavor its summary does not count
    assert list(large) == [1, UNKNOWN]


def test_update_reads_a_zone_again() -> None:
    zones = [zone(0, {"small": 2}, arch="x86_64"), zone(1, {"small": 3})]
    zs = ZoneSet(zones)
    arm = tuple(parse_constraints({"arch": "arm64"}))
    assert list(zs.fits("small")) == [2, 3] and list(zs.met(arm)) == [0, 0]
    assert zs.plain
    zones[1].summary = Summary(hosts=1, strings={"arch": {"arm64": 1}}, fits={"small": 7})
    zones[0].active = False
    zones[0].weight_offset = 0.5
    zs.update(zones[1])
    zs.update(zones[0])
    assert list(zs.fits("small")) == [0, 7] and list(zs.met(arm)) == [0, 1]
    assert zs.offset == [0.5, 0.0] and not zs.plain
    with pytest.raises(ValueError, match="not in this ZoneSet"):
        ZoneSet([zone(9, {})]).update(zones[0])


def test_a_zone_belongs_to_one_set() -> None:
    z = zone(0, {})
    ZoneSet([z])
    with pytest.raises(ValueError, match="already in a ZoneSet"):
        ZoneSet([z])


def test_met_is_zone_may_satisfy_of_every_constraint() -> None:
    zones = [zone(0, {}), zone(1, {}, arch="arm64"), zone(2, {}, gpu=1)]
    zones[2].summary.numeric["gpu"] = NumericStats(min=0, max=2, sum=2, count=4)
    zs = ZoneSet(zones)
    for spec in ({"arch": "x86_64"}, {"arch": "arm64", "gpu": ">= 1"}, {"gpu": "exists"}):
        wanted = tuple(parse_constraints(spec))
        expected = [int(all(zone_may_satisfy(z, c) for c in wanted)) for z in zones]
        assert list(zs.met(wanted)) == expected
        assert zs.met(wanted) is zs.met(wanted)  # kept per constraints tuple


def test_columnar_only_without_free_amounts() -> None:
    assert columnar(tuple(parse_constraints({"arch": "arm64", "ssd": ">= 1"})))
    assert not columnar(tuple(parse_constraints({"free_ram_mb": ">= 1024"})))


@given(st.integers(1, 1500), st.data())
def test_scan_positions_are_the_items_of_a_range(n: int, data: Any) -> None:
    stride = data.draw(st.sampled_from([s for s in (1, 3, 7, 11) if n % s or s == 1]))
    start = data.draw(st.integers(0, n - 1))
    sizes = data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=60))
    a, b = ScanOrder(range(n), start, stride), ScanOrder(range(n), start, stride)
    for size in sizes:
        assert a.positions(size) == b.take(size)
        assert a.left == b.left


def _same(a: Decision, b: Decision) -> None:
    assert [c.key for c in a.ranked] == [c.key for c in b.ranked]
    assert a.scores == b.scores
    assert (a.scanned, a.offered) == (b.scanned, b.offered)
    assert [c.key for c in a.passed] == [c.key for c in b.passed]
    assert a.dropped == b.dropped
    assert a.reason() == b.reason()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zones_strategy(max_size=12),
    st.lists(requests(), min_size=1, max_size=6),
    st.integers(1, 6),
    st.sampled_from(["spread", "fill"]),
    st.integers(0, 3),
)
def test_plan_with_a_zone_set_decides_as_with_a_list(
    zones: list[ZoneCandidate],
    asked: list[PlacementRequest],
    sample: int,
    strategy: str,
    seed: int,
) -> None:
    """Several plans in a row, reserving on the best each time (so the columns must
    follow), with sampling and ties drawn from an rng: the same, every time."""
    config = PlannerConfig(strategy=strategy, sample_size=sample, max_ranked=3)
    listed = copy.deepcopy(zones)
    zs = ZoneSet(copy.deepcopy(zones))
    rng_a, rng_b = random.Random(seed), random.Random(seed)
    for req in asked:
        a = plan(req, [], listed, zone_name="p", config=config, rng=rng_a)
        b = plan(req, [], zs, zone_name="p", config=config, rng=rng_b)
        _same(a, b)
        if a.ranked:
            reserve_zone(a.ranked[0], req)  # type: ignore[arg-type]
            reserve_zone(b.ranked[0], req)  # type: ignore[arg-type]
    # and without an rng (ties by key), and explained
    req = asked[0]
    _same(
        plan(req, [], listed, zone_name="p", config=config),
        plan(req, [], zs, zone_name="p", config=config),
    )
    _same(
        plan(req, [], listed, zone_name="p", config=config, explain=True),
        plan(req, [], zs, zone_name="p", config=config, explain=True),
    )
