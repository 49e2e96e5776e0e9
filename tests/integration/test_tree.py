"""A federation of real zone processes: summaries add up, zones go offline and come back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from skyfed.federation.launcher import Federation
from skyfed.zones.summary import Summary
from tests.integration.conftest import FAST, hosts, running

pytestmark = pytest.mark.integration


async def zone_summary(fed: Federation, name: str) -> dict[str, Any]:
    async with fed.admin_client(name) as client:
        return (await client.zone()).summary


async def wait_for(check: Any, timeout: float, what: str) -> float:
    """Poll `check()` until true; return the seconds it took. Bounded by `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def offline_after_failures(samples: list[tuple[str, int]]) -> None:
    """In every (state, failures) seen, a child is offline exactly when `poll_failures`
    polls in a row have failed: never sooner, and at once then (counted in polls, not
    timed on a shared machine; each poll is bounded by poll_timeout)."""
    limit = FAST["poll_failures"]
    assert samples and samples[-1][0] == "offline", samples
    assert all((state == "offline") == (failures >= limit) for state, failures in samples), samples


def without_zone_count(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "zones"}


THREE_LEVELS = [
    {"name": "root"},
    {"name": "mid", "parents": ["root"]},
    {"name": "leaf-a", "parents": ["mid"], "hosts": [hosts(40, "a")]},
    {
        "name": "leaf-b",
        "parents": ["mid"],
        "hosts": [hosts(60, "b", capabilities={"arch": "arm64", "gpu": [0, 2]})],
    },
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def three_levels(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Federation]:
    """THREE_LEVELS for the tests below, one after another: each leaves it whole again."""
    async with running(THREE_LEVELS, tmp_path_factory.mktemp("three-levels")) as fed:
        yield fed


def on_three_levels(test: Any) -> Any:
    """A test of the shared tree: on the process that holds it, in the module's loop."""
    return pytest.mark.xdist_group("three_levels")(pytest.mark.asyncio(loop_scope="module")(test))


async def whole(fed: Federation) -> Federation:
    """The shared tree once every zone is active and the root covers every host."""

    async def every_host() -> bool:
        async with fed.admin_client("root") as root:
            zone = await root.zone()
        return zone.children[0].state == "active" and zone.summary["hosts"] == 100

    await wait_for(every_host, 60, "the tree whole")
    return fed


@on_three_levels
async def test_root_summary_is_the_merge_of_the_leaves(three_levels: Federation) -> None:
    fed = await whole(three_levels)
    leaves = [Summary.from_dict(await zone_summary(fed, n)) for n in ("leaf-a", "leaf-b")]
    root = await zone_summary(fed, "root")
    mid = await zone_summary(fed, "mid")
    expected = Summary.merge_all(leaves).to_dict()
    assert root["hosts"] == 100
    assert without_zone_count(root) == without_zone_count(expected)
    assert without_zone_count(mid) == without_zone_count(expected)
    assert (root["zones"], mid["zones"]) == (4, 3)
    assert root["strings"]["arch"] == {"x86_64": 20, "arm64": 80}
    assert root["numeric"]["free_vcpus"]["count"] == 100


async def test_a_tree_on_postgresql(federation, postgres_databases) -> None:
    """The same tree with every zone on its own PostgreSQL database."""
    zones = [
        {**zone, "settings": {"database_url": await postgres_databases()}} for zone in THREE_LEVELS
    ]
    async with federation(zones) as fed:
        leaves = [Summary.from_dict(await zone_summary(fed, n)) for n in ("leaf-a", "leaf-b")]
        root = await zone_summary(fed, "root")
        async with fed.admin_client("root") as client:
            assert [z.name for z in await client.list_zones()] == ["mid"]
    assert without_zone_count(root) == without_zone_count(Summary.merge_all(leaves).to_dict())
    assert not list(fed.state_dir.glob("*/*.db")), "a zone fell back to SQLite"


@on_three_levels
async def test_middle_zone_killed_goes_offline_in_time_and_comes_back(
    three_levels: Federation,
) -> None:
    fed = await whole(three_levels)
    mid = fed.zones["mid"]
    async with fed.admin_client("root") as root:
        mid_id = (await root.get_zone("mid")).id
        mid.kill()
        samples: list[tuple[str, int]] = []

        async def offline() -> bool:
            detail = await root.zone_detail(mid_id)
            samples.append((detail.state, detail.failures))
            return detail.state == "offline"

        await wait_for(offline, 30, "mid offline at root")
        offline_after_failures(samples)
        detail = await root.zone_detail(mid_id)
        assert detail.failures >= FAST["poll_failures"]
        assert detail.last_error
        me = await root.zone()
        assert me.summary["hosts"] == 0
        assert me.children[0].state == "offline"

        mid.start()  # same config, same database: it keeps its children

        async def back() -> bool:
            zone = await root.zone()
            return zone.children[0].state == "active" and zone.summary["hosts"] == 100

        await wait_for(back, 60, "mid active again with every host")
        detail = await root.zone_detail(mid_id)
        assert (detail.failures, detail.last_error) == (0, "")


@on_three_levels
async def test_a_hung_zone_goes_offline_in_time_and_comes_back(three_levels: Federation) -> None:
    """A zone that accepts connections but never answers (SIGSTOP), unlike a dead one."""
    fed = await whole(three_levels)
    mid = fed.zones["mid"]
    async with fed.admin_client("root") as root:
        mid.pause()
        try:
            samples: list[tuple[str, int]] = []

            async def offline() -> bool:
                detail = await root.zone_detail("mid")
                samples.append((detail.state, detail.failures))
                return detail.state == "offline"

            await wait_for(offline, 30, "hung mid offline at root")
            offline_after_failures(samples)
            assert "no answer within" in (await root.zone_detail("mid")).last_error
        finally:
            mid.resume()

        async def back() -> bool:
            zone = await root.zone()
            return zone.children[0].state == "active" and zone.summary["hosts"] == 100

        await wait_for(back, 60, "mid active again")


async def test_two_roots_over_one_child(federation) -> None:
    zones = [
        {"name": "geo"},
        {"name": "function"},
        {"name": "dc", "parents": ["geo", "function"], "hosts": [hosts(30, "dc")]},
    ]
    async with federation(zones) as fed:
        for root in ("geo", "function"):
            summary = await zone_summary(fed, root)
            assert summary["hosts"] == 30
        # The child keeps no record of its parents.
        async with fed.admin_client("dc") as dc:
            assert await dc.list_zones() == []
        # Deleting the child from one root leaves the other untouched.
        async with fed.admin_client("geo") as geo:
            await geo.delete_zone("dc")
            assert (await geo.zone()).summary["hosts"] == 0
        assert (await zone_summary(fed, "function"))["hosts"] == 30


async def test_hosts_that_stop_beating_leave_the_summary(federation) -> None:
    zones = [{"name": "top"}, {"name": "dc", "parents": ["top"], "hosts": [hosts(20, "h")]}]
    async with federation(zones) as fed:
        fed.agents["dc"].kill()
        async with fed.admin_client("top") as top:

            async def empty() -> bool:
                return (await top.zone()).summary["hosts"] == 0

            await wait_for(empty, FAST["host_ttl"] + 10, "hosts gone from the root summary")
        async with fed.admin_client("dc") as dc:
            listed = await dc.all_hosts()
            assert len(listed) == 20
            assert {h.state for h in listed} == {"offline"}


async def test_a_federation_restarts_on_its_own_state(tmp_path) -> None:
    from skyfed.federation.topology import parse_topology

    topology = parse_topology(
        {
            "defaults": FAST,
            "zones": [
                {"name": "top"},
                {"name": "dc", "parents": ["top"], "hosts": [hosts(10, "h")]},
            ],
        }
    )
    first = Federation(topology, tmp_path / "state")
    try:
        await first.start()
        await first.wait_covered(timeout=60)
        top_id = first.zones["top"].pid
    finally:
        first.stop()
    again = Federation(topology, tmp_path / "state")
    try:
        await again.start()  # new ports; the parent's record of its child is updated
        assert await again.wait_covered(timeout=60) == {"top": 10}
        assert again.admin_passwords == first.admin_passwords
        assert again.zones["top"].pid != top_id
        async with again.admin_client("top") as top:
            assert [z.api_url for z in await top.list_zones()] == [again.zones["dc"].url]
    finally:
        again.stop()
