"""Agent-command wake-ups between a zone's processes over its broker.

A command committed by one process (a `skyfed worker` placing a server) must
wake the poll its agent holds open on another (an API process), and a result
committed by an API process must wake the task waiting for it on a worker. Each
process tells the others on the fanout exchange `skyfed.zone.<name>.commands`
(transport/fanout.py): which agents have new commands and which commands were
answered, everything of one moment in one notice. Waiters read the database
when woken; a notice lost while the broker is away is made up by their slow
re-read (Settings.poll_reread).
"""

from __future__ import annotations

import json
import logging

from skyfed.compute.commands import CommandSignals
from skyfed.transport.fanout import Fanout
from skyfed.transport.names import commands_exchange_for

log = logging.getLogger(__name__)
MAX_NAMES = 10_000  # per notice and kind: a burst beyond wakes the rest by re-read


class CommandWakeups:
    def __init__(self, broker_url: str, zone: str, signals: CommandSignals) -> None:
        self.signals = signals
        self.fanout = Fanout(broker_url, commands_exchange_for(zone), self._on_notice)
        self._agents: set[str] = set()
        self._commands: set[str] = set()

    async def run(self) -> None:
        """Connect (again and again until the broker answers), then listen until cancelled."""
        try:
            await self.fanout.run(started=lambda: self.signals.outbound.append(self.tell))
        finally:
            if self.tell in self.signals.outbound:
                self.signals.outbound.remove(self.tell)

    def tell(self, agent: str | None, command_id: str | None) -> None:
        if agent is not None:
            self._agents.add(agent)
        if command_id is not None:
            self._commands.add(command_id)
        self.fanout.publish_soon(self._notice)  # what else this moment tells joins it

    def _notice(self) -> bytes:
        agents, self._agents = sorted(self._agents)[:MAX_NAMES], set()
        commands, self._commands = sorted(self._commands)[:MAX_NAMES], set()
        return json.dumps({"agents": agents, "commands": commands}).encode()

    def _on_notice(self, body: bytes) -> None:
        try:
            notice = json.loads(body)
            agents, commands = notice["agents"], notice["commands"]
        except (ValueError, TypeError, KeyError) as exc:
            log.debug("bad command wake-up ignored", extra={"error": str(exc)})
            return
        for agent in agents[:MAX_NAMES] if isinstance(agents, list) else ():
            if isinstance(agent, str):
                self.signals.wake_agent(agent)
        for command_id in commands[:MAX_NAMES] if isinstance(commands, list) else ():
            if isinstance(command_id, str):
                self.signals.wake_command(command_id)
