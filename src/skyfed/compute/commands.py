"""Host commands: what the zone asks a host's agent to do, and what the agent answered.

A command stays pending (and is sent on every poll) until its result arrives.
Agents long-poll: a command added by this process wakes the poll at once; one
added by another process of the zone is found by reading the table again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.compute.models import HostCommand, Server
from skyfed.db.base import utcnow
from skyfed.db.engine import Database

PENDING = "pending"
DONE = "done"


class CommandSignals:
    """Per-agent and per-command wake-ups inside one process."""

    def __init__(self) -> None:
        self._agents: dict[str, asyncio.Event] = {}
        self._commands: dict[str, asyncio.Event] = {}

    def agent_event(self, agent: str) -> asyncio.Event:
        return self._agents.setdefault(agent, asyncio.Event())

    def new_command(self, agent: str) -> None:
        self.agent_event(agent).set()

    def command_event(self, command_id: str) -> asyncio.Event:
        return self._commands.setdefault(command_id, asyncio.Event())

    def command_done(self, command_id: str) -> None:
        event = self._commands.pop(command_id, None)
        if event is not None:
            event.set()


def server_payload(server: Server) -> dict[str, Any]:
    """What an agent needs to know of a server to run it."""
    return {
        "id": server.id,
        "name": server.name,
        "vcpus": server.vcpus,
        "ram_mb": server.ram_mb,
        "disk_gb": server.disk_gb,
        "metadata": server.meta,
    }


def build(*, origin: str, agent: str, host: str, server: Server, action: str) -> HostCommand:
    return HostCommand(
        origin=origin,
        agent=agent,
        host=host,
        server_id=server.id,
        action=action,
        payload=server_payload(server),
        state=PENDING,
    )


async def add(
    session: AsyncSession, *, origin: str, agent: str, host: str, server: Server, action: str
) -> HostCommand:
    """A command in the caller's transaction; the same origin never makes a second one."""
    existing = await session.scalar(select(HostCommand).where(HostCommand.origin == origin))
    if existing is not None:
        return existing
    command = build(origin=origin, agent=agent, host=host, server=server, action=action)
    session.add(command)
    await session.flush()
    return command


async def existing_origins(session: AsyncSession, origins: list[str]) -> set[str]:
    """Which of these origins already made a command (one read for a batch)."""
    if not origins:
        return set()
    found = await session.scalars(select(HostCommand.origin).where(HostCommand.origin.in_(origins)))
    return set(found)


async def pending(db: Database, agent: str, limit: int, after: int = 0) -> list[HostCommand]:
    """The agent's pending commands past `after` (the last `seq` it was given), oldest first."""
    async with db.session() as session:
        return list(
            (
                await session.scalars(
                    select(HostCommand)
                    .where(
                        HostCommand.agent == agent,
                        HostCommand.state == PENDING,
                        HostCommand.seq > after,
                    )
                    .order_by(HostCommand.seq)
                    .limit(limit)
                )
            ).all()
        )


async def poll(
    db: Database,
    signals: CommandSignals,
    agent: str,
    limit: int,
    wait: float,
    every: float = 0.25,
    after: int = 0,
    gather: float = 0.01,
) -> list[HostCommand]:
    """Pending commands of `agent` past `after`, waiting up to `wait` seconds for one.

    Woken by a new command, it lingers `gather` seconds so that a burst goes out in
    one answer rather than one poll per command.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    event = signals.agent_event(agent)
    while True:
        event.clear()
        commands = await pending(db, agent, limit, after)
        left = deadline - loop.time()
        if commands or left <= 0:
            return commands
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=min(every, left))
        if event.is_set():
            await asyncio.sleep(min(gather, max(deadline - loop.time(), 0)))


async def wait_done(
    db: Database, signals: CommandSignals, command_id: str, timeout: float, every: float = 0.25
) -> HostCommand | None:
    """The command once its result arrived, or None after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    event = signals.command_event(command_id)
    while True:
        async with db.session() as session:
            command = await session.scalar(select(HostCommand).where(HostCommand.id == command_id))
        if command is None or command.state == DONE:
            return command
        left = deadline - loop.time()
        if left <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=min(every, left))


def mark_done(command: HostCommand, result: dict[str, Any]) -> None:
    command.state = DONE
    command.result = result
    command.done_at = utcnow()
