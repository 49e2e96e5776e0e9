"""Idle agent polls cost nothing: they wait on wake-ups, not on re-reads of the database.

The issue measured 200 idle polls reading the database every 0.25 s (4.9
CPU-seconds in 10 s). Here: a poll reads once when it starts and once when it
ends; a command added by another process of the zone wakes it over the zone's
bus, and a result posted to another process wakes the task waiting for it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from skyfed.compute import commands
from skyfed.settings import Settings
from tests.conftest import AGENT_PASSWORD, InProcessZone, zone_settings

HOST = {"vcpus": 8, "ram_mb": 16384, "disk_gb": 200}


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = commands.pending

    async def pending(db: Any, agent: str, limit: int, after: int = 0) -> Any:
        reads.append(agent)
        return await real(db, agent, limit, after)

    monkeypatch.setattr(commands, "pending", pending)
    return reads


@pytest.mark.parametrize(("reread", "most"), [(None, 2), (0.25, 8)])
async def test_an_idle_poll_reads_when_it_starts_and_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reread: float | None, most: int
) -> None:
    """On SQLite without a bus nothing else can add a command: no re-read at all (the
    old poll read every 0.25 s; with `agent_poll_reread = 0.25` it still does)."""
    settings = zone_settings(tmp_path, None, agent_poll_reread=reread)
    assert settings.poll_reread == reread
    async with InProcessZone(settings) as zone, zone.client("agent", AGENT_PASSWORD) as agent:
        await agent.whoami()
        reads = counting_reads(monkeypatch)
        began = time.monotonic()
        assert await agent.agent_commands("agent", wait=1) == []
        assert time.monotonic() - began >= 1.0
    if reread is None:
        assert len(reads) == 2
    else:
        assert 4 <= len(reads) <= most


def test_the_reread_follows_the_zone_kind(tmp_path: Path) -> None:
    sqlite = Settings(state_dir=tmp_path)
    assert sqlite.poll_reread is None
    assert Settings(state_dir=tmp_path, bus_url="amqp://mq/").poll_reread == 5.0
    assert Settings(state_dir=tmp_path, database_url="postgresql+asyncpg://db/z").poll_reread == 1.0
    assert Settings(state_dir=tmp_path, agent_poll_reread=0.5).poll_reread == 0.5


async def _until(check: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


async def test_wake_ups_cross_processes_over_the_bus(
    tmp_path: Path, postgres_database: str, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes of one zone (PostgreSQL, RabbitMQ), re-reads once a minute: a
    command made by one wakes the poll held by the other, and a result posted to
    the other wakes the task waiting for it on the first, in well under a minute."""
    name = f"wake-{uuid.uuid4().hex[:8]}"
    common = {"name": name, "bus_url": amqp_url, "agent_poll_reread": 60.0}
    one = InProcessZone(zone_settings(tmp_path / "one", postgres_database, **common))
    two = InProcessZone(zone_settings(tmp_path / "two", postgres_database, workers=0, **common))
    async with one, two:
        for zone in (one, two):  # both hear the zone's command notices
            await _until(lambda z=zone: _true(z.process.compute.ctx.signals.outbound), "the bus")
        async with (
            one.client() as admin,
            one.client("agent", AGENT_PASSWORD) as agent_at_one,
            two.client("agent", AGENT_PASSWORD) as agent_at_two,
        ):
            await agent_at_one.heartbeat("h1", resources=HOST)
            reads = counting_reads(monkeypatch)
            polling = asyncio.create_task(agent_at_two.agent_commands("agent", wait=30))
            await _until(lambda: _true(reads), "the poll at two read, and waits")
            assert not polling.done()  # held open at two, idle
            created = await admin.create_servers(name="web", flavor="m1.small")
            server_id = created.servers[0].id
            # Answered before its 30 s and with no re-read (60 s): a wake-up ended its wait.
            [boot] = await asyncio.wait_for(polling, 25)
            assert boot["action"] == "boot" and boot["server_id"] == server_id
            await agent_at_two.command_results("agent", [(boot["id"], {"ok": True})])

            answered = await admin.server_action(server_id, "reboot")
            [reboot] = await _until(
                lambda: agent_at_two.agent_commands("agent", wait=5), "the reboot"
            )
            await agent_at_two.command_results(
                "agent", [(reboot["id"], {"ok": True, "status": "ACTIVE"})]
            )
            # Within 30 s, when the task's own re-read is 60 s away: two's result woke it.
            task = await _until(
                lambda: _succeeded(admin, answered.task_id), "the reboot task", timeout=30
            )
            assert task["state"] == "succeeded"


async def _true(value: Any) -> Any:
    return value


async def _succeeded(admin: Any, task_id: str) -> dict[str, Any] | None:
    task = await admin.request("GET", f"/v1/tasks/{task_id}")
    return task if task["state"] == "succeeded" else None


async def test_a_stopping_zone_answers_its_waiting_polls_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping ends every agent poll held open (it answers with what it has), and a
    poll that comes after does not wait: a zone's shutdown never waits out a poll."""
    settings = zone_settings(tmp_path, None, agent_poll_max=60.0)
    async with InProcessZone(settings) as zone, zone.client("agent", AGENT_PASSWORD) as agent:
        await agent.whoami()
        reads = counting_reads(monkeypatch)
        polling = asyncio.create_task(agent.agent_commands("agent", wait=60))
        await _until(lambda: _true(reads), "the poll waits")
        assert not polling.done()
        zone.process.compute.ctx.signals.stop()
        assert await asyncio.wait_for(polling, 30) == []
        began = time.monotonic()
        assert await agent.agent_commands("agent", wait=60) == []
        assert time.monotonic() - began < 30  # not the 60 s it asked for


async def test_a_served_zone_stops_with_an_agent_poll_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`skyfed serve`'s server ends agent polls when it begins to stop, so the poll gets
    its (empty) answer instead of being cut off when the graceful shutdown runs out."""
    import uvicorn

    from skyfed.app import create_app
    from skyfed.cli.serve import ZoneServer
    from skyfed.client import SkyfedClient
    from skyfed.federation.process import free_port

    settings = zone_settings(tmp_path, None, agent_poll_max=60.0, port=free_port())
    app = create_app(settings)
    server = ZoneServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=settings.port,
            log_config=None,
            lifespan="on",
            # Shorter than the poll: without the wake-up it would be cut off.
            timeout_graceful_shutdown=2,
        ),
        on_stop=app.state.zone.compute.ctx.signals.stop,
    )
    serving = asyncio.create_task(server.serve())
    await _until(lambda: _true(server.started), "the zone serves")
    async with SkyfedClient(settings.url, username="agent", password=AGENT_PASSWORD) as agent:
        await agent.whoami()
        reads = counting_reads(monkeypatch)
        polling = asyncio.create_task(agent.agent_commands("agent", wait=60))
        await _until(lambda: _true(reads), "the poll waits")
        server.should_exit = True
        assert await asyncio.wait_for(polling, 30) == []
        await asyncio.wait_for(serving, 30)
