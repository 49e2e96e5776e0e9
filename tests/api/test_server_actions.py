"""Server actions the README promises (`skyfed server reboot ID`, "also stop, start,
delete"), at one zone with a scripted agent: a stopped server starts again on its host,
and a server in ERROR is rebooted back to ACTIVE (docs/compute.md, "Lifecycle")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.client_models import Server
from tests.conftest import AGENT_PASSWORD, InProcessZone, zone_settings
from tests.fakes import ScriptedAgent
from tests.waiting import eventually

HOST = {"vcpus": 8, "ram_mb": 16384, "disk_gb": 200}


@pytest.fixture
async def one_host(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[SkyfedClient, ScriptedAgent]]:
    """A zone with one host (so a failed boot is not placed again elsewhere), its admin
    and the host's agent."""
    settings = zone_settings(tmp_path, database_url, placement_max_tries=1)
    async with (
        InProcessZone(settings) as zone,
        zone.client() as admin,
        zone.client("agent", AGENT_PASSWORD) as client,
    ):
        agent = ScriptedAgent(client)
        await agent.beat({"h1": HOST}, arch="x86_64")
        yield admin, agent


async def command(agent: ScriptedAgent, action: str) -> dict[str, Any]:
    """The agent's next command, which must be `action` (bounded wait)."""

    async def next_one() -> list[dict[str, Any]]:
        return await agent.commands()

    [found] = await eventually(next_one, 20, f"a {action} command")
    assert found["action"] == action, found
    return found


async def settled(admin: SkyfedClient, server_id: str, status: str) -> Server:
    async def reached() -> Server | None:
        server = await admin.get_server(server_id)
        return server if server.status == status and server.task_state is None else None

    return await eventually(reached, 20, f"server {server_id} {status}")


async def refused(call: Any, status: int, code: str) -> SkyfedError:
    with pytest.raises(SkyfedError) as caught:
        await call
    assert (caught.value.status, caught.value.code) == (status, code), caught.value
    return caught.value


async def test_a_stopped_server_starts_again_on_its_host(
    one_host: tuple[SkyfedClient, ScriptedAgent],
) -> None:
    admin, agent = one_host
    [brief] = (await admin.create_servers(name="web", flavor="m1.small")).servers
    sid = brief.id
    await agent.answer(await command(agent, "boot"))
    await settled(admin, sid, "ACTIVE")

    await admin.server_action(sid, "stop")
    await agent.answer(await command(agent, "stop"))
    await settled(admin, sid, "STOPPED")

    starting = await admin.server_action(sid, "start")
    assert (starting.status, starting.task_state) == ("STOPPED", "starting")
    error = await refused(admin.server_action(sid, "start"), 409, "invalid_state")
    assert "starting" in error.message  # one action at a time
    start = await command(agent, "start")
    assert (start["server_id"], start["host"]) == (sid, "h1")
    await agent.answer(start)
    up = await settled(admin, sid, "ACTIVE")
    assert up.location.host == "h1"
    assert [c["action"] for c in agent.seen] == ["boot", "stop", "start"]


async def test_a_server_whose_process_exited_starts_again(
    one_host: tuple[SkyfedClient, ScriptedAgent],
) -> None:
    """An exit the agent reports makes the server STOPPED with its exit code; `start`
    runs it again (the README: "an exit shows in the server's status")."""
    admin, agent = one_host
    [brief] = (await admin.create_servers(name="job", flavor="m1.tiny")).servers
    sid = brief.id
    await agent.answer(await command(agent, "boot"))
    await settled(admin, sid, "ACTIVE")
    exited = {"server_id": sid, "status": "STOPPED", "exit_code": 3, "message": "exit 3"}
    await agent.client.request("POST", f"/v1/agents/{agent.name}/events", json={"events": [exited]})
    stopped = await settled(admin, sid, "STOPPED")
    assert stopped.exit_code == 3

    await admin.server_action(sid, "start")
    await agent.answer(await command(agent, "start"))
    await settled(admin, sid, "ACTIVE")


async def test_a_server_in_error_is_rebooted_back_to_active(
    one_host: tuple[SkyfedClient, ScriptedAgent],
) -> None:
    admin, agent = one_host
    [brief] = (await admin.create_servers(name="web", flavor="m1.small")).servers
    sid = brief.id
    await agent.answer(await command(agent, "boot"), ok=False, message="disk on fire")
    failed = await settled(admin, sid, "ERROR")
    assert "disk on fire" in failed.fault
    assert failed.location.host == "h1"

    # ERROR allows reboot and delete, nothing else.
    for action in ("stop", "start"):
        error = await refused(admin.server_action(sid, action), 409, "invalid_state")
        assert "ERROR" in error.message
    rebooting = await admin.server_action(sid, "reboot")
    assert rebooting.status == "REBOOTING"
    reboot = await command(agent, "reboot")
    assert (reboot["server_id"], reboot["host"]) == (sid, "h1")
    await agent.answer(reboot)
    active = await settled(admin, sid, "ACTIVE")
    assert active.location.host == "h1"
    assert [c["action"] for c in agent.seen] == ["boot", "reboot"]


async def test_a_server_that_never_found_a_host_cannot_be_rebooted(
    one_host: tuple[SkyfedClient, ScriptedAgent],
) -> None:
    """In ERROR without a host (no room for it), a reboot has nothing to act on: 409,
    and nothing changes; a delete still removes it."""
    admin, agent = one_host
    [full] = (await admin.create_servers(name="full", vcpus=8, ram_mb=1024)).servers
    await agent.answer(await command(agent, "boot"))
    await settled(admin, full.id, "ACTIVE")
    [brief] = (await admin.create_servers(name="more", vcpus=8, ram_mb=1024)).servers
    sid = brief.id
    failed = await settled(admin, sid, "ERROR")
    assert "vcpus" in failed.fault
    assert failed.location.host is None
    error = await refused(admin.server_action(sid, "reboot"), 409, "invalid_state")
    assert "never placed" in error.message
    assert (await admin.get_server(sid)).status == "ERROR"
    await admin.delete_server(sid)

    async def gone() -> bool:
        try:
            await admin.get_server(sid)
        except SkyfedError as exc:
            return (exc.status, exc.code) == (404, "not_found")
        return False

    await eventually(gone, 20, "the server deleted")
    assert await agent.commands() == []  # no host was ever asked
