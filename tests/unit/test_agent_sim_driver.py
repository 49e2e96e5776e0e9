"""The sim driver: capacity accounting per host, idempotency, seeded failures, delays."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from skyfed.client_models import HeartbeatsTaken
from skyfed.compute.agent import heartbeat
from skyfed.compute.agent.driver import DriverError, run_action
from skyfed.compute.agent.sim import SimHost, expand_groups
from skyfed.compute.agent.sim_driver import SimDriver


def host(name: str = "h0", vcpus: int = 4, ram_mb: int = 8192, disk_gb: int = 100) -> SimHost:
    resources = {"vcpus": vcpus, "ram_mb": ram_mb, "disk_gb": disk_gb}
    return SimHost(name, {}, resources, dict.fromkeys(resources, 0))


def server(vcpus: int = 1, ram_mb: int = 1024, disk_gb: int = 10) -> dict[str, Any]:
    return {"name": "s", "vcpus": vcpus, "ram_mb": ram_mb, "disk_gb": disk_gb, "metadata": {}}


async def test_boots_fill_a_host_and_the_one_that_does_not_fit_fails() -> None:
    driver = SimDriver([host(vcpus=4)])
    assert (await driver.boot("h0", "a", server(vcpus=2))).status == "ACTIVE"
    await driver.boot("h0", "b", server(vcpus=2))
    assert driver.used("h0") == {"vcpus": 4, "ram_mb": 2048, "disk_gb": 20}
    with pytest.raises(DriverError) as err:
        await driver.boot("h0", "c", server(vcpus=2))
    assert str(err.value) == (
        "insufficient capacity on h0: need vcpus=2 ram_mb=1024 disk_gb=10, "
        "free vcpus=0 ram_mb=6144 disk_gb=80"
    )
    assert driver.status("c") is None
    assert driver.used("h0")["vcpus"] == 4  # the failed boot took nothing
    await driver.delete("h0", "a", {})
    assert driver.used("h0") == {"vcpus": 2, "ram_mb": 1024, "disk_gb": 10}
    assert (await driver.boot("h0", "c", server(vcpus=2))).status == "ACTIVE"


async def test_each_host_has_its_own_capacity() -> None:
    driver = SimDriver([host("h0", vcpus=2), host("h1", vcpus=2)])
    await driver.boot("h0", "a", server(vcpus=2))
    await driver.boot("h1", "b", server(vcpus=2))
    with pytest.raises(DriverError, match="insufficient capacity on h1"):
        await driver.boot("h1", "c", server(vcpus=1))
    assert driver.used("h0")["vcpus"] == driver.used("h1")["vcpus"] == 2


async def test_baseline_load_reduces_capacity_and_shows_in_heartbeats() -> None:
    hosts = expand_groups(
        [{"count": 1, "vcpus": 10, "ram_mb": 10000, "disk_gb": 100, "load": 1.0}],
        prefix="z",
        seed=3,
    )
    baseline = dict(hosts[0].used)
    assert baseline["vcpus"] > 0  # load 1.0 draws a share in 0..1 of each resource
    driver = SimDriver(hosts)
    name = hosts[0].name
    free_vcpus = 10 - baseline["vcpus"]
    with pytest.raises(DriverError, match=f"free vcpus={free_vcpus} "):
        await driver.boot(name, "big", server(vcpus=free_vcpus + 1, ram_mb=0, disk_gb=0))
    await driver.boot(name, "a", server(vcpus=1, ram_mb=100, disk_gb=1))
    beat = hosts[0].heartbeat(servers=driver.used(name), agent="z-agent")
    assert beat["agent"] == "z-agent"
    assert beat["used"] == {
        "vcpus": baseline["vcpus"] + 1,
        "ram_mb": baseline["ram_mb"] + 100,
        "disk_gb": baseline["disk_gb"] + 1,
    }
    assert hosts[0].used == baseline  # the baseline itself is not changed by servers
    assert "agent" not in hosts[0].heartbeat()  # the old shape still works


async def test_heartbeats_batch_every_host_with_agent_and_used() -> None:
    hosts = [host(f"h{i}") for i in range(3)]
    driver = SimDriver(hosts)
    await driver.boot("h1", "a", server(vcpus=3))
    sent: list[list[dict[str, Any]]] = []

    class Client:
        async def heartbeat_batch(self, beats: list[dict[str, Any]]) -> HeartbeatsTaken:
            sent.append(beats)
            return HeartbeatsTaken(accepted=len(beats), disabled=["h2"])

    disabled = await heartbeat.beat_once(Client(), hosts, agent="ag", used=driver.used)  # type: ignore[arg-type]
    assert disabled == {"h2"}
    assert [b["name"] for b in sent[0]] == ["h0", "h1", "h2"]
    assert {b["agent"] for b in sent[0]} == {"ag"}
    assert sent[0][1]["used"] == {"vcpus": 3, "ram_mb": 1024, "disk_gb": 10}
    assert sent[0][0]["used"] == {"vcpus": 0, "ram_mb": 0, "disk_gb": 0}


async def test_boot_is_idempotent_on_the_server_id() -> None:
    driver = SimDriver([host("h0"), host("h1")], boot_delay=0.05, jitter=0.0)
    first, second = await asyncio.gather(
        driver.boot("h0", "a", server(vcpus=2)), driver.boot("h0", "a", server(vcpus=2))
    )
    assert first.status == second.status == "ACTIVE"
    assert driver.used("h0")["vcpus"] == 2  # one copy
    assert (await driver.boot("h0", "a", server(vcpus=2))).status == "ACTIVE"
    assert driver.used("h0")["vcpus"] == 2
    with pytest.raises(DriverError, match="already runs on h0, not h1"):
        await driver.boot("h1", "a", server(vcpus=2))


async def test_a_burst_of_concurrent_boots_never_overcommits() -> None:
    driver = SimDriver([host(vcpus=10, ram_mb=1 << 20, disk_gb=1 << 20)], boot_delay=0.02)
    results = await asyncio.gather(
        *(driver.boot("h0", f"s{i}", server(vcpus=1)) for i in range(50)),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, DriverError)]
    assert len(ok) == 10 and len(failed) == 40
    assert driver.used("h0")["vcpus"] == 10


async def _failures(seed: int, rate: float) -> list[int]:
    driver = SimDriver(
        [host(vcpus=1000, ram_mb=1 << 20, disk_gb=1 << 20)], failure_rate=rate, seed=seed
    )
    failed = []
    for i in range(200):
        try:
            await driver.boot("h0", f"s{i}", server(ram_mb=1, disk_gb=1))
        except DriverError as exc:
            assert "simulated boot failure on h0 (failure rate 0.25)" in str(exc)
            failed.append(i)
    assert driver.used("h0")["vcpus"] == 200 - len(failed)  # failures hold nothing
    assert all(driver.status(f"s{i}") is None for i in failed)
    return failed


async def test_failure_rate_is_seeded_and_reproducible() -> None:
    first = await _failures(7, 0.25)
    assert first == await _failures(7, 0.25)
    assert first != await _failures(8, 0.25)
    assert 25 <= len(first) <= 75  # about a quarter of 200
    assert await _failures(7, 0.0) == []


async def test_boot_takes_its_delay_and_is_building_meanwhile() -> None:
    driver = SimDriver([host()], boot_delay=0.2, jitter=0.0)
    began = time.monotonic()
    booting = asyncio.create_task(driver.boot("h0", "a", server()))
    await asyncio.sleep(0)  # the boot runs up to its delay (a longer sleep may outlast it)
    assert driver.status("a") == "BUILDING"
    assert driver.used("h0")["vcpus"] == 1  # claimed before the delay
    await asyncio.wait_for(booting, 5)
    assert time.monotonic() - began >= 0.19
    assert driver.status("a") == "ACTIVE"


async def test_jitter_varies_boot_times_within_bounds() -> None:
    driver = SimDriver([host(vcpus=100)], boot_delay=1.0, jitter=0.5, seed=1)
    delays = [driver._delay(1.0) for _ in range(100)]
    assert min(delays) >= 0.5 and max(delays) <= 1.5
    assert max(delays) - min(delays) > 0.5


async def test_stop_start_reboot_change_state_and_keep_resources() -> None:
    driver = SimDriver([host()], action_delay=0.02)
    await driver.boot("h0", "a", server(vcpus=2))
    assert (await driver.stop("h0", "a", {})).status == "STOPPED"
    assert driver.status("a") == "STOPPED"
    assert driver.used("h0")["vcpus"] == 2  # a stopped server keeps its resources
    assert (await driver.stop("h0", "a", {})).status == "STOPPED"  # idempotent
    assert (await driver.boot("h0", "a", server(vcpus=2))).status == "STOPPED"  # no second copy
    assert (await driver.start("h0", "a", {})).status == "ACTIVE"
    assert (await driver.start("h0", "a", {})).status == "ACTIVE"
    assert (await driver.reboot("h0", "a", {})).status == "ACTIVE"
    assert (await run_action(driver, "delete", "h0", "a", {})).status == "DELETED"
    assert driver.status("a") is None
    assert driver.used("h0") == {"vcpus": 0, "ram_mb": 0, "disk_gb": 0}


async def test_delete_of_an_unknown_server_succeeds_other_actions_explain() -> None:
    driver = SimDriver([host()])
    assert (await driver.delete("h0", "ghost", {})).status == "DELETED"
    for action in ("stop", "start", "reboot"):
        with pytest.raises(DriverError, match="server ghost is not on h0"):
            await run_action(driver, action, "h0", "ghost", {})
    with pytest.raises(DriverError, match="unknown action 'resize'"):
        await run_action(driver, "resize", "h0", "ghost", {})


async def test_unknown_host_and_bad_sizes_are_clear_errors() -> None:
    driver = SimDriver([host("h0"), host("h1")])
    with pytest.raises(DriverError, match=r"does not carry host 'nope' \(it carries h0, h1\)"):
        await driver.boot("nope", "a", server())
    with pytest.raises(DriverError, match="vcpus must be a non-negative integer"):
        await driver.boot("h0", "a", {"vcpus": "2"})
    with pytest.raises(DriverError, match="runs on h0, not h1"):
        await driver.boot("h0", "b", server())
        await driver.stop("h1", "b", {})
    assert driver.status("a") is None


async def test_crash_publishes_an_event() -> None:
    driver = SimDriver([host()])
    await driver.boot("h0", "a", server())
    driver.crash("a", "disk on fire")
    event = driver.events.get_nowait()
    assert event == {
        "server_id": "a",
        "status": "STOPPED",
        "exit_code": None,
        "message": "disk on fire",
    }
    assert driver.status("a") == "STOPPED"
    driver.crash("a")  # a stopped server does not crash again
    assert driver.events.empty()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        SimDriver([host()], failure_rate=1.5)
    with pytest.raises(ValueError):
        SimDriver([host()], boot_delay=-1)
