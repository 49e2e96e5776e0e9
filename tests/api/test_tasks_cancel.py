"""Cancelling a server's task (SQLite and PostgreSQL): only before it has begun, and
the server is left as it was before the request."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from skyfed.client import SkyfedClient, SkyfedError
from tests.api.test_servers import HOST, booted, wait_for
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


async def active(admin: SkyfedClient, agent: ScriptedAgent) -> str:
    [brief] = (await admin.create_servers("web", flavor="m1.small")).servers
    await booted(admin, agent, brief.id)
    return str(brief.id)


async def gone(admin: SkyfedClient, agent: ScriptedAgent, server_id: str) -> None:
    async def check() -> bool:
        await agent.answer_all()
        try:
            await admin.get_server(server_id)
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
    reboot = await admin.server_action(sid, "reboot")

    async def requeued() -> dict[str, Any] | None:
        found = await admin.get_task(reboot.task_id)
        return found if (found.state, found.attempts) == ("queued", 1) else None

    await wait_for(requeued, "the reboot queued again after its first attempt")
    with pytest.raises(SkyfedError) as exc:
        await admin.cancel_task(reboot.task_id)
    assert (exc.value.status, exc.value.code) == (409, "task_begun")
    assert "has begun (1 attempt)" in exc.value.message
    after = await admin.get_task(reboot.task_id)
    assert (after.state, after.attempts) == ("queued", 1)
    assert (await admin.get_server(sid)).status == "REBOOTING"


@pytest.mark.parametrize("action", ["reboot", "stop"])
async def test_a_cancelled_action_leaves_the_server_as_it_was(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent, action: str
) -> None:
    sid = await active(admin, agent)
    with paused(zone):
        accepted = await admin.server_action(sid, action)
        assert (await admin.get_task(accepted.task_id)).attempts == 0
        assert (await admin.cancel_task(accepted.task_id)).state == "cancelled"
        after = await admin.get_server(sid)
        assert (after.status, after.task_state) == ("ACTIVE", None)
    # A later action is accepted, and only it reaches the host.
    assert (await admin.server_action(sid, "stop")).task_state == "stopping"

    async def stopped() -> bool:
        await agent.answer_all()
        return (await admin.get_server(sid)).status == "STOPPED"

    await wait_for(stopped, "server STOPPED")
    assert [c["action"] for c in agent.seen] == ["boot", "stop"]


async def test_a_cancelled_delete_gives_the_server_back(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    sid = await active(admin, agent)
    with paused(zone):
        deleting = await admin.delete_server(sid)
        assert deleting.status == "DELETING"
        assert (await admin.cancel_task(deleting.task_id)).state == "cancelled"
        back = await admin.get_server(sid)
        assert (back.status, back.task_state) == ("ACTIVE", None)
    assert (await admin.get_host("h1")).free.vcpus == HOST["vcpus"] - 1
    # Deleting it again works, and deletes it.
    again = await admin.delete_server(sid)
    assert again.status == "DELETING"
    await gone(admin, agent, sid)
    assert [c["action"] for c in agent.seen] == ["boot", "delete"]


async def test_a_delete_cancelled_after_the_action_before_it_keeps_its_outcome(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    """The reboot ahead of the delete finishes while the server shows DELETING: the
    cancel gives back what the reboot left (ACTIVE), not REBOOTING."""
    sid = await active(admin, agent)
    reboot = await admin.server_action(sid, "reboot")
    [command] = await wait_for(agent.commands, "the reboot command")
    deleting = await admin.delete_server(sid)
    with paused(zone):  # the delete must not start once the reboot is done
        await agent.answer(command)

        async def rebooted() -> bool:
            return (await admin.get_task(reboot.task_id)).state == "succeeded"

        await wait_for(rebooted, "the reboot task done")
        assert (await admin.get_server(sid)).status == "DELETING"
        await admin.cancel_task(deleting.task_id)
        back = await admin.get_server(sid)
        assert (back.status, back.task_state) == ("ACTIVE", None)
    assert (await admin.server_action(sid, "stop")).task_state == "stopping"


async def test_a_cancelled_create_ends_in_error(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    with paused(zone):
        [brief] = (await admin.create_servers("web", flavor="m1.small")).servers
        sid = brief.id
        [place] = (await admin.list_tasks(resource_id=sid)).tasks
        assert (place.kind, place.state, place.attempts) == ("place", "queued", 0)
        await admin.cancel_task(place.id)
    failed = await admin.get_server(sid)
    assert (failed.status, failed.task_state) == ("ERROR", None)
    assert (failed.placement, failed.fault) == ("failed", "creation cancelled")
    # Undone, not to be run again: a new create is the way.
    with pytest.raises(SkyfedError) as exc:
        await admin.retry_task(place.id)
    assert (exc.value.status, exc.value.code) == (409, "task_undone")
    assert (await admin.get_host("h1")).free.vcpus == HOST["vcpus"]
    await admin.delete_server(sid)
    await gone(admin, agent, sid)
    assert agent.seen == []


async def test_a_delete_cancelled_behind_its_create_lets_the_create_go_on(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    with paused(zone):
        [brief] = (await admin.create_servers("web", flavor="m1.small")).servers
        sid = brief.id
        deleting = await admin.delete_server(sid)
        await admin.cancel_task(deleting.task_id)
        back = await admin.get_server(sid)
        assert (back.status, back.task_state) == ("BUILDING", "scheduling")
    await booted(admin, agent, sid)


async def test_a_delete_cancelled_after_its_create_stopped_places_the_server(
    zone: InProcessZone, admin: SkyfedClient, agent: ScriptedAgent
) -> None:
    """The place task saw DELETING and ended; the delete, still queued, is cancelled:
    the server is placed after all instead of staying BUILDING."""
    process = zone.process
    with paused(zone):
        [brief] = (await admin.create_servers("web", flavor="m1.small")).servers
        sid = brief.id
        deleting = await admin.delete_server(sid)
        # The place task runs alone (here, by hand): the delete stays queued behind it.
        [place] = await process.engine.store.claim("by-hand", 1, lease=30)
        assert place.kind == "place"
        result = await process.compute.placer.run(place)
        assert result == {"placement": "cancelled"}
        assert await process.engine.store.succeed(place, "by-hand", result)
        await admin.cancel_task(deleting.task_id)
        assert (await admin.get_server(sid)).status == "BUILDING"
    await booted(admin, agent, sid)
