"""The in-memory host registry: heartbeats, liveness, forgetting and admin disabling."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyfed.compute.hosts.registry import HostRegistry, Resources
from skyfed.zones.summary import summarize_hosts

TTL = 15.0
FORGET = 60.0
BIG = Resources(vcpus=32, ram_mb=65536, disk_gb=1000)
NONE_USED = Resources()


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> HostRegistry:
    return HostRegistry(ttl=TTL, forget_after=FORGET, clock=clock)


def beat(
    registry: HostRegistry,
    name: str,
    caps: dict[str, str | int | float] | None = None,
    resources: Resources = BIG,
    used: Resources = NONE_USED,
):
    return registry.heartbeat(name, caps or {}, resources, used)


def online_names(registry: HostRegistry) -> set[str]:
    return {r.name for r in registry.online()}


# -- liveness ----------------------------------------------------------------------------


def test_host_is_online_after_a_heartbeat(registry: HostRegistry, clock: FakeClock) -> None:
    record = beat(registry, "h1", {"arch": "arm64"})
    assert record.name == "h1"
    assert record.beat_at == clock.now
    assert registry.get("h1") is record
    assert registry.is_online(record)
    assert online_names(registry) == {"h1"}
    assert len(registry) == 1
    assert registry.known("h1")
    assert not registry.known("h2")
    assert registry.get("h2") is None


def test_host_goes_offline_after_ttl(registry: HostRegistry, clock: FakeClock) -> None:
    record = beat(registry, "h1")
    clock.advance(TTL - 0.001)
    assert registry.is_online(record)
    assert online_names(registry) == {"h1"}
    clock.advance(0.001)
    assert not registry.is_online(record)
    assert online_names(registry) == set()
    # Offline, but still listed and known.
    assert [r.name for r in registry.all()] == ["h1"]
    assert registry.known("h1")


def test_is_online_with_explicit_time(registry: HostRegistry, clock: FakeClock) -> None:
    record = beat(registry, "h1")
    assert not registry.is_online(record, now=clock.now + TTL)
    assert registry.is_online(record, now=clock.now + TTL - 1)


def test_heartbeat_brings_an_offline_host_back(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "h1")
    clock.advance(TTL + 5)
    assert online_names(registry) == set()
    beat(registry, "h1")
    assert online_names(registry) == {"h1"}
    assert len(registry) == 1


def test_only_silent_hosts_go_offline(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "h1")
    beat(registry, "h2")
    clock.advance(10)
    beat(registry, "h2")
    clock.advance(10)
    assert online_names(registry) == {"h2"}


def test_host_is_forgotten_after_forget_after(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "h1")
    clock.advance(FORGET - 0.5)
    assert registry.expire() == 0
    assert registry.get("h1") is not None
    clock.advance(0.5)
    assert registry.expire() == 1
    assert registry.get("h1") is None
    assert len(registry) == 0
    assert registry.all() == []
    assert not registry.known("h1")
    assert registry.expire() == 0


def test_expire_forgets_only_the_long_silent(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "old")
    clock.advance(FORGET - 1)
    beat(registry, "young")
    clock.advance(1)
    assert registry.expire() == 1
    assert [r.name for r in registry.all()] == ["young"]


def test_forget_after_is_at_least_ttl(clock: FakeClock) -> None:
    registry = HostRegistry(ttl=30, forget_after=5, clock=clock)
    assert registry.forget_after == 30
    beat(registry, "h1")
    clock.advance(10)
    assert registry.expire() == 0
    assert online_names(registry) == {"h1"}
    clock.advance(20)
    assert registry.expire() == 1


def test_forgotten_host_that_beats_again_is_new(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "h1")
    clock.advance(FORGET)
    registry.expire()
    version = registry.version
    beat(registry, "h1")
    assert registry.version == version + 1
    assert online_names(registry) == {"h1"}


def test_default_clock_is_the_monotonic_clock() -> None:
    """Wall-clock jumps (NTP, an operator) must not take hosts offline."""
    assert HostRegistry(ttl=60, forget_after=60).clock is time.monotonic


# -- disabling -----------------------------------------------------------------------------


def test_disable_known_host(registry: HostRegistry) -> None:
    record = beat(registry, "h1")
    registry.set_disabled("h1", True, "maintenance")
    assert record.disabled
    assert record.disabled_reason == "maintenance"
    assert registry.is_disabled("h1")
    # A later heartbeat does not undo it.
    record = beat(registry, "h1")
    assert record.disabled
    assert record.disabled_reason == "maintenance"


def test_enable_again(registry: HostRegistry) -> None:
    beat(registry, "h1")
    registry.set_disabled("h1", True, "maintenance")
    registry.set_disabled("h1", False)
    record = registry.get("h1")
    assert record is not None
    assert not record.disabled
    assert record.disabled_reason == ""
    assert not registry.is_disabled("h1")
    assert not beat(registry, "h1").disabled


def test_disabled_set_applies_to_hosts_that_beat_later(registry: HostRegistry) -> None:
    registry.set_disabled("later", True, "broken fan")
    assert registry.is_disabled("later")
    assert registry.known("later")
    assert registry.get("later") is None
    record = beat(registry, "later")
    assert record.disabled
    assert record.disabled_reason == "broken fan"
    assert not beat(registry, "other").disabled


def test_load_disabled_applies_to_present_and_future_hosts(registry: HostRegistry) -> None:
    present = beat(registry, "present")
    other = beat(registry, "other")
    registry.load_disabled({"present": "retired", "future": "not racked yet"})
    assert present.disabled and present.disabled_reason == "retired"
    assert not other.disabled
    future = beat(registry, "future")
    assert future.disabled and future.disabled_reason == "not racked yet"
    # Loading again replaces the set: hosts left out are enabled.
    registry.load_disabled({})
    assert not present.disabled and present.disabled_reason == ""
    assert not beat(registry, "future").disabled


def test_load_disabled_copies_its_input(registry: HostRegistry) -> None:
    disabled = {"h1": "x"}
    registry.load_disabled(disabled)
    disabled.clear()
    assert registry.is_disabled("h1")


# -- version -------------------------------------------------------------------------------


def test_version_bumps_when_a_host_appears(registry: HostRegistry) -> None:
    assert registry.version == 0
    beat(registry, "h1")
    assert registry.version == 1
    beat(registry, "h2")
    assert registry.version == 2


def test_version_unchanged_on_a_repeat_heartbeat(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "h1", {"arch": "arm64"})
    version = registry.version
    for _ in range(5):
        clock.advance(1)
        beat(registry, "h1", {"arch": "arm64"}, used=Resources(vcpus=3))
    assert registry.version == version


def test_version_bumps_when_a_host_is_forgotten(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "h1")
    beat(registry, "h2")
    version = registry.version
    clock.advance(FORGET)
    assert registry.expire() == 2
    assert registry.version == version + 1
    assert registry.expire() == 0
    assert registry.version == version + 1


def test_version_unchanged_when_nothing_expires(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "h1")
    version = registry.version
    clock.advance(TTL)
    assert registry.expire() == 0
    assert registry.version == version


def test_version_bumps_when_disabled_or_enabled(registry: HostRegistry) -> None:
    beat(registry, "h1")
    version = registry.version
    registry.set_disabled("h1", True, "x")
    assert registry.version == version + 1
    registry.set_disabled("h1", False)
    assert registry.version == version + 2
    registry.set_disabled("unknown", True)
    assert registry.version == version + 3
    registry.load_disabled({"h1": "y"})
    assert registry.version == version + 4


# -- values and free resources ----------------------------------------------------------------


def test_values_hold_capabilities_totals_and_free(registry: HostRegistry) -> None:
    record = beat(
        registry,
        "h1",
        {"arch": "arm64", "gpu": 2},
        resources=Resources(vcpus=32, ram_mb=65536, disk_gb=1000),
        used=Resources(vcpus=8, ram_mb=16384, disk_gb=100),
    )
    assert record.free == (24, 49152, 900)
    assert record.values == {
        "arch": "arm64",
        "gpu": 2,
        "vcpus": 32,
        "ram_mb": 65536,
        "disk_gb": 1000,
        "free_vcpus": 24,
        "free_ram_mb": 49152,
        "free_disk_gb": 900,
    }


def test_free_resources_clamp_at_zero(registry: HostRegistry) -> None:
    record = beat(
        registry,
        "h1",
        resources=Resources(vcpus=4, ram_mb=1024, disk_gb=10),
        used=Resources(vcpus=6, ram_mb=2048, disk_gb=11),
    )
    assert record.free == (0, 0, 0)
    assert record.values["free_vcpus"] == 0
    assert record.values["free_ram_mb"] == 0
    assert record.values["free_disk_gb"] == 0


def test_clamp_is_per_resource(registry: HostRegistry) -> None:
    record = beat(
        registry,
        "h1",
        resources=Resources(vcpus=4, ram_mb=1024, disk_gb=10),
        used=Resources(vcpus=6, ram_mb=24, disk_gb=10),
    )
    assert record.free == (0, 1000, 0)


def test_a_reload_does_not_undo_a_claim_made_while_it_read(registry: HostRegistry) -> None:
    """Housekeeping reads the allocations while this process claims: a snapshot from
    before the claim must not put the claimed room back; hosts it did not touch follow
    the snapshot (other processes' claims), and the next reload takes it all."""
    h1, h2 = beat(registry, "h1"), beat(registry, "h2")
    registry.set_allocations({"h1": (2, 2048, 20), "h2": (1, 1024, 10)})
    mark = registry.allocation_changes
    registry.set_allocation("h1", (6, 6144, 60))  # claimed while the reload read
    registry.set_allocations({"h1": (2, 2048, 20), "h2": (3, 3072, 30)}, read_after=mark)
    assert h1.allocated == (6, 6144, 60)
    assert h1.free == (26, 59392, 940)
    assert h2.allocated == (3, 3072, 30)

    mark = registry.allocation_changes
    registry.set_allocations({"h1": (7, 7168, 70), "h2": (3, 3072, 30)}, read_after=mark)
    assert h1.allocated == (7, 7168, 70)


def test_held_room_is_not_free_until_released_once(registry: HostRegistry) -> None:
    h1 = beat(registry, "h1")
    registry.hold("s1", "h1", (4, 4096, 40))
    registry.hold("s2", "h1", (2, 2048, 20))
    assert h1.free == (26, 59392, 940)
    assert h1.values["free_vcpus"] == 26  # summaries and filters see it too
    registry.release("s1")
    registry.release("s1")  # a second release gives nothing back
    assert h1.free == (30, 63488, 980)
    registry.hold("s2", "h1", (2, 2048, 20))  # held again: replaces, does not add
    assert h1.free == (30, 63488, 980)
    registry.release("s2")
    assert h1.free == (32, 65536, 1000)


def test_a_hold_outlives_the_hosts_record(registry: HostRegistry, clock: FakeClock) -> None:
    """A host forgotten and beating again still shows the claim under way on it."""
    beat(registry, "h1")
    registry.hold("s1", "h1", (4, 4096, 40))
    clock.advance(FORGET + 1)
    registry.expire()
    again = beat(registry, "h1")
    assert again.free == (28, 61440, 960)
    registry.release("s1")
    assert again.free == (32, 65536, 1000)


def test_released_room_comes_back_at_once(registry: HostRegistry) -> None:
    h1 = beat(registry, "h1")
    registry.set_allocations({"h1": (4, 4096, 40)})
    registry.add_allocation("h1", -4, -4096, -40)
    assert h1.free == (32, 65536, 1000)


def test_repeat_heartbeat_updates_everything(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "h1", {"arch": "arm64", "old": 1}, used=Resources(vcpus=1))
    clock.advance(3)
    record = beat(registry, "h1", {"arch": "x86_64"}, used=Resources(vcpus=30))
    assert record.beat_at == clock.now
    assert record.capabilities == {"arch": "x86_64"}
    assert "old" not in record.values
    assert record.values["arch"] == "x86_64"
    assert record.free[0] == 2


def test_capabilities_are_copied(registry: HostRegistry) -> None:
    caps: dict[str, str | int | float] = {"arch": "arm64"}
    record = beat(registry, "h1", caps)
    caps["arch"] = "x86_64"
    assert record.capabilities == {"arch": "arm64"}
    assert record.values["arch"] == "arm64"


def test_resource_values_override_capabilities_of_the_same_name(registry: HostRegistry) -> None:
    record = beat(registry, "h1", {"vcpus": 9999, "free_vcpus": 9999})
    assert record.values["vcpus"] == BIG.vcpus
    assert record.values["free_vcpus"] == BIG.vcpus


def test_records_are_host_like_for_summaries(registry: HostRegistry, clock: FakeClock) -> None:
    beat(registry, "a", {"arch": "arm64"}, used=Resources(vcpus=30))
    beat(registry, "b", {"arch": "x86_64"})
    registry.set_disabled("b", True)
    clock.advance(1)
    summary = summarize_hosts(registry.online(), [])
    assert summary.hosts == 2
    assert summary.disabled == 1
    assert summary.strings == {"arch": {"arm64": 1}}
    assert summary.numeric["free_vcpus"].max == 2


@given(
    total=st.tuples(*(st.integers(min_value=0, max_value=10**6),) * 3),
    used=st.tuples(*(st.integers(min_value=0, max_value=2 * 10**6),) * 3),
)
@settings(max_examples=100)
def test_free_is_total_minus_used_never_negative(
    total: tuple[int, int, int], used: tuple[int, int, int]
) -> None:
    registry = HostRegistry(ttl=TTL, forget_after=FORGET, clock=FakeClock())
    record = beat(registry, "h", resources=Resources(*total), used=Resources(*used))
    assert record.free == tuple(max(t - u, 0) for t, u in zip(total, used, strict=True))
