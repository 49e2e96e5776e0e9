"""What a user does at a parent zone reaches the children holding the servers
(README, "Roles" and "Servers"): a member creates, lists, reads, stops and deletes
servers that live in a child, another project's member sees none of them, and
`avoid` keeps a create out of the subtrees it names.

The parent runs in-process; its children are zones on loopback sockets (it calls
them over HTTP, forwarding the user's identity with its service account there), each
with a scripted agent for its hosts. Parents poll by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.client_models import Server
from skyfed.federation.process import free_port
from tests.conftest import (
    AGENT_PASSWORD,
    SERVICE_PASSWORD,
    InProcessZone,
    ServedZone,
    zone_settings,
)
from tests.fakes import ScriptedAgent
from tests.waiting import eventually

HOST = {"vcpus": 8, "ram_mb": 16384, "disk_gb": 200}


class Tree:
    """Zones by name (the first is the root, in-process), and the leaves' agents."""

    def __init__(self) -> None:
        self.zones: dict[str, InProcessZone | ServedZone] = {}
        self.agents: dict[str, ScriptedAgent] = {}

    @property
    def root(self) -> InProcessZone:
        root = next(iter(self.zones.values()))
        assert isinstance(root, InProcessZone)
        return root

    async def answer_all(self) -> None:
        for agent in self.agents.values():
            await agent.answer_all()

    async def poll(self, *order: str) -> None:
        """Each named zone polls its children once (name the lower ones first)."""
        for name in order:
            result = await self.zones[name].process.tree.poller.cycle()
            assert result.polled == result.ok, (name, result)


@asynccontextmanager
async def tree(
    tmp_path: Path, shape: dict[str, tuple[str | None, dict[str, dict[str, int]]]]
) -> AsyncIterator[Tree]:
    """`shape`: zone name -> (its parent, the hosts its agent carries); parents first."""
    made = Tree()
    async with AsyncExitStack() as stack:
        for name, (parent, hosts) in shape.items():
            zone: InProcessZone | ServedZone
            if parent is None:
                zone = InProcessZone(zone_settings(tmp_path / name, None, name=name))
                await stack.enter_async_context(zone)
            else:
                served = ServedZone(
                    zone_settings(tmp_path / name, None, name=name, port=free_port())
                )
                zone = await stack.enter_async_context(served)
                async with made.zones[parent].client() as admin:
                    await admin.add_zone(name, served.url, "svc", SERVICE_PASSWORD)
            made.zones[name] = zone
            if hosts:
                client = await stack.enter_async_context(zone.client("agent", AGENT_PASSWORD))
                agent = ScriptedAgent(client)
                await agent.beat(hosts, arch="x86_64")
                made.agents[name] = agent
        yield made


async def settle(
    fed: Tree, client: SkyfedClient, ids: list[str], status: str = "ACTIVE"
) -> list[Server]:
    """Answer every agent's commands until each server shows `status` at `client`'s zone."""

    async def reached() -> list[Server] | None:
        await fed.answer_all()
        servers = [await client.get_server(i) for i in ids]
        done = all(s.status == status and s.task_state is None for s in servers)
        return servers if done else None

    return await eventually(reached, 30, f"{ids} {status}")


async def refused(call: Awaitable[Any], status: int, code: str) -> SkyfedError:
    with pytest.raises(SkyfedError) as caught:
        await call
    assert (caught.value.status, caught.value.code) == (status, code), caught.value
    return caught.value


async def gone(fed: Tree, client: SkyfedClient, server_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        await fed.answer_all()
        try:
            await client.get_server(server_id)
        except SkyfedError as exc:
            return (exc.status, exc.code) == (404, "not_found")
        return False

    return check


async def test_a_member_acts_through_the_parent_and_another_project_is_refused(
    tmp_path: Path,
) -> None:
    shape = {"top": (None, {}), "dc": ("top", {"h1": HOST, "h2": HOST})}
    async with tree(tmp_path, shape) as fed:
        await fed.poll("top")
        top = fed.root
        async with top.client() as admin:
            await admin.create_project("alpha")
            await admin.create_project("beta")
            alice_user = await admin.create_user("alice", "alice-password", "alpha", ["member"])
            await admin.create_user("bob", "bob-password", "beta", ["member"])
        alpha = alice_user.project_id
        async with (
            top.client("alice", "alice-password") as alice,
            top.client("bob", "bob-password") as bob,
            fed.zones["dc"].client() as dc_admin,
        ):
            # Create at the parent: the servers sink to the child, the same ids there.
            created = await alice.create_servers(name="web", flavor="m1.small", count=2)
            ids = [s.id for s in created.servers]
            assert [s.status for s in created.servers] == ["BUILDING", "BUILDING"]
            servers = await settle(fed, alice, ids)
            assert [s.location.path for s in servers] == [["dc"], ["dc"]]
            assert {s.project_id for s in servers} == {alpha}
            # The child holds them for alice's project (the identity the parent forwarded).
            held = [await dc_admin.get_server(i) for i in ids]
            assert {(s.project_id, s.status) for s in held} == {(alpha, "ACTIVE")}
            assert sorted(str(s.location.host) for s in held) == ["h1", "h2"]

            # List across zones, and get by id, at the parent.
            listed, unavailable = await alice.all_servers()
            assert sorted(s.id for s in listed) == sorted(ids) and unavailable == []
            assert (await alice.get_server(ids[0])).name == "web-1"

            # Another project's member: nothing listed, nothing found, nothing done.
            assert await bob.all_servers() == ([], [])
            for call in (
                bob.get_server(ids[0]),
                bob.server_action(ids[0], "stop"),
                bob.delete_server(ids[0]),
            ):
                await refused(call, 404, "not_found")
            await refused(
                bob.request("GET", "/v1/zones/locate", params={"project": alpha}), 403, "forbidden"
            )
            assert [s.status for s in await settle(fed, alice, ids)] == ["ACTIVE"] * 2

            # An action through the parent reaches the host.
            await alice.server_action(ids[0], "stop")
            await settle(fed, alice, [ids[0]], "STOPPED")
            located = await alice.request("GET", "/v1/zones/locate", params={"project": alpha})
            assert located["path"] == ["dc"]

            # Delete through the parent: gone at both levels; the other stays.
            deleting = await alice.delete_server(ids[0])
            assert deleting.status == "DELETING"
            await eventually(await gone(fed, alice, ids[0]), 30, "deleted at the parent")
            await refused(dc_admin.get_server(ids[0]), 404, "not_found")
            listed, _ = await alice.all_servers()
            assert [s.id for s in listed] == [ids[1]]
            assert [c["action"] for c in fed.agents["dc"].seen].count("delete") == 1


async def test_avoid_keeps_a_create_out_of_the_named_subtrees(tmp_path: Path) -> None:
    """`"avoid": ["eu/eu-dc2"]` (paths below the zone the request enters): not there,
    even where the planner would rather go."""
    shape = {
        "top": (None, {}),
        "eu": ("top", {}),
        "eu-dc1": ("eu", {"a1": HOST, "a2": HOST}),
        "eu-dc2": ("eu", {"b1": HOST, "b2": HOST}),
    }
    async with tree(tmp_path, shape) as fed:
        async with fed.zones["eu"].client() as eu_admin:  # eu's planner prefers eu-dc2
            await eu_admin.update_zone("eu-dc2", weight_offset=100.0)
        await fed.poll("eu", "top")
        async with fed.root.client() as admin:
            [plain] = (await admin.create_servers(name="plain", flavor="m1.small")).servers
            [placed] = await settle(fed, admin, [plain.id])
            assert placed.location.path == ["eu", "eu-dc2"]  # where it would go

            avoiding = await admin.create_servers(
                name="away", flavor="m1.small", count=3, avoid=["eu/eu-dc2"]
            )
            servers = await settle(fed, admin, [s.id for s in avoiding.servers])
            assert [s.location.path for s in servers] == [["eu", "eu-dc1"]] * 3
            assert {s.location.host for s in servers} <= {"a1", "a2"}

            # Still preferred by what is not told to avoid it.
            [again] = (await admin.create_servers(name="again", flavor="m1.small")).servers
            [placed] = await settle(fed, admin, [again.id])
            assert placed.location.path == ["eu", "eu-dc2"]

            # Avoiding every place there is: ERROR, saying why, and no host asked.
            seen = sum(len(agent.seen) for agent in fed.agents.values())
            for avoid in (["eu"], ["eu/eu-dc1", "eu/eu-dc2"]):
                [nowhere] = (
                    await admin.create_servers(name="nowhere", flavor="m1.small", avoid=avoid)
                ).servers
                [failed] = await settle(fed, admin, [nowhere.id], "ERROR")
                assert "outside the zone path" in failed.fault, failed.fault
                assert (failed.location.path, failed.location.host) == ([], None)
            assert sum(len(agent.seen) for agent in fed.agents.values()) == seen
