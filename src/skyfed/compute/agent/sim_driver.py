"""The `sim` driver: simulated servers on many simulated hosts, in one process.

Capacity is accounted for real per host (its resources, minus the spec's
baseline `load`, minus the servers it holds; a stopped server keeps its
resources), so a boot that does not fit fails. A boot takes `boot_delay`
seconds (give or take `jitter`, a fraction) and fails with probability
`failure_rate`; stop, start and reboot take `action_delay`. Every draw comes
from one RNG seeded with `seed`, taken before the action's first await, so a
given order of calls gives the same outcomes every run.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skyfed.compute.agent.driver import (
    DriverError,
    KeyedLocks,
    Ledger,
    Outcome,
    ServerEvent,
    need_of,
    publish,
)
from skyfed.compute.agent.sim import SimHost


@dataclass(slots=True)
class SimServer:
    host: str
    status: str  # BUILDING, ACTIVE, STOPPED


class SimDriver:
    name = "sim"

    def __init__(
        self,
        hosts: Sequence[SimHost],
        *,
        boot_delay: float = 0.0,
        jitter: float = 0.5,
        action_delay: float | None = None,
        failure_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        if boot_delay < 0 or not 0.0 <= jitter <= 1.0:
            raise ValueError("boot_delay must be >= 0 and jitter within 0..1")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be within 0..1")
        self._hosts = list(hosts)
        self.ledger = Ledger(self._hosts)
        self.boot_delay = boot_delay
        self.jitter = jitter
        self.action_delay = boot_delay / 4 if action_delay is None else action_delay
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)
        self.servers: dict[str, SimServer] = {}
        self.events: asyncio.Queue[ServerEvent] = asyncio.Queue()
        self._locks = KeyedLocks()

    @property
    def hosts(self) -> Sequence[SimHost]:
        return self._hosts

    def _delay(self, base: float) -> float:
        if base <= 0:
            return 0.0
        return base * self.rng.uniform(1 - self.jitter, 1 + self.jitter)

    def _held(self, host: str, server_id: str) -> SimServer:
        server = self.servers.get(server_id)
        if server is None:
            self.ledger.host(host)  # an unknown host is the clearer error
            raise DriverError(
                f"server {server_id} is not on {host} (it was never booted here, or the agent "
                "restarted and lost its simulated servers); delete it and create it again"
            )
        if server.host != host:
            raise DriverError(f"server {server_id} runs on {server.host}, not {host}")
        return server

    async def boot(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        need = need_of(server)
        async with self._locks.hold(server_id):
            known = self.servers.get(server_id)
            if known is not None:
                if known.host != host:
                    raise DriverError(
                        f"server {server_id} already runs on {known.host}, not {host}"
                    )
                return Outcome(known.status)
            # Draw before the first await: the outcome depends on call order only.
            delay = self._delay(self.boot_delay)
            fails = self.rng.random() < self.failure_rate
            self.ledger.claim(host, server_id, need)
            record = SimServer(host, "BUILDING")
            self.servers[server_id] = record
            try:
                if delay:
                    await asyncio.sleep(delay)
            except BaseException:
                self._forget(server_id)
                raise
            if fails:
                self._forget(server_id)
                raise DriverError(
                    f"simulated boot failure on {host} (failure rate {self.failure_rate:g})"
                )
            record.status = "ACTIVE"
            return Outcome("ACTIVE")

    async def _change(self, host: str, server_id: str, status: str) -> Outcome:
        async with self._locks.hold(server_id):
            record = self._held(host, server_id)
            delay = self._delay(self.action_delay)
            if delay:
                await asyncio.sleep(delay)
            record.status = status
            return Outcome(status)

    async def stop(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        return await self._change(host, server_id, "STOPPED")

    async def start(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        return await self._change(host, server_id, "ACTIVE")

    async def reboot(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        return await self._change(host, server_id, "ACTIVE")

    async def delete(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        async with self._locks.hold(server_id):
            record = self.servers.get(server_id)
            if record is not None:
                if record.host != host:
                    raise DriverError(f"server {server_id} runs on {record.host}, not {host}")
                delay = self._delay(self.action_delay)
                if delay:
                    await asyncio.sleep(delay)
                self._forget(server_id)
            return Outcome("DELETED")

    def _forget(self, server_id: str) -> None:
        self.servers.pop(server_id, None)
        self.ledger.release(server_id)

    def crash(self, server_id: str, message: str = "simulated crash") -> None:
        """A fault for tests: the server stops on its own, as a process that exits would."""
        record = self.servers.get(server_id)
        if record is None or record.status != "ACTIVE":
            return
        record.status = "STOPPED"
        publish(self.events, server_id, "STOPPED", None, message)

    def used(self, host: str) -> dict[str, int]:
        return self.ledger.used(host)

    def status(self, server_id: str) -> str | None:
        record = self.servers.get(server_id)
        return record.status if record else None

    async def open(self) -> None:
        """Simulated servers start from nothing."""

    async def close(self, *, stop_servers: bool) -> None:
        """Simulated servers live only in this process; nothing to leave behind."""
