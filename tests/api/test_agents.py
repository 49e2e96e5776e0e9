"""Agents: one account per agent, the hosts it may carry, and nobody else speaking for it.

The attacks of the security review, each performed and shown refused: fake hosts
with a million vCPUs, beats for hosts outside a grant, taking over another
agent's host, reading another agent's commands (a tenant's metadata in them),
events and results for another agent's servers, junk hosts past the caps.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from skyfed.client import SkyfedClient, SkyfedError
from tests.conftest import AGENT_PASSWORD, InProcessZone, zone_settings
from tests.fakes import ScriptedAgent

HOST = {"vcpus": 8, "ram_mb": 16384, "disk_gb": 200}
A_PASSWORD = "agent-a-password"
B_PASSWORD = "agent-b-password"
SECRET = "sk-live-0123456789"


async def refused(call: Any, status: int, code: str | None = None) -> SkyfedError:
    with pytest.raises(SkyfedError) as exc:
        await call
    assert exc.value.status == status, exc.value
    if code is not None:
        assert exc.value.code == code, exc.value
    return exc.value


async def until(check: Any, what: str, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def beats(*names: str, **fields: Any) -> list[dict[str, Any]]:
    return [{"name": n, "resources": HOST, **fields} for n in names]


@pytest.fixture
async def two(zone: InProcessZone, admin: SkyfedClient) -> Any:
    """Agents a (hosts a-*, and the shared s-*) and b (b-* and s-*), logged in."""
    await admin.create_agent("a", A_PASSWORD, ["a-*", "s-*"], max_hosts=10)
    await admin.create_agent("b", B_PASSWORD, ["b-*", "s-*"], max_hosts=10)
    async with zone.client("a", A_PASSWORD) as a, zone.client("b", B_PASSWORD) as b:
        yield a, b


async def member(admin: SkyfedClient, zone: InProcessZone) -> SkyfedClient:
    await admin.create_project("acme")
    await admin.create_user("alice", "alice-password", "acme", ["member"])
    return zone.client("alice", "alice-password")


# -- capacity: bounds and caps ---------------------------------------------------------


async def test_fake_hosts_with_a_million_vcpus_are_refused_and_never_summarised(
    zone: InProcessZone, admin: SkyfedClient, two: Any
) -> None:
    """The attack: 64 hosts claiming 1e6 vCPUs each drew 7 of 10 servers."""
    a, _ = two
    fake = [f"a-fake-{i:02d}" for i in range(64)]
    huge = {"vcpus": 1_000_000, "ram_mb": 1 << 30, "disk_gb": 1 << 20}
    error = await refused(a.heartbeat_batch(beats(*fake, resources=huge)), 422)
    assert error.code == "host_out_of_bounds" and "a-fake-00" in error.message
    # One too big host spoils its batch; used beyond the total is refused too.
    mixed = beats("a-1") + beats("a-2", resources={**HOST, "vcpus": 4097})
    await refused(a.heartbeat_batch(mixed), 422, "host_out_of_bounds")
    over = await refused(a.heartbeat("a-1", resources=HOST, used={"vcpus": 9}), 422)
    assert "used vcpus exceeds its total" in over.message
    # An admin's beats obey the same bounds.
    await refused(admin.heartbeat("a-3", resources=huge), 422, "host_out_of_bounds")
    summary = (await admin.zone()).summary
    assert summary["hosts"] == 0 and summary["numeric"] == {}
    assert (await admin.list_hosts()).hosts == []
    # At the bounds, accepted.
    edge = {"vcpus": 4096, "ram_mb": 32 * 1024 * 1024, "disk_gb": 1024 * 1024}
    assert (await a.heartbeat("a-1", resources=edge, used=edge)).resources.model_dump() == edge


async def test_bounds_come_from_the_zone_settings(tmp_path: Path, database_url: str) -> None:
    settings = zone_settings(tmp_path, database_url, host_max_vcpus=64, host_max_ram_mb=1024)
    async with InProcessZone(settings) as zone, zone.client("agent", AGENT_PASSWORD) as agent:
        error = await refused(agent.heartbeat("h1", resources={"vcpus": 65}), 422)
        assert "vcpus 65 is more than this zone takes (64)" in error.message
        await refused(agent.heartbeat("h1", resources={"ram_mb": 1025}), 422)
        assert (await agent.heartbeat("h1", resources={"vcpus": 64, "ram_mb": 1024})).name


async def test_an_agent_carries_at_most_its_max_hosts(
    zone: InProcessZone, admin: SkyfedClient
) -> None:
    await admin.create_agent("a", A_PASSWORD, ["a-*"], max_hosts=3)
    async with zone.client("a", A_PASSWORD) as a:
        assert (await a.heartbeat_batch(beats("a-1", "a-2"))).accepted == 2
        error = await refused(a.heartbeat_batch(beats("a-1", "a-3", "a-4")), 409)
        assert error.code == "agent_host_limit"
        assert "carries 2 hosts and may carry at most 3" in error.message
        assert sorted(h.name for h in (await admin.list_hosts()).hosts) == ["a-1", "a-2"]
        # Known hosts keep beating; one more fits.
        assert (await a.heartbeat_batch(beats("a-1", "a-2", "a-3"))).accepted == 3
        await refused(a.heartbeat("a-4", resources=HOST), 409, "agent_host_limit")
        assert (await a.heartbeat_batch(beats("a-1", "a-2", "a-3"))).accepted == 3
        assert (await admin.get_agent("a")).carried == 3


async def test_a_zone_knows_at_most_max_hosts(tmp_path: Path, database_url: str) -> None:
    """The attack: 20,000 junk hosts took a zone from 138 to 455 MB."""
    settings = zone_settings(tmp_path, database_url, max_hosts=5)
    async with (
        InProcessZone(settings) as zone,
        zone.client() as admin,
        zone.client("agent", AGENT_PASSWORD) as agent,
    ):
        await admin.heartbeat_batch(beats("h1", "h2", "h3"))
        error = await refused(agent.heartbeat_batch(beats("j1", "j2", "j3")), 409)
        assert error.code == "zone_host_limit" and "at most 5" in error.message
        await refused(admin.heartbeat_batch(beats("j1", "j2", "j3")), 409, "zone_host_limit")
        assert (await agent.heartbeat_batch(beats("j1", "j2"))).accepted == 2
        await refused(agent.heartbeat("j3", resources=HOST), 409, "zone_host_limit")
        # The known ones keep beating, from their agent and from the admin.
        assert (await agent.heartbeat_batch(beats("j1", "j2"))).accepted == 2
        assert (await admin.heartbeat_batch(beats("h1", "h2", "h3"))).accepted == 3
        assert (await admin.zone()).summary["hosts"] == 5


# -- grants ------------------------------------------------------------------------------


async def test_an_agent_beats_only_for_hosts_its_grant_covers(
    zone: InProcessZone, admin: SkyfedClient
) -> None:
    await admin.create_agent("a", A_PASSWORD, ["eu-dc1-*", "lone"], max_hosts=10)
    async with zone.client("a", A_PASSWORD) as a:
        assert (await a.heartbeat_batch(beats("eu-dc1-1", "lone"))).accepted == 2
        for name in ("eu-dc2-1", "eu-dc1", "xeu-dc1-1", "lone2", "lon"):
            error = await refused(a.heartbeat(name, resources=HOST), 403, "host_not_granted")
            assert f"'{name}'" in error.message or name in error.message
        # One host outside the grant refuses the whole batch: nothing of it is taken.
        error = await refused(a.heartbeat_batch(beats("eu-dc1-2", "us-dc1-1")), 403)
        assert "us-dc1-1" in error.message and "eu-dc1-2" not in error.message
    hosts = {h.name: h for h in (await admin.list_hosts()).hosts}
    assert sorted(hosts) == ["eu-dc1-1", "lone"]
    assert {h.agent for h in hosts.values()} == {"a"}


async def test_the_settings_agent_carries_nothing_unless_granted(
    tmp_path: Path, database_url: str
) -> None:
    settings = zone_settings(tmp_path, database_url, agent_hosts=[])
    async with InProcessZone(settings) as zone, zone.client("agent", AGENT_PASSWORD) as agent:
        await refused(agent.heartbeat("h1", resources=HOST), 403, "host_not_granted")
    settings = zone_settings(tmp_path, database_url, agent_hosts=["rack1-*"], agent_max_hosts=1)
    async with (
        InProcessZone(settings) as zone,
        zone.client() as admin,
        zone.client("agent", AGENT_PASSWORD) as agent,
    ):
        assert (await agent.heartbeat("rack1-01", resources=HOST)).agent == "agent"
        await refused(agent.heartbeat("rack2-01", resources=HOST), 403, "host_not_granted")
        await refused(agent.heartbeat("rack1-02", resources=HOST), 409, "agent_host_limit")
        shown = await admin.get_agent("agent")
        assert (shown.hosts, shown.max_hosts, shown.configured) == (["rack1-*"], 1, True)
        # Settings own it.
        await refused(admin.update_agent("agent", max_hosts=5), 409, "configured_agent")
        await refused(admin.delete_agent("agent"), 409, "configured_agent")


async def test_a_beat_names_its_caller_as_agent(
    zone: InProcessZone, admin: SkyfedClient, two: Any
) -> None:
    a, _ = two
    error = await refused(a.heartbeat_batch(beats("s-1", agent="b")), 403, "agent_mismatch")
    assert "cannot beat as agent b" in error.message
    assert (await a.heartbeat_batch(beats("s-1", agent="a"))).accepted == 1
    assert (await a.heartbeat("s-2", resources=HOST)).agent == "a"  # set from the caller
    assert {h.agent for h in (await admin.list_hosts()).hosts} == {"a"}


# -- carried hosts --------------------------------------------------------------------------


async def test_agent_b_cannot_take_over_agent_a_host(
    zone: InProcessZone, admin: SkyfedClient, two: Any
) -> None:
    a, b = two
    await a.heartbeat_batch(beats("s-1", "s-2"))
    error = await refused(b.heartbeat_batch(beats("b-1", "s-2")), 409, "host_carried")
    assert "host 's-2' is carried by agent 'a'" in error.message
    assert error.details == {"hosts": {"s-2": "a"}}
    assert (await admin.get_host("s-2")).agent == "a"
    await refused(admin.get_host("b-1"), 404, "not_found")  # the batch was refused whole
    # Nor may an admin's beat take it from its agent.
    await refused(admin.heartbeat("s-2", resources=HOST), 409, "host_carried")

    released = await admin.release_host("s-2")
    assert released.model_dump() == {"name": "s-2", "released_from": "a"}
    assert (await admin.get_host("s-2")).agent is None
    assert (await b.heartbeat("s-2", resources=HOST)).agent == "b"
    error = await refused(a.heartbeat("s-2", resources=HOST), 409, "host_carried")
    assert "carried by agent 'b'" in error.message
    assert (await a.heartbeat("s-1", resources=HOST)).agent == "a"
    await refused(admin.release_host("ghost"), 404, "not_found")


async def test_the_shared_record_decides_between_processes(
    tmp_path: Path, database_url: str
) -> None:
    """Two processes of one zone: each takes a beat for the same new host from a
    different agent before either shares; the first written wins everywhere."""
    # The processes share when the test says, not on their own between the two beats.
    settings = zone_settings(tmp_path, database_url, host_share_interval=3600)
    async with InProcessZone(settings) as one, InProcessZone(settings) as two:
        async with one.client() as admin:
            await admin.create_agent("a", A_PASSWORD, ["s-*"])
            await admin.create_agent("b", B_PASSWORD, ["s-*"])
        async with one.client("a", A_PASSWORD) as a, two.client("b", B_PASSWORD) as b:
            await a.heartbeat("s-1", resources=HOST)
            await b.heartbeat("s-1", resources=HOST)  # two has not heard of a's beat yet
            await one.process.compute.sharing.share()
            await two.process.compute.sharing.share()
            assert two.process.compute.hosts.carrier("s-1") == "a"
            await refused(b.heartbeat("s-1", resources=HOST), 409, "host_carried")
            # A release in one process lets b take the host in the other.
            async with one.client() as admin:
                await admin.release_host("s-1")
            assert two.process.compute.hosts.carrier("s-1") == "a"  # not read yet
            assert (await b.heartbeat("s-1", resources=HOST)).agent == "b"
            await two.process.compute.sharing.share()
            await one.process.compute.sharing.share()
            assert one.process.compute.hosts.carrier("s-1") == "b"
            await refused(a.heartbeat("s-1", resources=HOST), 409, "host_carried")


# -- commands, results and events -------------------------------------------------------------


async def booted_on_a(zone: InProcessZone, admin: SkyfedClient, a: SkyfedClient) -> Any:
    """A member's server with a secret in its metadata, booted on a's host s-1."""
    await a.heartbeat("s-1", resources=HOST)
    alice = await member(admin, zone)
    async with alice:
        brief = await alice.create_servers(
            name="web", flavor="m1.small", metadata={"api_key": SECRET}
        )
    server_id = brief.servers[0].id
    scripted = ScriptedAgent(a)
    [command] = await until(scripted.commands, "the boot command on a")
    assert command["server"]["metadata"] == {"api_key": SECRET}
    return server_id, command


async def test_agent_b_cannot_read_agent_a_commands(
    zone: InProcessZone, admin: SkyfedClient, two: Any
) -> None:
    """The attack: `GET /v1/agents/evil/commands` gave a member's metadata.api_key."""
    a, b = two
    _, command = await booted_on_a(zone, admin, a)
    for client in (b, admin):
        for method, path, body in (
            ("GET", "/v1/agents/a/commands", None),
            ("POST", "/v1/agents/a/results", {"results": [{"id": command["id"], "ok": True}]}),
            ("POST", f"/v1/agents/a/commands/{command['id']}/result", {"ok": True}),
            ("POST", "/v1/agents/a/events", {"events": []}),
        ):
            error = await refused(client.request(method, path, json=body), 403, "not_this_agent")
            assert SECRET not in str(error)
    # b's own queue holds nothing of a's, and the command is still a's.
    assert await b.agent_commands("b", wait=0) == []
    assert [c["id"] for c in await a.agent_commands("a", wait=0)] == [command["id"]]


async def test_a_result_from_b_for_a_command_is_ignored(
    zone: InProcessZone, admin: SkyfedClient, two: Any
) -> None:
    a, b = two
    server_id, command = await booted_on_a(zone, admin, a)
    assert await b.command_results("b", [(command["id"], {"ok": False, "status": "ERROR"})]) == [
        False
    ]
    await refused(
        b.request("POST", f"/v1/agents/b/commands/{command['id']}/result", json={"ok": True}),
        404,
    )
    assert (await admin.get_server(server_id)).status == "BUILDING"
    assert await a.command_results("a", [(command["id"], {"ok": True, "status": "ACTIVE"})]) == [
        True
    ]
    assert (await admin.get_server(server_id)).status == "ACTIVE"


async def test_an_event_from_b_for_a_server_is_refused(
    zone: InProcessZone, admin: SkyfedClient, two: Any
) -> None:
    a, b = two
    server_id, command = await booted_on_a(zone, admin, a)
    await a.command_results("a", [(command["id"], {"ok": True, "status": "ACTIVE"})])
    stop = {"server_id": server_id, "status": "STOPPED", "exit_code": 1, "message": "killed"}
    assert await b.agent_events("b", [stop]) == {"applied": 0, "refused": 1}
    ghost = {**stop, "server_id": "00000000-0000-0000-0000-000000000000"}
    assert await b.agent_events("b", [ghost]) == {"applied": 0, "refused": 1}
    assert (await admin.get_server(server_id)).status == "ACTIVE"
    assert await a.agent_events("a", [stop]) == {"applied": 1, "refused": 0}
    assert (await admin.get_server(server_id)).status == "STOPPED"


async def test_a_host_taken_over_brings_its_pending_commands(
    zone: InProcessZone, admin: SkyfedClient, two: Any
) -> None:
    """Hand-over: a is deleted; b, granted for the host, carries it and its work."""
    a, b = two
    server_id, command = await booted_on_a(zone, admin, a)
    await admin.delete_agent("a")
    await refused(a.agent_commands("a", wait=0), 401)  # its tokens died with it
    await refused(a.login("a", A_PASSWORD), 401)
    assert (await admin.get_host("s-1")).agent is None
    assert (await b.heartbeat("s-1", resources=HOST)).agent == "b"
    [moved] = await b.agent_commands("b", wait=0)
    assert moved["id"] == command["id"]
    assert await b.command_results("b", [(moved["id"], {"ok": True, "status": "ACTIVE"})]) == [True]
    assert (await admin.get_server(server_id)).status == "ACTIVE"


# -- accounts ------------------------------------------------------------------------------


async def test_one_agent_credential_does_not_work_as_another(
    zone: InProcessZone, admin: SkyfedClient, two: Any
) -> None:
    a, _ = two
    await refused(a.login("b", A_PASSWORD), 401)
    me = await a.whoami()
    assert (me.username, me.roles) == ("a", ["agent"])
    async with zone.client("agent", AGENT_PASSWORD) as settings_agent:
        await refused(settings_agent.agent_commands("a", wait=0), 403, "not_this_agent")
        await refused(
            settings_agent.heartbeat_batch(beats("s-1", agent="a")), 403, "agent_mismatch"
        )
    # An agent administers nothing, not even itself.
    await refused(a.list_agents(), 403)
    await refused(a.update_agent("a", max_hosts=1000), 403)


async def test_agent_accounts_api(zone: InProcessZone, admin: SkyfedClient) -> None:
    made = await admin.create_agent("eu-dc1-agent", A_PASSWORD, ["eu-dc1-*", "eu-dc1-*"])
    assert (made.name, made.hosts, made.max_hosts) == (
        "eu-dc1-agent",
        ["eu-dc1-*"],
        1000,
    )
    assert (made.configured, made.carried, made.pending_commands) == (False, 0, 0)
    user = next(u for u in await admin.list_users() if u.name == "eu-dc1-agent")
    assert user.roles == ["agent"] and user.id == made.user_id
    await refused(admin.create_agent("eu-dc1-agent", A_PASSWORD, []), 409)
    await refused(admin.create_agent("admin", A_PASSWORD, []), 409)  # a user of that name
    assert [x.name for x in await admin.list_agents()] == ["agent", "eu-dc1-agent"]

    async with zone.client("eu-dc1-agent", A_PASSWORD) as agent:
        await agent.heartbeat_batch(beats("eu-dc1-1", "eu-dc1-2"))
        assert (await admin.get_agent("eu-dc1-agent")).carried == 2
        # Narrowing the grant releases what it no longer covers.
        changed = await admin.update_agent("eu-dc1-agent", hosts=["eu-dc1-1"], max_hosts=5)
        assert (changed.hosts, changed.max_hosts, changed.carried) == (["eu-dc1-1"], 5, 1)
        assert (await admin.get_host("eu-dc1-2")).agent is None
        await refused(agent.heartbeat("eu-dc1-2", resources=HOST), 403, "host_not_granted")
        # A new password: the old one and its tokens stop working.
        await admin.update_agent("eu-dc1-agent", password="a-new-password")
        await refused(agent.heartbeat("eu-dc1-1", resources=HOST), 401)
    async with zone.client("eu-dc1-agent", "a-new-password") as agent:
        assert (await agent.heartbeat("eu-dc1-1", resources=HOST)).agent == "eu-dc1-agent"

    # Agents are made and deleted with their grant, not through /v1/users.
    await refused(
        admin.create_user("sneaky", "sneaky-password", "service", ["agent"]), 400, "use_agents_api"
    )
    await refused(admin.request("DELETE", "/v1/users/eu-dc1-agent"), 409, "agent_account")
    await admin.delete_agent("eu-dc1-agent")
    await refused(admin.get_agent("eu-dc1-agent"), 404)
    await refused(admin.delete_agent("eu-dc1-agent"), 404)
    assert "eu-dc1-agent" not in [u.name for u in await admin.list_users()]
    assert (await admin.get_host("eu-dc1-1")).agent is None


async def test_an_agent_account_without_a_grant_carries_nothing_and_can_be_deleted(
    zone: InProcessZone, admin: SkyfedClient
) -> None:
    """One made before grants existed (role agent through the users API)."""
    process = zone.process
    async with process.core.db.session() as session:
        identity = process.identities.service(session)
        await identity.ensure_user("old-agent", "old-agent-password", "service", ["agent"])
        await session.commit()
    async with zone.client("old-agent", "old-agent-password") as old:
        error = await refused(old.heartbeat("h1", resources=HOST), 403, "host_not_granted")
        assert "covers no host" in error.message
        await refused(admin.get_agent("old-agent"), 404)
        await admin.delete_agent("old-agent")
        await refused(old.heartbeat("h1", resources=HOST), 401)
    await refused(admin.delete_agent("admin"), 404)  # not an agent
    assert [u.name for u in await admin.list_users()] == ["admin", "agent", "svc"]


BAD_CREATES: list[tuple[str, dict[str, Any]]] = [
    ("star inside", {"hosts": ["eu-*-std"]}),
    ("two stars", {"hosts": ["eu-**"]}),
    ("question mark", {"hosts": ["eu-dc?"]}),
    ("brackets", {"hosts": ["eu-dc[12]"]}),
    ("leading star", {"hosts": ["*-std"]}),
    ("space", {"hosts": ["eu dc"]}),
    ("empty pattern", {"hosts": [""]}),
    ("too long", {"hosts": ["h" * 64]}),
    ("hosts not a list", {"hosts": "eu-*"}),
    ("too many patterns", {"hosts": [f"h{i}" for i in range(1001)]}),
    ("negative max", {"max_hosts": -1}),
    ("max as a string", {"max_hosts": "5"}),
    ("max too big", {"max_hosts": 1_000_001}),
    ("short password", {"password": "short"}),
    ("bad name", {"name": "bad name"}),
    ("unknown field", {"roles": ["admin"]}),
    ("no hosts", {"hosts": None}),
]


async def test_bad_agent_input_is_4xx_and_changes_nothing(
    zone: InProcessZone, admin: SkyfedClient
) -> None:
    await admin.whoami()
    headers = {"Authorization": f"Bearer {admin.token}", "Content-Type": "application/json"}
    good = {"name": "x", "password": "x-password", "hosts": ["x-*"]}
    async with zone.raw() as http:
        for what, change in BAD_CREATES:
            body = {k: v for k, v in {**good, **change}.items() if v is not None}
            response = await http.post("/v1/agents", content=json.dumps(body), headers=headers)
            assert response.status_code == 422, (what, response.text)
            assert set(response.json()) == {"error"}
        await admin.create_agent("x", "x-password", ["x-*"])
        for what, change in BAD_CREATES[:14]:
            response = await http.put("/v1/agents/x", content=json.dumps(change), headers=headers)
            assert response.status_code == 422, (what, response.text)
        for path in ("/v1/agents/bad%20name", "/v1/agents/-x"):
            assert (await http.get(path, headers=headers)).status_code == 422
    assert [x.name for x in await admin.list_agents()] == ["agent", "x"]
    shown = await admin.get_agent("x")
    assert (shown.hosts, shown.max_hosts) == (["x-*"], 1000)
