"""Host commands: what the zone asks a host's agent to do, and what the agent answered.

A command stays pending (and is sent on every poll) until its result arrives.
Agents long-poll, and an idle poll costs nothing: it waits on a wake-up, not on
the database. A command added, or answered, by this process wakes its waiters at
once; one added or answered by another process of the zone wakes them over the
zone's bus (command_wakeups.py). Only where a wake-up can be lost (a broker
away) or cannot come at all (several processes, no bus) does a waiter read the
table again, every `reread` seconds (Settings.poll_reread).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed import trace_hooks
from skyfed.compute.models import HostCommand, Server
from skyfed.db.base import utcnow
from skyfed.db.engine import Database

PENDING = "pending"
DONE = "done"
# Tells the zone's other processes: (agent with a new command, or None; command
# answered, or None).
Outbound = Callable[[str | None, str | None], None]


class CommandSignals:
    """Per-agent and per-command wake-ups: this process's waiters, and (through
    `outbound`, when the zone has a bus) the other processes' ones."""

    def __init__(self) -> None:
        self._agents: dict[str, asyncio.Event] = {}
        self._commands: dict[str, asyncio.Event] = {}
        self.outbound: list[Outbound] = []
        self.stopping = False

    def stop(self) -> None:
        """The process is stopping: every agent poll answers now with what it has, and
        later ones do not wait (a long poll must not hold up the shutdown)."""
        self.stopping = True
        for event in self._agents.values():
            event.set()

    def agent_event(self, agent: str) -> asyncio.Event:
        return self._agents.setdefault(agent, asyncio.Event())

    def new_command(self, agent: str) -> None:
        """A command for `agent` was committed here."""
        self.wake_agent(agent)
        for tell in self.outbound:
            tell(agent, None)

    def wake_agent(self, agent: str) -> None:
        """Wake this process's polls of `agent` (only agents polled here have an event)."""
        event = self._agents.get(agent)
        if event is not None:
            event.set()

    def command_event(self, command_id: str) -> asyncio.Event:
        return self._commands.setdefault(command_id, asyncio.Event())

    def command_done(self, command_id: str) -> None:
        """A command's result was committed here."""
        self.wake_command(command_id)
        for tell in self.outbound:
            tell(None, command_id)

    def wake_command(self, command_id: str) -> None:
        event = self._commands.pop(command_id, None)
        if event is not None:
            event.set()

    def forget_command(self, command_id: str, event: asyncio.Event) -> None:
        """A waiter gave up on `event`: drop it, unless a newer waiter holds another."""
        if self._commands.get(command_id) is event:
            del self._commands[command_id]


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


def build(
    *,
    origin: str,
    agent: str,
    host: str,
    server: Server,
    action: str,
    traceparent: str | None = None,
) -> HostCommand:
    """A command that continues `traceparent`, by default the trace being served (the
    task's that makes it): the agent's run of it joins that trace."""
    return HostCommand(
        origin=origin,
        agent=agent,
        host=host,
        server_id=server.id,
        action=action,
        payload=server_payload(server),
        state=PENDING,
        traceparent=traceparent or trace_hooks.traceparent(),
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


async def _woken(event: asyncio.Event, timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=timeout)
    return event.is_set()


async def poll(
    db: Database,
    signals: CommandSignals,
    agent: str,
    limit: int,
    wait: float,
    *,
    reread: float | None = None,
    after: int = 0,
    gather: float = 0.01,
) -> list[HostCommand]:
    """Pending commands of `agent` past `after`, waiting up to `wait` seconds for one.

    It reads the table when it starts, when woken and, with `reread`, every
    `reread` seconds; at most `wait` seconds in all. Woken by a new command, it
    lingers `gather` seconds so that a burst goes out in one answer rather than
    one poll per command.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    event = signals.agent_event(agent)
    while True:
        event.clear()
        commands = await pending(db, agent, limit, after)
        left = deadline - loop.time()
        if commands or left <= 0 or signals.stopping:
            return commands
        if await _woken(event, left if reread is None else min(reread, left)):
            await asyncio.sleep(min(gather, max(deadline - loop.time(), 0)))


async def wait_done(
    db: Database,
    signals: CommandSignals,
    command_id: str,
    timeout: float,
    *,
    reread: float | None = None,
) -> HostCommand | None:
    """The command once its result arrived, or None after `timeout`; reads the table
    at the start, when woken, and every `reread` seconds when given."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        # Made before the read, so a result committed after it still wakes this wait;
        # a new one each round, since a wake-up hands its event over.
        event = signals.command_event(command_id)
        try:
            async with db.session() as session:
                command = await session.scalar(
                    select(HostCommand).where(HostCommand.id == command_id)
                )
            if command is None or command.state == DONE:
                return command
            left = deadline - loop.time()
            if left <= 0:
                return None
            await _woken(event, left if reread is None else min(reread, left))
        finally:
            signals.forget_command(command_id, event)


def mark_done(command: HostCommand, result: dict[str, Any]) -> None:
    command.state = DONE
    command.result = result
    command.done_at = utcnow()
