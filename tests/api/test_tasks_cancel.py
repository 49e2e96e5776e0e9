"""Cancelling a server's task (SQLite and PostgreSQL): only before it has begun, and
the server is left as it was before the request."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from skyfed.client import SkyfedClient, SkyfedError
from tests.api.test_servers import HOST, booted, create, server, wait_for
from tests.conftest import AGENT_PASSWORD, InProcessZone
from tests.fakes import ScriptedAgent


@pytest.fixture
async def agent(zone: InProcessZone) -> AsyncIterator[ScriptedAgent]:
    async with zone.client("agent", AGENT_PASSWORD) as client:
        scripted = ScriptedAgent(client)
        await scripted.beat({"h1": HOST}, arch="x86_64")
        yield scripted


@contextlib.contextmanager
def paused(zone: InProcessZone) -> Iterator[None]:
    """No task starts inside (those running go on), so new ones stay queued unbegun."""
    worker = zone.process.engine.worker
    slots, worker.concurrency = worker.concurrency, 0
    try:
        yield
    finally:
        worker.concurrency = slots
        zone.process.engine.store.notify()


async def task(client: SkyfedClient, task_id: str) -> dict[str, Any]:
    return await client.request("GET", f"/v1/tasks/{task_id}")


async def cancel(client: SkyfedClient, task_id: str) -> dict[str, Any]:
    return await client.request("POST", f"/v1/tasks/{task_id}/cancel")


async def act(client: SkyfedClient, server_id: str, action: str) -> dict[str, Any]:
    return await client.request("POST", f"/v1/servers/{server_id}/action", json={"action": action})


async def active(admin: SkyfedClient, agent: ScriptedAgent) -> str:
    [brief] = (await create(admin))["servers"]
    await booted(admin, agent, brief["id"])
    return str(brief["id"])


async def gone(admin: SkyfedClient, agent: ScriptedAgent, server_id: str) -> None:
    async def check() -> bool:
        await agent.answer_all()
        try:
            await server(admin, server_id)
        except SkyfedError as exc:
            return exc.status == 404
        return False

    await wait_for(check, f"server {server_id} deleted")


async def test_a_task_that_has_begun_is_not_cancelled(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    sid = await active(admin, agent)
    zone.process.core.settings.command_timeout = 0.3  # the agent never answers the reboot
    store = zone.process.engine.store
    store.backoff_base = store.backoff_cap = 3600.0  # the retry waits: the task stays queued
    reboot = await act(admin, sid, "reboot")

    async def requeued() -> dict[str, Any] | None:
        found = await task(admin, reboot["task_id"])
        return found if (found["state"], found["attempts"]) == ("queued", 1) else None

    await wait_for(requeued, "the reboot queued again after its first attempt")
    with pytest.raises(SkyfedError) as exc:
        await cancel(admin, reboot["task_id"])
    assert (exc.value.status, exc.value.code) == (409, "task_begun")
    assert "has begun (1 attempt)" in exc.value.message
    after = await task(admin, reboot["task_id"])
    assert (after["state"], after["attempts"]) == ("queued", 1)
    assert (await server(admin, sid))["status"] == "REBOOTING"


@pytest.mark.parametrize("action", ["reboot", "stop"])
async def test_a_cancelled_action_leaves_the_server_as_it_was(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent, action: str
) -> None:
    sid = await active(admin, agent)
    with paused(zone):
        accepted = await act(admin, sid, action)
        assert (await task(admin, accepted["task_id"]))["attempts"] == 0
        assert (await cancel(admin, accepted["task_id"]))["state"] == "cancelled"
        after = await server(admin, sid)
        assert (after["status"], after["task_state"]) == ("ACTIVE", None)
    # A later action is accepted, and only it reaches the host.
    assert (await act(admin, sid, "stop"))["task_state"] == "stopping"

    async def stopped() -> bool:
        await agent.answer_all()
        return (await server(admin, sid))["status"] == "STOPPED"

    await wait_for(stopped, "server STOPPED")
    assert [c["action"] for c in agent.seen] == ["boot", "stop"]


async def test_a_cancelled_delete_gives_the_server_back(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    sid = await active(admin, agent)
    with paused(zone):
        deleting = await admin.request("DELETE", f"/v1/servers/{sid}")
        assert deleting["status"] == "DELETING"
        assert (await cancel(admin, deleting["task_id"]))["state"] == "cancelled"
        back = await server(admin, sid)
        assert (back["status"], back["task_state"]) == ("ACTIVE", None)
    assert (await admin.get_host("h1"))["free"]["vcpus"] == HOST["vcpus"] - 1
    # Deleting it again works, and deletes it.
    again = await admin.request("DELETE", f"/v1/servers/{sid}")
    assert again["status"] == "DELETING"
    await gone(admin, agent, sid)
    assert [c["action"] for c in agent.seen] == ["boot", "delete"]


async def test_a_delete_cancelled_after_the_action_before_it_keeps_its_outcome(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    """The reboot ahead of the delete finishes while the server shows DELETING: the
    cancel gives back what the reboot left (ACTIVE), not REBOOTING."""
    sid = await active(admin, agent)
    reboot = await act(admin, sid, "reboot")
    [command] = await wait_for(agent.commands, "the reboot command")
    deleting = await admin.request("DELETE", f"/v1/servers/{sid}")
    with paused(zone):  # the delete must not start once the reboot is done
        await agent.answer(command)

        async def rebooted() -> bool:
            return (await task(admin, reboot["task_id"]))["state"] == "succeeded"

        await wait_for(rebooted, "the reboot task done")
        assert (await server(admin, sid))["status"] == "DELETING"
        await cancel(admin, deleting["task_id"])
        back = await server(admin, sid)
        assert (back["status"], back["task_state"]) == ("ACTIVE", None)
    assert (await act(admin, sid, "stop"))["task_state"] == "stopping"


async def test_a_cancelled_create_ends_in_error(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    with paused(zone):
        [brief] = (await create(admin))["servers"]
        sid = brief["id"]
        [place] = (await admin.request("GET", "/v1/tasks", params={"resource_id": sid}))["tasks"]
        assert (place["kind"], place["state"], place["attempts"]) == ("place", "queued", 0)
        await cancel(admin, place["id"])
    failed = await server(admin, sid)
    assert (failed["status"], failed["task_state"]) == ("ERROR", None)
    assert (failed["placement"], failed["fault"]) == ("failed", "creation cancelled")
    # Undone, not to be run again: a new create is the way.
    with pytest.raises(SkyfedError) as exc:
        await admin.request("POST", f"/v1/tasks/{place['id']}/retry")
    assert (exc.value.status, exc.value.code) == (409, "task_undone")
    assert (await admin.get_host("h1"))["free"]["vcpus"] == HOST["vcpus"]
    await admin.request("DELETE", f"/v1/servers/{sid}")
    await gone(admin, agent, sid)
    assert agent.seen == []


async def test_a_delete_cancelled_behind_its_create_lets_the_create_go_on(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    with paused(zone):
        [brief] = (await create(admin))["servers"]
        sid = brief["id"]
        deleting = await admin.request("DELETE", f"/v1/servers/{sid}")
        await cancel(admin, deleting["task_id"])
        back = await server(admin, sid)
        assert (back["status"], back["task_state"]) == ("BUILDING", "scheduling")
    await booted(admin, agent, sid)


async def test_a_delete_cancelled_after_its_create_stopped_places_the_server(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    """The place task saw DELETING and ended; the delete, still queued, is cancelled:
    the server is placed after all instead of staying BUILDING."""
    process = zone.process
    with paused(zone):
        [brief] = (await create(admin))["servers"]
        sid = brief["id"]
        deleting = await admin.request("DELETE", f"/v1/servers/{sid}")
        # The place task runs alone (here, by hand): the delete stays queued behind it.
        [place] = await process.engine.store.claim("by-hand", 1, lease=30)
        assert place.kind == "place"
        result = await process.compute.placer.run(place)
        assert result == {"placement": "cancelled"}
        assert await process.engine.store.succeed(place, "by-hand", result)
        await cancel(admin, deleting["task_id"])
        assert (await server(admin, sid))["status"] == "BUILDING"
    await booted(admin, agent, sid)
