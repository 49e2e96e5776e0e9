"""What an agent asks of a driver, and the pieces every driver shares.

A driver runs servers on the hosts one agent carries. Every action is
idempotent on the server id: booting a server the host already runs succeeds
without a second copy, stopping a stopped server succeeds, deleting an unknown
server succeeds. A failure raises `DriverError` with a message a person can act
on. A server that changes state on its own (its process exited) is announced on
the driver's `events` queue as `{"server_id", "status", "exit_code", "message"}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, runtime_checkable

from skyfed.compute.agent.sim import RESOURCE_FIELDS, SimHost

ACTIONS = ("boot", "stop", "start", "reboot", "delete")
ZERO = dict.fromkeys(RESOURCE_FIELDS, 0)


class DriverError(Exception):
    """An action failed; the message says why, for the person reading the server's status."""


class ServerEvent(TypedDict):
    server_id: str
    status: str
    exit_code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action left behind: the server's status (and exit code, once it exited)."""

    status: str
    exit_code: int | None = None
    message: str = ""


@runtime_checkable
class Driver(Protocol):
    """Runs servers on the hosts of one agent. `server` is the command's server body:
    `name`, `vcpus`, `ram_mb`, `disk_gb`, `metadata`."""

    name: str
    events: asyncio.Queue[ServerEvent]

    @property
    def hosts(self) -> Sequence[SimHost]: ...

    async def boot(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome: ...

    async def stop(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome: ...

    async def start(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome: ...

    async def reboot(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome: ...

    async def delete(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome: ...

    def used(self, host: str) -> dict[str, int]:
        """What this driver's servers use on `host` (without the host's baseline load)."""
        ...

    def status(self, server_id: str) -> str | None:
        """The server's status now, or None when the driver does not hold it."""
        ...

    async def open(self) -> None:
        """Before the first action: find what an earlier agent left (servers, processes)."""
        ...

    async def close(self, *, stop_servers: bool) -> None:
        """At the agent's end: stop every server, or leave them for the next agent."""
        ...


async def run_action(
    driver: Driver, action: str, host: str, server_id: str, server: Mapping[str, Any]
) -> Outcome:
    """Dispatch one command's action to the driver."""
    if action not in ACTIONS:
        raise DriverError(f"unknown action {action!r}; an agent knows {', '.join(ACTIONS)}")
    method = getattr(driver, action)
    outcome: Outcome = await method(host, server_id, server)
    return outcome


def need_of(server: Mapping[str, Any]) -> dict[str, int]:
    """The resources a server asks for; missing fields count as 0."""
    need: dict[str, int] = {}
    for key in RESOURCE_FIELDS:
        value = server.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DriverError(f"server {key} must be a non-negative integer, not {value!r}")
        need[key] = value
    return need


def _fmt(values: Mapping[str, int]) -> str:
    return " ".join(f"{k}={values[k]}" for k in RESOURCE_FIELDS)


class Ledger:
    """Capacity accounting per host: resources minus baseline load minus the servers' claims.

    A claim is taken synchronously (no await between the check and the take), so
    any number of concurrent boots never overcommit a host.
    """

    def __init__(self, hosts: Sequence[SimHost]) -> None:
        self.hosts = {h.name: h for h in hosts}
        self._used: dict[str, dict[str, int]] = {}  # only hosts that hold a server
        self._claims: dict[str, tuple[str, dict[str, int]]] = {}

    def host(self, name: str) -> SimHost:
        found = self.hosts.get(name)
        if found is None:
            some = ", ".join(sorted(self.hosts)[:3])
            more = f" and {len(self.hosts) - 3} more" if len(self.hosts) > 3 else ""
            raise DriverError(f"this agent does not carry host {name!r} (it carries {some}{more})")
        return found

    def free(self, host: str) -> dict[str, int]:
        h = self.host(host)
        used = self._used.get(host, ZERO)
        return {k: h.resources[k] - h.used[k] - used[k] for k in RESOURCE_FIELDS}

    def used(self, host: str) -> dict[str, int]:
        self.host(host)
        return dict(self._used.get(host, ZERO))

    def holder(self, server_id: str) -> str | None:
        claim = self._claims.get(server_id)
        return claim[0] if claim else None

    def claimed(self, server_id: str) -> dict[str, int]:
        claim = self._claims.get(server_id)
        return dict(claim[1]) if claim else dict(ZERO)

    def claim(self, host: str, server_id: str, need: Mapping[str, int]) -> None:
        held = self._claims.get(server_id)
        if held is not None:
            if held[0] != host:
                raise DriverError(f"server {server_id} already runs on {held[0]}, not {host}")
            return
        free = self.free(host)
        if any(need[k] > free[k] for k in RESOURCE_FIELDS):
            raise DriverError(
                f"insufficient capacity on {host}: need {_fmt(need)}, free {_fmt(free)}"
            )
        used = self._used.setdefault(host, dict(ZERO))
        for k in RESOURCE_FIELDS:
            used[k] += need[k]
        self._claims[server_id] = (host, dict(need))

    def release(self, server_id: str) -> None:
        held = self._claims.pop(server_id, None)
        if held is None:
            return
        used = self._used[held[0]]
        for k in RESOURCE_FIELDS:
            used[k] -= held[1][k]
        if not any(used.values()):
            del self._used[held[0]]


class KeyedLocks:
    """One lock per key (a server id), dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def publish(
    queue: asyncio.Queue[ServerEvent],
    server_id: str,
    status: str,
    exit_code: int | None,
    message: str,
) -> None:
    queue.put_nowait(
        {"server_id": server_id, "status": status, "exit_code": exit_code, "message": message}
    )
