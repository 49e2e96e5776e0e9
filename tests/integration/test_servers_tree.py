"""Servers through a tree of real zone processes with simulated hosts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.client_models import Server, Task
from tests.integration.conftest import hosts

pytestmark = pytest.mark.integration

TREE = [
    {"name": "top"},
    {"name": "eu", "parents": ["top"], "capabilities": {"region": "eu"}},
    {"name": "us", "parents": ["top"], "capabilities": {"region": "us"}},
    {"name": "eu-dc", "parents": ["eu"], "hosts": [hosts(6, "e", capabilities={"arch": "x86_64"})]},
    {"name": "us-dc", "parents": ["us"], "hosts": [hosts(6, "u", capabilities={"arch": "arm64"})]},
]


async def settle(client: SkyfedClient, ids: list[str], timeout: float = 60) -> list[Server]:
    """Every server once it is ACTIVE or ERROR (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        servers = [await client.get_server(i) for i in ids]
        if all(s.status in ("ACTIVE", "ERROR") for s in servers):
            return servers
        assert time.monotonic() < deadline, [s.status for s in servers]
        await asyncio.sleep(0.1)


async def all_listed(
    client: SkyfedClient, name: str | None = None
) -> tuple[list[Server], list[str]]:
    """Every page of 7 (so the pages cross zones), and the zones missing from any."""
    servers: list[Server] = []
    unavailable: list[str] = []
    marker = None
    for _ in range(100):
        page = await client.list_servers(limit=7, marker=marker, name=name)
        servers += page.servers
        unavailable += page.unavailable_zones
        marker = page.next_marker
        if marker is None:
            return servers, sorted(set(unavailable))
    raise AssertionError("paging did not end")


async def test_servers_sink_to_hosts_and_everything_follows_the_index(federation) -> None:
    async with federation(TREE) as fed, fed.admin_client("top") as top:
        arm = await top.create_servers(
            "arm", flavor="m1.small", count=4, constraints={"arch": "arm64"}
        )
        eu = await top.create_servers("eu", flavor="m1.small", count=3, within="eu")
        ids = [s.id for s in arm.servers + eu.servers]
        servers = await settle(top, ids)
        assert [s.status for s in servers] == ["ACTIVE"] * 7
        assert {tuple(s.location.path) for s in servers[:4]} == {("us", "us-dc")}
        assert {tuple(s.location.path) for s in servers[4:]} == {("eu", "eu-dc")}
        assert all(s.location.host for s in servers)  # admins see hosts

        # The same ids at every level, and the index says where they are.
        async with fed.admin_client("us") as us:
            assert (await us.get_server(ids[0])).location.path == ["us-dc"]

        listed, unavailable = await all_listed(top)
        assert sorted(s.id for s in listed) == sorted(ids) and unavailable == []
        assert [s.id for s in (await all_listed(top, name="eu-2"))[0]] == [ids[5]]

        project = servers[0].project_id
        located = await top.locate(project)
        assert located.name == "top"  # servers in both regions
        for server_id in ids[4:]:
            await top.delete_server(server_id)
        # An action after the delete does not overtake it on the way down: 409 while the
        # delete is under way here (or 404 once it is done), never accepted.
        with pytest.raises(SkyfedError) as overtaking:
            await top.server_action(ids[4], "stop")
        refusal = overtaking.value
        # Which of the two depends on how far the delete got; each is exact.
        assert (refusal.status, refusal.code, refusal.details) in (
            (409, "invalid_state", {"status": "DELETING", "task_state": None}),
            (404, "not_found", None),
        ), refusal

        async def only_us_left() -> bool:
            listed, _ = await all_listed(top)
            return sorted(s.id for s in listed) == sorted(ids[:4])

        await wait_until(only_us_left, 60, "deletes done")

        async def located_lower() -> bool:
            found = await top.locate(project)
            return found.name != "top"

        await wait_until(located_lower, 30, "the index forgets the deleted servers")
        located = await top.locate(project)
        assert (located.name, located.path) == ("us-dc", ["us", "us-dc"])
        assert located.url == fed.zones["us-dc"].url

        # Actions follow the index down; a conflict keeps its meaning on the way up.
        rebooting = await top.server_action(ids[0], "reboot")
        assert rebooting.status == "REBOOTING"
        with pytest.raises(SkyfedError) as busy:
            await top.server_action(ids[0], "stop")
        assert busy.value.status == 409 and "REBOOTING" in busy.value.message
        assert (await settle(top, [ids[0]]))[0].status == "ACTIVE"

        # Nothing fits: the reason names what is missing and where.
        with pytest.raises(SkyfedError) as impossible:
            await top.create_servers("no", flavor="m1.small", constraints={"arch": "sparc"})
        assert impossible.value.status == 400 and "arch = sparc" in impossible.value.message

        # A child still holding servers is not removed by mistake; with force it is,
        # and this zone forgets them (404, not 500, and locate no longer counts them).
        with pytest.raises(SkyfedError) as held:
            await top.delete_zone("us")
        assert (held.value.status, held.value.code) == (409, "zone_not_empty")
        assert "4 resource" in held.value.message
        assert (await top.get_server(ids[0])).status == "ACTIVE"
        await top.delete_zone("us", force=True)
        with pytest.raises(SkyfedError) as forgotten:
            await top.get_server(ids[0])
        assert forgotten.value.status == 404
        with pytest.raises(SkyfedError) as nowhere:
            await top.locate(project)
        assert nowhere.value.status == 404


async def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)
    return result


async def test_a_dead_child_is_named_in_lists_and_reached_again_after_a_restart(
    federation,
) -> None:
    async with federation(TREE) as fed, fed.admin_client("top") as top:
        created = await top.create_servers("w", flavor="m1.tiny", count=6)
        ids = [s.id for s in created.servers]
        servers = await settle(top, ids)
        in_us = [s.id for s in servers if s.location.path[0] == "us"]
        in_eu = [s.id for s in servers if s.location.path[0] == "eu"]
        assert in_us and in_eu  # spread over both regions

        fed.zones["us-dc"].kill()
        listed, unavailable = await all_listed(top)
        assert unavailable == ["us/us-dc"]
        assert sorted(s.id for s in listed) == sorted(in_eu)  # the rest still answers
        with pytest.raises(SkyfedError) as down:
            await top.get_server(in_us[0])
        assert down.value.status == 503

        # Once `us` has marked it offline, what only us-dc could take is "not now" (503),
        # not "never" (400): the client may retry, and nothing was created.
        async with fed.admin_client("us") as us:

            async def offline() -> bool:
                return [z.state for z in await us.list_zones()] == ["offline"]

            await wait_until(offline, 30, "us marks us-dc offline")
            page = await top.list_servers()
            assert [(u.zone, u.reason) for u in page.unavailable] == [("us/us-dc", "offline")]
            arm: dict[str, Any] = {"flavor": "m1.tiny", "constraints": {"arch": "arm64"}}
            with pytest.raises(SkyfedError) as later:
                await us.create_servers("a", **arm)
            assert (later.value.status, later.value.code) == (503, "zones_offline")
            assert "us-dc" in later.value.message
            sparc = {**arm, "constraints": {"arch": "sparc"}}
            with pytest.raises(SkyfedError) as never:
                await us.create_servers("a", **sparc)
            assert never.value.status == 400

        # Two levels up too: `us` reports us-dc out of reach, and the root says "not now".
        async def reported() -> bool:
            report = await top.zone()
            return (report.unreachable or {}).get("zones") == ["us/us-dc"]

        await wait_until(reported, 30, "the root learns us-dc is out of reach")
        with pytest.raises(SkyfedError) as at_root:
            await top.create_servers("a", **arm)
        assert (at_root.value.status, at_root.value.code) == (503, "zones_offline")
        assert "us/us-dc" in at_root.value.message

        fed.zones["us-dc"].start()
        await fed.zones["us-dc"].wait_ready()

        async def whole_again() -> bool:
            listed, unavailable = await all_listed(top)
            return not unavailable and len(listed) == 6

        await wait_until(whole_again, 60, "the list whole again")
        assert (await top.get_server(in_us[0])).status == "ACTIVE"
        await top.delete_server(in_us[0])

        async def deleted() -> bool:
            try:
                await top.get_server(in_us[0])
            except SkyfedError as exc:
                return exc.status == 404
            return False

        await wait_until(deleted, 60, "delete through the restarted zone")


async def test_a_thousand_concurrent_creates_never_overcommit_a_host(federation) -> None:
    """More requests than room: every host ends within its capacity, the rest say why."""
    small = {
        "count": 4,
        "vcpus": 8,
        "ram_mb": 16384,
        "disk_gb": 500,
        "load": 0.0,
        "capabilities": {"arch": "x86_64"},
    }
    zones = [
        {"name": "top"},
        {"name": "a", "parents": ["top"], "hosts": [{**small, "prefix": "a"}]},
        {"name": "b", "parents": ["top"], "hosts": [{**small, "prefix": "b"}]},
    ]
    async with federation(zones, placement_max_tries=3) as fed, fed.admin_client("top") as top:
        slots = asyncio.Semaphore(50)

        async def create(i: int) -> str:
            async with slots:
                answer = await top.create_servers(f"s{i}", vcpus=1, ram_mb=256, disk_gb=1)
                return answer.servers[0].id

        ids = await asyncio.gather(*(create(i) for i in range(1000)))
        servers = await settle(top, ids, timeout=240)
        active = [s for s in servers if s.status == "ACTIVE"]
        assert len(active) == 64  # 8 hosts of 8 vcpus
        for zone in ("a", "b"):
            async with fed.admin_client(zone) as client:
                zone_hosts = await client.all_hosts()
                assert len(zone_hosts) == 4, zone_hosts  # 8 hosts of 8 vcpus in all
                for host in zone_hosts:
                    assert host.allocated.vcpus <= host.resources.vcpus, host
                    assert host.allocated.vcpus == 8, host
        errors = [s for s in servers if s.status == "ERROR"]
        assert len(errors) == 936
        assert all("vcpus" in s.fault or "no room" in s.fault for s in errors), errors[0]


# A paused zone must not be dead to its parent, nor its hosts silent to it once resumed.
PAUSES = {"poll_failures": 30, "host_ttl": 60.0}


def impatient_tree(child_wait: float) -> list[dict[str, Any]]:
    """TREE with a root that asks a child once (for child_wait + 10 s at most, the child
    deciding for child_wait of them) and gives a placement up after that one attempt."""
    top = {"name": "top", "settings": {"child_wait": child_wait, "task_max_attempts": 1}}
    return [top, *TREE[1:]]


async def placed_unanswered(fed: Any, top: SkyfedClient, *, hang_us: bool) -> tuple[str, int]:
    """A server only us-dc can take, created at `top` while us-dc is paused (SIGSTOP), so
    `us` cannot place it yet: top hears "still deciding" from us or, with `hang_us` (us
    paused too once it holds the request), nothing at all. Top gives up; both resume, and
    us places the server in us-dc all the same. Its id and vcpus."""
    paused: list[int] = []
    us, dc = fed.zones["us"], fed.zones["us-dc"]
    assert us.pid is not None and dc.pid is not None
    os.kill(dc.pid, signal.SIGSTOP)
    paused.append(dc.pid)
    try:
        created = await top.create_servers("late", flavor="m1.small", constraints={"arch": "arm64"})
        server_id = created.servers[0].id
        if hang_us:
            async with fed.admin_client("us") as at_us:

                async def us_has_it() -> bool:
                    try:
                        return (await at_us.get_server(server_id)).id == server_id
                    except SkyfedError as exc:
                        if exc.status != 404:
                            raise
                        return False

                await wait_until(us_has_it, 4, "us holds the request while top waits")
            os.kill(us.pid, signal.SIGSTOP)
            paused.append(us.pid)

        async def given_up() -> Server | None:
            found = await top.get_server(server_id)
            return found if found.status == "ERROR" else None

        server = await wait_until(given_up, 60, "top gives up on the server")
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
    assert server.placement == "failed"
    why = "zone us did not answer" if hang_us else "zone us is still deciding"
    assert why in server.fault, server.fault

    async def in_us_dc() -> list[Server]:
        listed, _ = await all_listed(top, name="late")
        return [s for s in listed if s.location.path == ["us", "us-dc"] and s.status == "ACTIVE"]

    await wait_until(in_us_dc, 60, "us places the server all the same")
    return server_id, server.vcpus


async def held_in(client: SkyfedClient) -> int:
    """The vcpus skyfed's servers hold on the zone's hosts."""
    return sum(host.allocated.vcpus for host in await client.all_hosts())


async def test_deleting_a_server_whose_child_did_not_answer_deletes_it_there(
    federation,
) -> None:
    """Placement gave up on a child that did not answer, which placed the server later:
    a delete at the root reaches that child, so nothing is left behind anywhere."""
    async with (
        federation(impatient_tree(child_wait=5.0), **PAUSES) as fed,
        fed.admin_client("top") as top,
        fed.admin_client("us-dc") as dc,
    ):
        server_id, vcpus = await placed_unanswered(fed, top, hang_us=True)
        assert await held_in(dc) == vcpus
        await top.delete_server(server_id)

        async def gone_everywhere() -> bool:
            listed, unavailable = await all_listed(top, name="late")
            return not listed and not unavailable and await held_in(dc) == 0

        await wait_until(gone_everywhere, 60, "the copy in us-dc deleted, its room back")
        with pytest.raises(SkyfedError) as gone:
            await top.get_server(server_id)
        assert gone.value.status == 404
        [delete] = (await top.list_tasks(resource_id=server_id, kind="delete")).tasks
        assert (delete.state, delete.result) == ("succeeded", {"deleted": "in child"})

        # Retrying the failed placement of a server deleted since changes nothing.
        [place] = (await top.list_tasks(resource_id=server_id, kind="place")).tasks
        assert place.state == "failed"
        await top.retry_task(place.id)

        async def retried() -> Task | None:
            task = await top.get_task(place.id)
            return task if task.state == "succeeded" else None

        assert (await wait_until(retried, 30, "the retry ends")).result == {"placement": "gone"}
        assert (await all_listed(top, name="late"))[0] == [] and await held_in(dc) == 0


async def test_retrying_placement_finds_the_server_a_silent_child_placed(federation) -> None:
    """Placement gave up on a child that did not answer, which placed the server later:
    a retry of the place task asks that child again and records the server it holds."""
    async with (
        federation(impatient_tree(child_wait=1.0), **PAUSES) as fed,
        fed.admin_client("top") as top,
        fed.admin_client("us-dc") as dc,
    ):
        server_id, vcpus = await placed_unanswered(fed, top, hang_us=False)
        [place] = (await top.list_tasks(resource_id=server_id, kind="place")).tasks
        assert place.state == "failed"
        retried = await top.retry_task(place.id)
        assert retried.id == place.id
        assert retried.state in ("queued", "running", "succeeded")

        async def placed() -> Task | None:
            task = await top.get_task(place.id)
            return task if task.state in ("succeeded", "failed") else None

        done = await wait_until(placed, 30, "the retried place task ends")
        assert done.result is not None and done.result["placement"] == "placed", done
        server = await top.get_server(server_id)
        assert (server.status, server.location.path) == ("ACTIVE", ["us", "us-dc"])
        assert (server.placement, server.fault) == ("placed", "")
        listed, _ = await all_listed(top, name="late")
        assert [s.id for s in listed] == [server_id]
        assert await held_in(dc) == vcpus  # placed once
