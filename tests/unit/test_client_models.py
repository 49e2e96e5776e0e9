"""The typed client: answers read into models, a newer zone's extra fields ignored, an
answer out of shape one `SkyfedError`, and requests sent as before."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from skyfed.client import SkyfedClient
from skyfed.client_models import (
    AgentAccount,
    ChildZone,
    Host,
    Server,
    ServerPage,
    Task,
    Token,
    User,
    Zone,
)
from skyfed.wire import SkyfedError

SERVER = {
    "id": "0b6f8c56-6a7e-4a3e-9a0e-4d3b1f7f0c11",
    "name": "web-1",
    "project_id": "p1",
    "user_id": "u1",
    "reservation_id": "5d7a1d0e-7a14-4d0b-9e52-0f2f1a5b8c33",
    "status": "ACTIVE",
    "task_state": None,
    "fault": "",
    "exit_code": None,
    "flavor": "m1.tiny",
    "vcpus": 1,
    "ram_mb": 512,
    "disk_gb": 1,
    "group": {"name": "g", "policy": "anti-affinity"},
    "metadata": {"k": "v"},
    "placement": "placed",
    "location": {"path": ["eu", "eu-dc1"], "host": "eu-dc1-h7"},
    "created_at": "2025-01-02T03:04:05.123456Z",
    "updated_at": "2025-01-02T03:04:06Z",
    "launched_at": "2025-01-02T03:04:07.5Z",
}
TASK = {
    "id": "9e0a2f7c-3b1d-4c5e-8f6a-7b8c9d0e1f2a",
    "seq": 7,
    "kind": "create_server",
    "resource_type": "server",
    "resource_id": SERVER["id"],
    "project_id": "p1",
    "state": "queued",
    "attempts": 0,
    "max_attempts": 5,
    "error": "",
    "result": None,
    "request_id": "r1",
    "created_at": "2025-01-02T03:04:05Z",
    "updated_at": "2025-01-02T03:04:05Z",
    "finished_at": None,
}
CHILD = {
    "id": "c1",
    "name": "eu",
    "api_url": "http://eu.test",
    "username": "link",
    "transport": "http",
    "bus_url": None,
    "bus_queue": None,
    "weight_offset": 0.0,
    "weight_scale": 1.0,
    "labels": {},
    "state": "active",
    "last_seen": None,
    "failures": 0,
    "created_at": "2025-01-02T03:04:05Z",
    "updated_at": "2025-01-02T03:04:05Z",
}
HOST = {
    "name": "h1",
    "state": "online",
    "disabled": False,
    "disabled_reason": "",
    "capabilities": {"arch": "x86_64", "gpus": 2, "ghz": 2.5},
    "resources": {"vcpus": 8, "ram_mb": 16384, "disk_gb": 200},
    "used": {"vcpus": 2, "ram_mb": 4096, "disk_gb": 40},
    "allocated": {"vcpus": 1, "ram_mb": 512, "disk_gb": 1},
    "free": {"vcpus": 5, "ram_mb": 11776, "disk_gb": 159},
    "agent": "dc-agent",
    "last_seen": "2025-01-02T03:04:05.123456Z",
}
AGENT = {
    "name": "dc-agent",
    "user_id": "u9",
    "hosts": ["dc-*", "lone"],
    "max_hosts": 10,
    "configured": False,
    "carried": 1,
    "pending_commands": 2,
    "created_at": "2025-01-02T03:04:05Z",
    "updated_at": "2025-01-02T03:04:06Z",
}
USER = {
    "id": "u1",
    "name": "alice",
    "project_id": "p1",
    "roles": ["member"],
    "enabled": True,
    "created_at": "2025-01-02T03:04:05.5Z",
}

Seen = list[tuple[str, str, Any]]


def zone_answering(routes: dict[tuple[str, str], Any]) -> tuple[SkyfedClient, Seen]:
    """A client of a fake zone that answers `routes[(method, path)]`; records requests."""
    seen: Seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, str(request.url).removeprefix("http://zone.test"), body))
        found = routes.get((request.method, request.url.path))
        if found is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})
        return httpx.Response(200, json=found) if found != 204 else httpx.Response(204)

    client = SkyfedClient("http://zone.test", token="t", transport=httpx.MockTransport(answer))
    return client, seen


async def test_a_server_round_trips_as_the_zone_sent_it() -> None:
    client, seen = zone_answering({("GET", f"/v1/servers/{SERVER['id']}"): SERVER})
    async with client:
        server = await client.get_server(SERVER["id"])
    assert isinstance(server, Server)
    assert (server.status, server.location.path, server.location.host) == (
        "ACTIVE",
        ["eu", "eu-dc1"],
        "eu-dc1-h7",
    )
    assert server.location.where() == "eu/eu-dc1:eu-dc1-h7"
    assert server.launched_at is not None and server.launched_at.microsecond == 500000
    assert server.group is not None and server.group.policy == "anti-affinity"
    # What the CLI prints with --json: the same fields, in the same order, same values.
    dumped = server.model_dump(mode="json")
    assert list(dumped) == list(SERVER)
    assert dumped == SERVER | {"launched_at": "2025-01-02T03:04:07.500000Z"}
    assert seen == [("GET", f"/v1/servers/{SERVER['id']}", None)]


async def test_a_newer_zone_s_fields_are_ignored_and_an_older_one_s_missing_get_defaults() -> None:
    newer = SERVER | {"gpu": {"count": 2}}
    older = {"servers": [newer], "next_marker": "m", "unavailable_zones": ["eu/eu-dc2"]}
    client, _ = zone_answering({("GET", "/v1/servers"): older})
    async with client:
        page = await client.list_servers(limit=1)
    assert isinstance(page, ServerPage)
    assert "gpu" not in page.servers[0].model_dump()
    assert (page.next_marker, page.unavailable_zones, page.unavailable) == ("m", ["eu/eu-dc2"], [])


async def test_the_unavailable_list_says_why() -> None:
    answer = {
        "servers": [],
        "next_marker": None,
        "unavailable_zones": ["eu", "us"],
        "unavailable": [
            {"zone": "eu", "reason": "timed_out"},
            {"zone": "us", "reason": "offline"},
        ],
    }
    client, seen = zone_answering({("GET", "/v1/servers"): answer})
    async with client:
        page = await client.list_servers(status="ACTIVE", project_id="p1")
    assert [(u.zone, u.reason) for u in page.unavailable] == [
        ("eu", "timed_out"),
        ("us", "offline"),
    ]
    assert seen[0][1] == "/v1/servers?limit=100&status=ACTIVE&project_id=p1"


async def test_all_servers_follows_markers_and_gathers_the_silent_zones() -> None:
    pages = iter(
        [
            {"servers": [SERVER], "next_marker": "m1", "unavailable_zones": ["us"]},
            {"servers": [SERVER | {"id": "x"}], "next_marker": None, "unavailable_zones": ["eu"]},
        ]
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=next(pages))

    async with SkyfedClient("http://zone.test", transport=httpx.MockTransport(answer)) as client:
        servers, silent = await client.all_servers(status="ACTIVE")
    assert [s.id for s in servers] == [SERVER["id"], "x"]
    assert silent == ["eu", "us"]


async def test_create_sends_only_what_was_given() -> None:
    created = {
        "reservation_id": "r",
        "servers": [{"id": "s", "name": "b1", "status": "BUILDING", "placement": "pending"}],
    }
    client, seen = zone_answering({("POST", "/v1/servers"): created})
    async with client:
        answer = await client.create_servers("b1", flavor="m1.tiny")
        await client.create_servers(
            "b",
            vcpus=1,
            ram_mb=64,
            count=2,
            constraints={"arch": "arm64"},
            group={"name": "g", "policy": "affinity"},
            avoid=["eu"],
            wait=1.5,
        )
    assert answer.reservation_id == "r"
    assert [(s.id, s.status, s.fault) for s in answer.servers] == [("s", "BUILDING", "")]
    assert seen[0][2] == {"name": "b1", "flavor": "m1.tiny"}
    assert seen[1][2] == {
        "name": "b",
        "vcpus": 1,
        "ram_mb": 64,
        "count": 2,
        "constraints": {"arch": "arm64"},
        "group": {"name": "g", "policy": "affinity"},
        "avoid": ["eu"],
        "wait": 1.5,
    }


async def test_tasks() -> None:
    tid = TASK["id"]
    cancelled = TASK | {"state": "cancelled", "finished_at": "2025-01-02T03:04:09Z"}
    client, seen = zone_answering(
        {
            ("GET", "/v1/tasks"): {"tasks": [TASK], "next_marker": 7},
            ("GET", f"/v1/tasks/{tid}"): TASK,
            ("POST", f"/v1/tasks/{tid}/cancel"): cancelled,
            ("POST", f"/v1/tasks/{tid}/retry"): TASK,
        }
    )
    async with client:
        page = await client.list_tasks(resource_id=SERVER["id"], limit=1)
        one = await client.get_task(tid)
        gone = await client.cancel_task(tid)
        again = await client.retry_task(tid)
    assert (page.next_marker, [t.id for t in page.tasks]) == (7, [tid])
    assert isinstance(one, Task) and (one.kind, one.state, one.seq) == (
        "create_server",
        "queued",
        7,
    )
    assert gone.state == "cancelled" and gone.finished_at is not None
    assert again.state == "queued"
    assert seen[0][1] == f"/v1/tasks?resource_id={SERVER['id']}&limit=1"


async def test_zones() -> None:
    report = {
        "id": "z",
        "name": "global",
        "capabilities": {"region": "eu"},
        "summary": {"hosts": 3},
        "unreachable": None,
        "children": [{"id": "c1", "name": "eu", "state": "active", "hosts": 3}],
        "generated_at": "2025-01-02T03:04:05+00:00",
    }
    detail = CHILD | {
        "remote_id": "r",
        "remote_name": "eu",
        "last_error": "",
        "capabilities": {},
        "summary": {"hosts": 3},
    }
    client, seen = zone_answering(
        {
            ("GET", "/v1/zone"): report,
            ("GET", "/v1/zones"): {"zones": [CHILD]},
            ("POST", "/v1/zones"): CHILD,
            ("GET", "/v1/zones/eu"): CHILD,
            ("GET", "/v1/zones/eu/detail"): detail,
            ("PUT", "/v1/zones/eu"): CHILD | {"weight_offset": 2.0},
            ("DELETE", "/v1/zones/eu"): 204,
        }
    )
    async with client:
        me = await client.zone()
        zones = await client.list_zones()
        added = await client.add_zone("eu", "http://eu.test", "link", "pw", labels={"a": "b"})
        one = await client.get_zone("eu")
        shown = await client.zone_detail("eu")
        moved = await client.update_zone("eu", weight_offset=2.0)
        await client.delete_zone("eu", force=True)
    assert isinstance(me, Zone) and me.summary["hosts"] == 3
    assert [(c.name, c.state, c.hosts) for c in me.children] == [("eu", "active", 3)]
    assert all(isinstance(z, ChildZone) for z in (*zones, added, one, moved))
    assert (one.name, one.transport, one.last_seen) == ("eu", "http", None)
    assert shown.remote_id == "r" and shown.summary == {"hosts": 3}
    assert moved.weight_offset == 2.0
    assert seen[2][2] == {
        "name": "eu",
        "api_url": "http://eu.test",
        "username": "link",
        "password": "pw",
        "labels": {"a": "b"},
    }
    assert seen[5][2] == {"weight_offset": 2.0}
    assert seen[6][:2] == ("DELETE", "/v1/zones/eu?force=true")


async def test_flavors_and_server_actions() -> None:
    flavor = {"id": "f", "name": "m1.tiny", "vcpus": 1, "ram_mb": 512, "disk_gb": 1}
    sid = SERVER["id"]
    taken = {"id": sid, "status": "ACTIVE", "task_id": TASK["id"]}
    rebooted = {"id": sid, "status": "ACTIVE", "task_state": "rebooting", "task_id": TASK["id"]}
    client, seen = zone_answering(
        {
            ("GET", "/v1/flavors"): {"flavors": [flavor]},
            ("POST", "/v1/flavors"): flavor,
            ("POST", f"/v1/servers/{sid}/action"): rebooted,
            ("DELETE", f"/v1/servers/{sid}"): taken | {"status": "DELETING"},
        }
    )
    async with client:
        flavors = await client.list_flavors()
        made = await client.create_flavor("m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)
        rebooting = await client.server_action(sid, "reboot")
        deleting = await client.delete_server(sid)
        await client.create_flavor("m1.nano", vcpus=1, ram_mb=64)
    assert [(f.name, f.vcpus, f.ram_mb, f.disk_gb) for f in flavors] == [("m1.tiny", 1, 512, 1)]
    assert made.id == "f"
    assert (rebooting.task_state, rebooting.task_id) == ("rebooting", TASK["id"])
    assert rebooting.model_dump() == rebooted  # as sent: the CLI prints it so
    assert deleting.status == "DELETING"
    assert deleting.model_dump() == taken | {"status": "DELETING"}
    assert seen[2][2] == {"action": "reboot"}
    assert seen[1][2] == {"name": "m1.tiny", "vcpus": 1, "ram_mb": 512, "disk_gb": 1}
    assert seen[4][2] == {"name": "m1.nano", "vcpus": 1, "ram_mb": 64}  # the zone's disk_gb


async def test_hosts() -> None:
    offline = HOST | {"name": "h2", "state": "offline", "agent": None, "last_seen": None}
    client, seen = zone_answering(
        {
            ("PUT", "/v1/hosts/h1"): HOST,
            ("PUT", "/v1/hosts"): {"accepted": 2, "disabled": ["h2"]},
            ("GET", "/v1/hosts"): {"hosts": [HOST, offline], "next_marker": None},
            ("GET", "/v1/hosts/h1"): HOST,
            ("POST", "/v1/hosts/h2/disable"): offline | {"disabled": True, "disabled_reason": "x"},
            ("POST", "/v1/hosts/h2/enable"): offline,
            ("POST", "/v1/hosts/h1/release"): {"name": "h1", "released_from": "dc-agent"},
        }
    )
    async with client:
        beat = await client.heartbeat("h1", resources={"vcpus": 8}, capabilities={"arch": "x"})
        taken = await client.heartbeat_batch([{"name": "h1"}, {"name": "h2"}])
        page = await client.list_hosts(state="online", limit=2)
        every = await client.all_hosts()
        one = await client.get_host("h1")
        disabled = await client.disable_host("h2", reason="x")
        enabled = await client.enable_host("h2")
        released = await client.release_host("h1")
    assert isinstance(beat, Host) and beat == one
    assert (beat.free.vcpus, beat.allocated.ram_mb, beat.agent) == (5, 512, "dc-agent")
    assert beat.last_seen is not None and beat.last_seen.microsecond == 123456
    # As the zone sent it (what the CLI prints): same fields, order, numbers' types.
    assert list(beat.model_dump(mode="json")) == list(HOST)
    assert beat.model_dump(mode="json") == HOST
    assert (taken.accepted, taken.disabled) == (2, ["h2"])
    assert [h.name for h in page.hosts] == [h.name for h in every] == ["h1", "h2"]
    assert page.next_marker is None and every[1].last_seen is None
    assert (disabled.disabled, disabled.disabled_reason) == (True, "x")
    assert (enabled.disabled, enabled.state) == (False, "offline")
    assert (released.name, released.released_from) == ("h1", "dc-agent")
    assert seen[0][2] == {
        "capabilities": {"arch": "x"},
        "resources": {"vcpus": 8},
        "used": {},
    }
    assert seen[2][1] == "/v1/hosts?state=online&limit=2"
    assert seen[3][1] == "/v1/hosts?limit=1000"
    assert seen[5][2] == {"reason": "x"}


async def test_all_hosts_follows_markers() -> None:
    pages = iter(
        [
            {"hosts": [HOST], "next_marker": "h1"},
            {"hosts": [HOST | {"name": "h2"}], "next_marker": None},
        ]
    )
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json=next(pages))

    async with SkyfedClient("http://zone.test", transport=httpx.MockTransport(answer)) as client:
        hosts = await client.all_hosts(state="offline")
    assert [h.name for h in hosts] == ["h1", "h2"]
    assert asked == [
        "http://zone.test/v1/hosts?state=offline&limit=1000",
        "http://zone.test/v1/hosts?state=offline&limit=1000&marker=h1",
    ]


async def test_agent_accounts() -> None:
    changed = AGENT | {"hosts": ["dc-1"], "max_hosts": 5}
    client, seen = zone_answering(
        {
            ("POST", "/v1/agents"): AGENT,
            ("GET", "/v1/agents"): {"agents": [AGENT | {"extra": 1}]},
            ("GET", "/v1/agents/dc-agent"): AGENT,
            ("PUT", "/v1/agents/dc-agent"): changed,
            ("DELETE", "/v1/agents/dc-agent"): 204,
        }
    )
    async with client:
        made = await client.create_agent("dc-agent", "pw-pw-pw-pw", ["dc-*", "lone"])
        listed = await client.list_agents()
        shown = await client.get_agent("dc-agent")
        updated = await client.update_agent("dc-agent", hosts=["dc-1"], max_hosts=5)
        await client.delete_agent("dc-agent")
    assert isinstance(made, AgentAccount) and made == shown == listed[0]
    assert made.model_dump(mode="json") == AGENT
    assert (made.hosts, made.carried, made.pending_commands) == (["dc-*", "lone"], 1, 2)
    assert (updated.hosts, updated.max_hosts) == (["dc-1"], 5)
    assert seen[0][2] == {"name": "dc-agent", "password": "pw-pw-pw-pw", "hosts": ["dc-*", "lone"]}
    assert seen[3][2] == {"hosts": ["dc-1"], "max_hosts": 5}  # the password not given: not sent
    assert seen[4][:2] == ("DELETE", "/v1/agents/dc-agent")


async def test_identity() -> None:
    token = {"token": "t" * 40, "expires_at": "2025-01-03T03:04:05Z", "user": USER}
    project = {"id": "p1", "name": "acme", "description": "", "created_at": USER["created_at"]}
    me = {"user_id": "u1", "username": "alice", "project_id": "p1", "roles": ["member"]}
    client, seen = zone_answering(
        {
            ("POST", "/v1/auth/tokens"): token,
            ("GET", "/v1/auth/whoami"): me | {"via": None},
            ("POST", "/v1/projects"): project,
            ("GET", "/v1/projects"): {"projects": [project]},
            ("POST", "/v1/users"): USER,
            ("GET", "/v1/users"): {"users": [USER]},
        }
    )
    async with client:
        logged_in = await client.login("alice", "alice-password")
        kept = client.token
        who = await client.whoami()
        made = await client.create_project("acme")
        projects = await client.list_projects()
        user = await client.create_user("alice", "alice-password", "acme", ["member"])
        users = await client.list_users()
    assert isinstance(logged_in, Token) and kept == "t" * 40
    assert logged_in.model_dump(mode="json") == token | {
        "user": USER | {"created_at": "2025-01-02T03:04:05.500000Z"}
    }
    assert (who.username, who.roles, who.via) == ("alice", ["member"], None)
    assert made == projects[0] and made.name == "acme"
    assert isinstance(user, User) and user == users[0] and user.roles == ["member"]
    assert seen[0][2] == {"username": "alice", "password": "alice-password"}
    assert seen[4][2] == {
        "name": "alice",
        "password": "alice-password",
        "project": "acme",
        "roles": ["member"],
    }


async def test_the_clients_own_logins_read_only_the_token() -> None:
    """A zone (or a stand-in for one) that answers a login with a token alone: the
    logins the client makes when it needs one work; `login()` says the answer is short."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/auth/tokens":
            return httpx.Response(201, json={"token": "fresh"})
        assert request.headers["authorization"] == "Bearer fresh"
        return httpx.Response(200, json={"accepted": 1, "disabled": []})

    transport = httpx.MockTransport(answer)
    async with SkyfedClient(
        "http://zone.test", username="agent", password="pw", transport=transport
    ) as client:
        assert (await client.heartbeat_batch([{"name": "h1"}])).accepted == 1
        with pytest.raises(SkyfedError) as short:
            await client.login("agent", "pw")
    assert sent == ["POST /v1/auth/tokens", "PUT /v1/hosts", "POST /v1/auth/tokens"]
    assert (short.value.status, short.value.code) == (502, "bad_response")


async def test_locate_and_one_command_result() -> None:
    where = {"id": "z9", "name": "eu-dc1", "url": "http://eu-dc1.test", "path": ["eu", "eu-dc1"]}
    client, seen = zone_answering(
        {
            ("GET", "/v1/zones/locate"): where,
            ("POST", "/v1/agents/ag/commands/c1/result"): 204,
        }
    )
    async with client:
        found = await client.locate("p1")
        assert await client.command_result("ag", "c1", {"ok": True, "status": "ACTIVE"}) is None
        with pytest.raises(SkyfedError) as unknown:
            await client.command_result("ag", "c2", {"ok": True, "status": "ACTIVE"})
    assert (found.name, found.path, found.url) == ("eu-dc1", ["eu", "eu-dc1"], where["url"])
    assert found.model_dump() == where
    assert seen[0][1] == "/v1/zones/locate?project=p1"
    assert seen[1] == ("POST", "/v1/agents/ag/commands/c1/result", {"ok": True, "status": "ACTIVE"})
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")


Bad = Callable[[SkyfedClient], Any]


@pytest.mark.parametrize(
    ("answer", "call"),
    [
        ({"servers": "nope"}, lambda c: c.list_servers()),
        ({"id": 1}, lambda c: c.get_server(SERVER["id"])),
        (["not", "an", "object"], lambda c: c.zone()),
        ({"zones": None}, lambda c: c.list_zones()),
        ({"flavors": [{"name": "x"}]}, lambda c: c.list_flavors()),
        (None, lambda c: c.get_task(TASK["id"])),
        ({"hosts": [{"name": "h1"}]}, lambda c: c.list_hosts()),
        (HOST | {"free": None}, lambda c: c.get_host("h1")),
        ({"accepted": "many"}, lambda c: c.heartbeat_batch([])),
        ({"agents": {}}, lambda c: c.list_agents()),
        ({"users": [{"id": "u1"}]}, lambda c: c.list_users()),
        ({"username": "x"}, lambda c: c.whoami()),
    ],
)
async def test_an_answer_out_of_shape_is_one_skyfed_error(answer: Any, call: Bad) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(answer).encode())

    async with SkyfedClient("http://zone.test", transport=httpx.MockTransport(respond)) as client:
        with pytest.raises(SkyfedError) as caught:
            await call(client)
    assert (caught.value.status, caught.value.code) == (502, "bad_response")
    assert caught.value.message.startswith("http://zone.test answered ")
