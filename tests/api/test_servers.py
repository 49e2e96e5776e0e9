"""Servers at one zone (SQLite and PostgreSQL): lifecycle, placement on hosts, tasks, bad input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import update

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.client_models import Server, ServersCreated
from skyfed.compute.models import HostAllocation
from skyfed.identity.principal import Principal
from skyfed.wire import forwarded_headers
from tests.conftest import AGENT_PASSWORD, SERVICE_PASSWORD, InProcessZone, zone_settings
from tests.fakes import ScriptedAgent

HOST = {"vcpus": 8, "ram_mb": 16384, "disk_gb": 200}


@pytest.fixture
async def agent(zone: InProcessZone) -> Any:
    async with zone.client("agent", AGENT_PASSWORD) as client:
        scripted = ScriptedAgent(client)
        await scripted.beat({"h1": HOST, "h2": HOST}, arch="x86_64")
        yield scripted


async def wait_for(check: Any, what: str, timeout: float = 20.0) -> Any:
    """Poll `check()` until it returns something truthy (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


async def create(
    client: SkyfedClient, name: str = "web", flavor: str | None = "m1.small", **fields: Any
) -> ServersCreated:
    return await client.create_servers(name, flavor=flavor, **fields)


def deep(levels: int) -> list[Any]:
    """A list nested `levels` deep."""
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


async def booted(client: SkyfedClient, agent: ScriptedAgent, server_id: str) -> Server:
    """Answer the agent's commands until the server is ACTIVE."""

    async def active() -> Server | None:
        await agent.answer_all()
        found = await client.get_server(server_id)
        return found if found.status == "ACTIVE" else None

    return await wait_for(active, f"server {server_id} ACTIVE")


async def test_flavors(zone: InProcessZone, admin: SkyfedClient) -> None:
    flavors = await admin.list_flavors()
    assert {f.name for f in flavors} >= {"m1.tiny", "m1.small", "m1.xlarge"}
    made = await admin.create_flavor("gpu.big", vcpus=16, ram_mb=65536)  # disk_gb not sent
    assert (made.name, made.vcpus, made.ram_mb, made.disk_gb) == ("gpu.big", 16, 65536, 0)
    assert made in await admin.list_flavors()
    with pytest.raises(SkyfedError) as exc:
        await admin.create_flavor("gpu.big", vcpus=1, ram_mb=1)
    assert (exc.value.status, exc.value.code) == (409, "conflict")


async def test_create_and_boot(admin: SkyfedClient, agent: ScriptedAgent) -> None:
    created = await create(admin)
    [brief] = created.servers
    assert brief.status == "BUILDING"
    up = await booted(admin, agent, brief.id)
    assert up.location.host in ("h1", "h2")
    assert up.launched_at is not None
    assert [c["action"] for c in agent.seen] == ["boot"]
    assert agent.seen[0]["server"]["ram_mb"] == 2048


async def test_agent_polls_past_its_cursor(admin: SkyfedClient, agent: ScriptedAgent) -> None:
    """`after=SEQ` gives only newer commands (no re-sending what is running); 0 gives all."""
    path = f"/v1/agents/{agent.name}/commands"
    [first] = (await create(admin, name="a")).servers
    [delivered] = await wait_for(agent.commands, "the first boot command")
    assert delivered["server_id"] == first.id
    cursor = delivered["seq"]
    quiet = await agent.client.agent_commands(agent.name, after=cursor, wait=0.2)
    assert quiet == []  # the running one is not sent again

    [second] = (await create(admin, name="b")).servers
    newer = await agent.client.agent_commands(agent.name, after=cursor, wait=10)
    assert [c["server_id"] for c in newer] == [second.id]
    assert newer[0]["seq"] > cursor
    everything = await agent.client.agent_commands(agent.name, after=0)
    assert [c["server_id"] for c in everything] == [first.id, second.id]
    with pytest.raises(SkyfedError) as bad:  # a cursor no command can have
        await agent.client.request("GET", path, params={"after": -1})
    assert (bad.value.status, bad.value.code) == (422, "validation_error")


async def test_actions_follow_the_lifecycle(admin: SkyfedClient, agent: ScriptedAgent) -> None:
    [brief] = (await create(admin)).servers
    sid = brief.id
    with pytest.raises(SkyfedError) as building:
        await admin.server_action(sid, "reboot")
    assert (building.value.status, building.value.code) == (409, "invalid_state")
    assert "BUILDING" in building.value.message
    await booted(admin, agent, sid)

    with pytest.raises(SkyfedError) as start_active:
        await admin.server_action(sid, "start")
    assert (start_active.value.status, start_active.value.code) == (409, "invalid_state")
    assert "ACTIVE" in start_active.value.message

    stopping = await admin.server_action(sid, "stop")
    assert (stopping.id, stopping.status, stopping.task_state) == (sid, "ACTIVE", "stopping")
    with pytest.raises(SkyfedError) as busy:
        await admin.server_action(sid, "reboot")
    assert (busy.value.status, busy.value.code) == (409, "invalid_state")
    assert "stopping" in busy.value.message

    async def stopped() -> bool:
        await agent.answer_all()
        return (await admin.get_server(sid)).status == "STOPPED"

    await wait_for(stopped, "STOPPED")
    rebooting = await admin.server_action(sid, "reboot")
    assert rebooting.status == "REBOOTING"
    await booted(admin, agent, sid)
    assert [c["action"] for c in agent.seen] == ["boot", "stop", "reboot"]


async def test_delete_releases_the_host(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    [brief] = (await create(admin, flavor="m1.large")).servers
    up = await booted(admin, agent, brief.id)
    host = up.location.host
    assert host is not None
    free = (await admin.get_host(host)).free
    assert free.vcpus == HOST["vcpus"] - 4
    deleting = await admin.delete_server(brief.id)
    assert (deleting.id, deleting.status) == (brief.id, "DELETING")
    with pytest.raises(SkyfedError) as again:
        await admin.delete_server(brief.id)
    assert (again.value.status, again.value.code) == (409, "invalid_state")

    async def gone() -> bool:
        await agent.answer_all()
        try:
            await admin.get_server(brief.id)
        except SkyfedError as exc:
            return exc.status == 404
        return False

    await wait_for(gone, "server deleted")

    # The host's room is back. (The process's own view may be off for one housekeeping
    # round when its read of the claims lands between the delete's commit and its own
    # give-back; the claims in the database, which placement checks, never are.)
    async def released() -> bool:
        return (await admin.get_host(host)).free.vcpus == HOST["vcpus"]

    await wait_for(released, "the host's room given back")
    assert agent.seen[-1]["action"] == "delete"


async def test_a_burst_never_overcommits_a_host(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    """16 vcpus in all, 30 requests of 1 vcpu each at once: 16 fit, 14 end in ERROR."""
    answers = await asyncio.gather(
        *(create(admin, name=f"b{i}", flavor=None, vcpus=1, ram_mb=512) for i in range(30))
    )
    ids = [a.servers[0].id for a in answers]

    async def settled() -> list[Server] | None:
        await agent.answer_all()
        servers = [await admin.get_server(i) for i in ids]
        return servers if all(s.status in ("ACTIVE", "ERROR") for s in servers) else None

    servers = await wait_for(settled, "all settled", timeout=60)
    active = [s for s in servers if s.status == "ACTIVE"]
    assert len(active) == 16
    for host in ("h1", "h2"):
        assert sum(1 for s in active if s.location.host == host) == 8
        assert (await admin.get_host(host)).free.vcpus == 0
    errors = [s for s in servers if s.status == "ERROR"]
    assert errors and all("vcpus" in s.fault for s in errors), sorted({s.fault for s in errors})


@pytest.fixture
async def one_try(
    tmp_path: Any, database_url: str
) -> AsyncIterator[tuple[InProcessZone, SkyfedClient, ScriptedAgent]]:
    """A zone giving each placement one try, its admin, and an agent with no hosts yet.
    Its view of the hosts changes only by what it does and hears (no housekeeping
    read of the shared claims meanwhile, however slow the machine): what these tests
    look at is what a refusal or a decision taught it."""
    settings = zone_settings(
        tmp_path, database_url, placement_max_tries=1, host_share_interval=3600.0
    )
    async with (
        InProcessZone(settings) as zone,
        zone.client() as admin,
        zone.client("agent", AGENT_PASSWORD) as client,
    ):
        yield zone, admin, ScriptedAgent(client)


async def test_a_refused_claim_brings_the_hosts_view_up_to_date(
    one_try: tuple[InProcessZone, SkyfedClient, ScriptedAgent],
) -> None:
    """Another process of the zone filled h1 behind this one's back: the first server
    tried there is refused (one try allowed), and from that refusal on this process
    knows h1 is full, so the next server goes to h2 at once, not in a later reload."""
    zone, admin, agent = one_try
    # h1 has the most free RAM, so is tried first while it looks free.
    await agent.beat({"h1": {**HOST, "vcpus": 16, "ram_mb": 65536}, "h2": HOST})
    # A claim on h1 makes its allocation row; then the other process fills it.
    first = (await create(admin, name="first", flavor="m1.tiny")).servers[0]
    assert (await booted(admin, agent, first.id)).location.host == "h1"
    async with zone.process.core.db.session() as session:
        await session.execute(
            update(HostAllocation).where(HostAllocation.host == "h1").values(vcpus=16)
        )
        await session.commit()
    assert (await admin.get_host("h1")).free.vcpus == 15  # not known yet

    [refused] = (await create(admin, name="refused", flavor="m1.tiny")).servers
    settled = await wait_for(lambda: _settled(admin, refused.id), "the refused server settles")
    assert settled.status == "ERROR" and "h1 has no room" in settled.fault
    assert (await admin.get_host("h1")).free.vcpus == 0

    [placed] = (await create(admin, name="placed", flavor="m1.tiny")).servers
    assert (await booted(admin, agent, placed.id)).location.host == "h2"


async def test_a_burst_that_fits_exactly_lands_whole(
    one_try: tuple[InProcessZone, SkyfedClient, ScriptedAgent],
) -> None:
    """16 servers at once on four 4-vcpu hosts, one try each: every decision takes
    its room at once, so the burst spreads over the hosts instead of piling onto
    the one with the most free RAM, and all 16 land."""
    _, admin, agent = one_try
    await agent.beat(
        {f"h{i}": {"vcpus": 4, "ram_mb": 8192 * i, "disk_gb": 100} for i in range(1, 5)}
    )
    answers = await asyncio.gather(
        *(create(admin, name=f"b{i}", flavor="m1.tiny") for i in range(16))
    )
    ids = [a.servers[0].id for a in answers]

    async def all_settled() -> list[Server] | None:
        await agent.answer_all()
        found = [await _settled(admin, i) for i in ids]
        return found if all(found) else None  # type: ignore[return-value]

    servers = await wait_for(all_settled, "the burst settles", timeout=60)
    assert [s.fault for s in servers if s.status != "ACTIVE"] == []
    assert sorted(str(s.location.host) for s in servers) == sorted(
        f"h{i}" for i in range(1, 5) for _ in range(4)
    )


async def _settled(client: SkyfedClient, server_id: str) -> Server | None:
    found = await client.get_server(server_id)
    return found if found.status in ("ACTIVE", "ERROR") else None


async def test_anti_affinity_spreads_a_group(admin: SkyfedClient, agent: ScriptedAgent) -> None:
    group = {"name": "db", "policy": "anti-affinity"}
    answers = await asyncio.gather(*(create(admin, name=f"db{i}", group=group) for i in range(3)))
    ids = [a.servers[0].id for a in answers]

    async def settled() -> list[Server] | None:
        await agent.answer_all()
        servers = [await admin.get_server(i) for i in ids]
        return servers if all(s.status in ("ACTIVE", "ERROR") for s in servers) else None

    servers = await wait_for(settled, "group settled")
    hosts = sorted(str(s.location.host) for s in servers if s.status == "ACTIVE")
    assert hosts == ["h1", "h2"]  # two hosts: the third member has nowhere to go
    [error] = [s for s in servers if s.status == "ERROR"]
    assert "group" in error.fault or "anti" in error.fault, error.fault


async def test_count_creates_a_reservation(admin: SkyfedClient, agent: ScriptedAgent) -> None:
    created = await create(admin, name="batch", count=3)
    names = [s.name for s in created.servers]
    assert names == ["batch-1", "batch-2", "batch-3"]
    for brief in created.servers:
        up = await booted(admin, agent, brief.id)
        assert up.reservation_id == created.reservation_id


async def test_projects_see_only_their_servers(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    for project, user in (("acme", "alice"), ("other", "bob")):
        await admin.create_project(project)
        await admin.create_user(user, f"{user}-password", project, ["member"])
    async with (
        zone.client("alice", "alice-password") as alice,
        zone.client("bob", "bob-password") as bob,
    ):
        [mine] = (await create(alice, name="mine")).servers
        with pytest.raises(SkyfedError) as exc:
            await bob.get_server(mine.id)
        assert (exc.value.status, exc.value.code) == (404, "not_found")
        with pytest.raises(SkyfedError) as exc:
            await bob.delete_server(mine.id)
        assert (exc.value.status, exc.value.code) == (404, "not_found")
        assert (await bob.list_servers()).servers == []
        listed = (await alice.list_servers()).servers
        assert [s.id for s in listed] == [mine.id]
        assert listed[0].location.host is None  # members do not see hosts
        everything = (await admin.list_servers()).servers
        assert [s.id for s in everything] == [mine.id]


async def test_paging_returns_every_server_once(admin: SkyfedClient, agent: ScriptedAgent) -> None:
    created = await create(admin, name="p", count=23, flavor="m1.tiny")
    ids = {s.id for s in created.servers}
    seen: list[str] = []
    marker = None
    for _ in range(10):
        page = await admin.list_servers(limit=5, marker=marker)
        assert len(page.servers) <= 5
        seen += [s.id for s in page.servers]
        marker = page.next_marker
        if marker is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 23
    with pytest.raises(SkyfedError) as bad:  # a marker no page gives
        await admin.request("GET", "/v1/servers", params={"marker": "not-a-marker"})
    assert (bad.value.status, bad.value.code) == (400, "bad_marker")


async def test_tasks_api(admin: SkyfedClient, agent: ScriptedAgent) -> None:
    [brief] = (await create(admin)).servers
    await booted(admin, agent, brief.id)
    tasks = (await admin.list_tasks(resource_id=brief.id)).tasks
    assert [t.kind for t in tasks] == ["place"]
    assert (tasks[0].state, tasks[0].resource_id) == ("succeeded", brief.id)
    one = await admin.get_task(tasks[0].id)
    assert one.result is not None and one.result["placement"] == "placed"
    with pytest.raises(SkyfedError) as exc:
        await admin.cancel_task(tasks[0].id)
    assert (exc.value.status, exc.value.code) == (409, "conflict")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def refusing(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[SkyfedClient, ScriptedAgent]]:
    """One zone (per database) for every refused request: each must leave it unchanged,
    so they may as well share it; one that did change it fails the next ones too."""
    settings = zone_settings(tmp_path_factory.mktemp("refusing"), module_database_url)
    async with (
        InProcessZone(settings) as zone,
        zone.client() as admin,
        zone.client("agent", AGENT_PASSWORD) as client,
    ):
        yield admin, ScriptedAgent(client)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"flavor": "m9.huge"}, 400, "unknown_flavor"),
        ({"constraints": {"arch": "sparc"}}, 400, "impossible_request"),
        ({"flavor": None, "vcpus": 4096, "ram_mb": 1}, 400, "impossible_request"),
        ({"constraints": {"ram_mb": ">= lots"}}, 422, "validation_error"),
        ({"constraints": {"bad key!": "x"}}, 422, "validation_error"),
        ({"vcpus": 2, "ram_mb": 1024}, 422, "validation_error"),  # and a flavor
        ({"flavor": None}, 422, "validation_error"),
        ({"count": 0}, 422, "validation_error"),
        ({"within": "nowhere"}, 400, "unknown_zone"),
        ({"group": {"name": "g", "policy": "sometimes"}}, 422, "validation_error"),
        ({"id": "6f1d3f0a-9a8e-4a59-9d55-111111111111"}, 403, "forbidden"),
        ({"wait": 5}, 403, "forbidden"),
        ({"name": "bad name"}, 422, "validation_error"),
        # Too deep for serialisers (an agent's commands), too large to copy down the tree.
        ({"metadata": {"a": deep(40)}}, 422, "validation_error"),
        ({"metadata": {"a": "x" * 20_000}}, 422, "validation_error"),
        ({"metadata": {"a": "nul\x00"}}, 422, "validation_error"),
        ({"metadata": {"process": {"command": "sleep 1"}}}, 422, "validation_error"),
        ({"metadata": {"process": {"command": ["sleep"], "shell": True}}}, 422, "validation_error"),
        # The servers would be named <62 characters>-1 and -2: longer than a name may be.
        ({"name": "n" * 62, "count": 2}, 422, "validation_error"),
        ({"within": "eu/dc1", "avoid": ["eu"]}, 422, "validation_error"),
        ({"constraints": {"ssd": "=> 1"}}, 422, "validation_error"),
        ({"constraints": {"arch": "in []"}}, 422, "validation_error"),
    ],
)
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.xdist_group("refused_requests")  # on one process: one shared zone per database
async def test_bad_requests_change_nothing(
    refusing: tuple[SkyfedClient, ScriptedAgent], body: dict[str, Any], status: int, code: str
) -> None:
    admin, agent = refusing
    await agent.beat({"h1": HOST, "h2": HOST}, arch="x86_64")  # online, whatever came before
    with pytest.raises(SkyfedError) as exc:  # sent as written: nulls, unknown fields and all
        await admin.request(
            "POST", "/v1/servers", json={"name": "web", "flavor": "m1.small", **body}
        )
    assert (exc.value.status, exc.value.code) == (status, code), exc.value.message
    assert (await admin.list_servers()).servers == []
    assert (await admin.list_tasks()).tasks == []


async def test_bounds_on_what_a_server_carries(admin: SkyfedClient, agent: ScriptedAgent) -> None:
    # At the bounds: accepted, and the agent's command carries the metadata whole.
    metadata = {"a": deep(6), "b": "x" * 15_000, "process": {"command": ["sleep", "1"]}}
    [brief] = (await create(admin, name="n" * 63, metadata=metadata)).servers
    assert (await booted(admin, agent, brief.id)).metadata == metadata
    made = await create(admin, name="n" * 58, count=10, flavor="m1.tiny")
    assert made.servers[-1].name == "n" * 58 + "-10"


async def test_the_operators_the_api_prints_are_understood(
    admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    # A constraint as messages print it ("arch in (x86_64, arm64)"), and "==" for "=".
    for constraints in ({"arch": "in (x86_64, arm64)"}, {"arch": "== x86_64"}):
        [brief] = (await create(admin, constraints=constraints)).servers
        assert (await booted(admin, agent, brief.id)).status == "ACTIVE"


async def test_explain_says_which_filter_dropped_whom_and_changes_nothing(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    await agent.beat({"arm": HOST}, arch="arm64")
    await agent.beat({"tiny": {"vcpus": 1, "ram_mb": 512, "disk_gb": 10}}, arch="x86_64")
    body = {"name": "e", "flavor": "m1.small", "constraints": {"arch": "x86_64"}}
    answer = await admin.request("POST", "/v1/scheduler/explain", json=body)
    fate = {c["name"]: (c["dropped_by"], c["rank"]) for c in answer["candidates"]}
    assert fate["arm"] == ("capabilities", None)
    assert fate["tiny"] == ("resources", None)
    assert {fate["h1"][1], fate["h2"][1]} == {0, 1}  # both pass, ranked
    assert answer["request"]["constraints"] == ["arch = x86_64"]
    assert set(answer["scores"]) == {"host:h1", "host:h2"}
    # Nothing fits: the reason says what is missing (the arm host is too small).
    nothing = {"name": "e", "vcpus": 16, "ram_mb": 1024, "constraints": {"arch": "arm64"}}
    refused = await admin.request("POST", "/v1/scheduler/explain", json=nothing)
    assert refused["ranked"] == []
    assert refused["reason"].startswith("no host with vcpus >= 16"), refused["reason"]
    # Explaining places nothing, and only admins may ask.
    assert (await admin.list_servers()).servers == []
    assert (await admin.list_tasks()).tasks == []
    await admin.create_project("acme")
    await admin.create_user("bob", "bob-password", "acme", ["member"])
    async with zone.client("bob", "bob-password") as bob:
        with pytest.raises(SkyfedError) as exc:
            await bob.request("POST", "/v1/scheduler/explain", json=body)
        assert (exc.value.status, exc.value.code) == (403, "forbidden")


async def test_a_failed_boot_is_placed_again_on_another_host(
    admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    [brief] = (await create(admin)).servers
    sid = brief.id

    async def boot() -> dict[str, Any] | None:
        found = [c for c in await agent.commands() if c["action"] == "boot"]
        return found[0] if found else None

    first = await wait_for(boot, "the first boot command")
    await agent.answer(first, ok=False, message="disk on fire")
    again = await wait_for(boot, "a boot command on another host")
    assert again["host"] != first["host"]
    await agent.answer(again)
    placed = await admin.get_server(sid)
    assert placed.status == "ACTIVE" and placed.location.host == again["host"]
    places = (await admin.list_tasks(resource_id=sid)).tasks
    assert [t.kind for t in places] == ["place", "place"]


async def test_a_status_no_server_can_have_is_refused(admin: SkyfedClient) -> None:
    with pytest.raises(SkyfedError) as exc:
        await admin.request("GET", "/v1/servers", params={"status": "FOO"})
    assert (exc.value.status, exc.value.code) == (422, "validation_error")
    assert "ACTIVE" in exc.value.message
    assert (await admin.list_servers(status="ERROR")).servers == []


async def test_unknown_server_is_404(admin: SkyfedClient) -> None:
    unknown = "6f1d3f0a-9a8e-4a59-9d55-111111111111"
    for call in (
        admin.get_server(unknown),
        admin.delete_server(unknown),
        admin.server_action(unknown, "stop"),
    ):
        with pytest.raises(SkyfedError) as exc:
            await call
        assert (exc.value.status, exc.value.code) == (404, "not_found")


def delegated(server_id: str, **body: Any) -> dict[str, Any]:
    """A create as a parent passes it down: with its id and a creation time."""
    return {
        "id": server_id,
        "name": "web",
        "flavor": "m1.small",
        "created_at": "2026-11-21T10:00:00+00:00",
        **body,
    }


async def test_delegated_batch_answers_each_server_on_its_own(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    await admin.create_project("acme")
    alice = await admin.create_user("alice", "alice-password", "acme", ["member"])
    as_alice = forwarded_headers(
        Principal(alice.id, "alice", alice.project_id, frozenset({"member"}))
    )
    taken = (await create(admin)).servers[0].id  # the admin project's server
    ids = [str(uuid.uuid4()) for _ in range(3)]
    batch = {
        "servers": [
            delegated(ids[0]),
            delegated(ids[1], flavor="no.such"),
            delegated(taken),
            delegated(ids[2], vcpus=1, ram_mb=512),
        ],
        "wait": 10,
    }
    async with zone.client("svc", SERVICE_PASSWORD) as parent:
        answer = await parent.request("POST", "/v1/servers/delegated", json=batch, headers=as_alice)
        results = answer["results"]
        assert [r["server"]["placement"] if r["server"] else None for r in results] == [
            "placed",
            None,
            None,
            "placed",
        ]
        assert results[1]["error"]["status"] == 400
        assert results[1]["error"]["code"] == "unknown_flavor"
        assert results[2]["error"]["status"] == 409
        # Asked again (a parent retrying), nothing is created twice.
        again = await parent.request(
            "POST",
            "/v1/servers/delegated",
            json={"servers": [delegated(ids[0])], "wait": 1},
            headers=as_alice,
        )
        assert again["results"][0]["server"]["placement"] == "placed"
        # Ids must be given and distinct.
        for servers in (
            [delegated(ids[0]), delegated(ids[0])],
            [{"name": "x", "flavor": "m1.small"}],
        ):
            with pytest.raises(SkyfedError) as exc:
                await parent.request(
                    "POST", "/v1/servers/delegated", json={"servers": servers}, headers=as_alice
                )
            assert (exc.value.status, exc.value.code) == (400, "bad_batch")
    mine = {s.id for s in (await admin.list_servers()).servers}
    assert mine == {taken, ids[0], ids[2]}
    # Only a parent zone passes servers down.
    with pytest.raises(SkyfedError) as exc:
        await admin.request("POST", "/v1/servers/delegated", json={"servers": [delegated(ids[0])]})
    assert (exc.value.status, exc.value.code) == (403, "forbidden")


async def test_agent_results_in_one_request(admin: SkyfedClient, agent: ScriptedAgent) -> None:
    first = (await create(admin)).servers[0].id
    second = (await create(admin)).servers[0].id

    async def both() -> list[dict[str, Any]] | None:
        found = await agent.commands()
        return found if len(found) == 2 else None

    commands = await wait_for(both, "two boot commands")
    unknown = str(uuid.uuid4())
    result = {"ok": True, "status": "ACTIVE", "message": "", "exit_code": None}
    results = [(c["id"], result) for c in commands] + [(unknown, result)]
    assert await agent.client.command_results(agent.name, results) == [True, True, False]
    for server_id in (first, second):
        assert (await admin.get_server(server_id)).status == "ACTIVE"
    # A result sent twice counts once; the commands are no longer pending.
    assert await agent.client.command_results(agent.name, results) == [True, True, False]
    assert await agent.commands() == []
