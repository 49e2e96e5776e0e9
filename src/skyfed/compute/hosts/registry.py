"""Hosts a zone knows from their heartbeats; kept in memory, no database row needed.

A host exists while it beats. Silent for `ttl` seconds it is offline (listed, but
out of the summary); silent for `forget_after` it is forgotten. Whether an admin
disabled it is the only thing persisted (see service.py), and is applied here.
Each record names the agent carrying it (carriers.py decides who may), and the
registry counts the hosts of each agent for its cap.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from skyfed.zones.capabilities import Value
from skyfed.zones.summary import FREE_KEYS, RESOURCE_KEYS

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Resources:
    vcpus: int = 0
    ram_mb: int = 0
    disk_gb: int = 0


@dataclass(slots=True)
class HostRecord:
    name: str
    capabilities: dict[str, Value]
    resources: Resources
    used: Resources
    beat_at: float  # registry clock (monotonic)
    seen_at: datetime  # wall clock, for people
    disabled: bool = False
    disabled_reason: str = ""
    agent: str | None = None
    # Capabilities plus resource totals and free amounts: what summaries and filters read.
    values: dict[str, Value] = field(default_factory=dict)
    free: tuple[int, int, int] = (0, 0, 0)
    # What this zone placed on the host (its servers); `used` is what other work uses.
    allocated: tuple[int, int, int] = (0, 0, 0)
    # What this process's placements chose the host for and are claiming right now.
    held: tuple[int, int, int] = (0, 0, 0)

    def refresh(self) -> None:
        r, u, a, h = self.resources, self.used, self.allocated, self.held
        self.free = (
            max(r.vcpus - u.vcpus - a[0] - h[0], 0),
            max(r.ram_mb - u.ram_mb - a[1] - h[1], 0),
            max(r.disk_gb - u.disk_gb - a[2] - h[2], 0),
        )
        values: dict[str, Value] = dict(self.capabilities)
        values.update(zip(RESOURCE_KEYS, (r.vcpus, r.ram_mb, r.disk_gb), strict=True))
        values.update(zip(FREE_KEYS, self.free, strict=True))
        self.values = values


def _interned(capabilities: Mapping[str, Value]) -> dict[str, Value]:
    """Share one copy of each key and string value ("arch", "x86_64") across all hosts."""
    return {
        sys.intern(k): sys.intern(v) if isinstance(v, str) else v for k, v in capabilities.items()
    }


class HostRegistry:
    def __init__(self, ttl: float, forget_after: float, clock: Clock = time.monotonic) -> None:
        self.ttl = ttl
        self.forget_after = max(forget_after, ttl)
        self.clock = clock
        self._hosts: dict[str, HostRecord] = {}
        self._disabled: dict[str, str] = {}  # name -> reason, as persisted
        self._allocated: dict[str, tuple[int, int, int]] = {}
        # Counts this process's own changes to allocations; a host's entry in `_changed`
        # is the count at its latest one. A snapshot read before that must not undo it.
        self.allocation_changes = 0
        self._changed: dict[str, int] = {}
        # Room held for claims under way: by claim key (a server id), and summed per host.
        self._holds: dict[str, tuple[str, tuple[int, int, int]]] = {}
        self._held: dict[str, tuple[int, int, int]] = {}
        # Bumped when the set of hosts or an admin's choice changes (not on a plain beat):
        # a cached summary is rebuilt at once after those, and after its max age otherwise.
        self.version = 0
        self._sorted: tuple[int, list[str]] | None = None
        # Hosts that beat here since the last share (other processes of the zone read them).
        self.unshared: set[str] = set()
        self._carried: dict[str, int] = {}  # agent -> how many hosts name it

    def heartbeat(
        self,
        name: str,
        capabilities: Mapping[str, Value],
        resources: Resources,
        used: Resources,
        agent: str | None = None,
        *,
        seen_at: datetime | None = None,
    ) -> HostRecord:
        """A beat received here, or (with `seen_at`) one another process received then."""
        record = self._hosts.get(name)
        now = self.clock()
        wall = datetime.now(UTC)
        if seen_at is None:
            self.unshared.add(name)
            seen_at, beat_at = wall, now
        else:
            if record is not None and record.seen_at >= seen_at:
                return record  # we know a newer beat already
            beat_at = now - max((wall - seen_at).total_seconds(), 0.0)
        if record is None:
            record = HostRecord(
                name=name,
                capabilities=_interned(capabilities),
                resources=resources,
                used=used,
                beat_at=beat_at,
                seen_at=seen_at,
            )
            self._hosts[name] = record
            self.version += 1
        else:
            record.capabilities = _interned(capabilities)
            record.resources = resources
            record.used = used
            record.beat_at = beat_at
            record.seen_at = seen_at
        self._set_agent(record, agent)
        record.allocated = self._allocated.get(name, (0, 0, 0))
        record.held = self._held.get(name, (0, 0, 0))
        reason = self._disabled.get(name)
        record.disabled = reason is not None
        record.disabled_reason = reason or ""
        record.refresh()
        return record

    def _set_agent(self, record: HostRecord, agent: str | None) -> None:
        old = record.agent
        if old == agent:
            return
        if old is not None:
            left = self._carried.get(old, 0) - 1
            if left > 0:
                self._carried[old] = left
            else:
                self._carried.pop(old, None)
        if agent is not None:
            self._carried[agent] = self._carried.get(agent, 0) + 1
        record.agent = agent

    def set_carrier(self, name: str, agent: str | None) -> None:
        """Who carries a known host, as the zone's shared record says (a release, or
        another process won the host first); its beat and place in the summary stay."""
        record = self._hosts.get(name)
        if record is not None:
            self._set_agent(record, agent)

    def carrier(self, name: str) -> str | None:
        record = self._hosts.get(name)
        return record.agent if record is not None else None

    def carried_by(self, agent: str) -> int:
        """How many known hosts `agent` carries (for its cap)."""
        return self._carried.get(agent, 0)

    def names_carried_by(self, agent: str) -> list[str]:
        return sorted(r.name for r in self._hosts.values() if r.agent == agent)

    def set_allocations(
        self, allocated: Mapping[str, tuple[int, int, int]], *, read_after: int | None = None
    ) -> None:
        """What this zone's servers hold on each host, as the database said.

        `read_after` is `allocation_changes` from before the read began: a host this
        process changed since keeps its value (the read may predate that change; the
        next read brings any other process's change on it).
        """
        kept = {}
        if read_after is not None:
            kept = {
                host: self._allocated.get(host, (0, 0, 0))
                for host, seq in self._changed.items()
                if seq > read_after
            }
        self._allocated = {**allocated, **kept}
        self._changed = {h: seq for h, seq in self._changed.items() if h in kept}
        for record in self._hosts.values():
            new = self._allocated.get(record.name, (0, 0, 0))
            if new != record.allocated:
                record.allocated = new
                record.refresh()

    def set_allocation(self, host: str, totals: tuple[int, int, int]) -> None:
        """What one host holds as this process just read it, its own claims included."""
        self.allocation_changes += 1
        self._changed[host] = self.allocation_changes
        self._allocated[host] = totals
        record = self._hosts.get(host)
        if record is not None and record.allocated != totals:
            record.allocated = totals
            record.refresh()

    def add_allocation(self, host: str, vcpus: int, ram_mb: int, disk_gb: int) -> None:
        """Apply a claim (or, negative, a release) made by this process at once."""
        old = self._allocated.get(host, (0, 0, 0))
        self.set_allocation(host, (old[0] + vcpus, old[1] + ram_mb, old[2] + disk_gb))

    def hold(self, key: str, host: str, need: tuple[int, int, int]) -> None:
        """Take room on a host for a claim about to be made (assume and deduct): the
        decisions made before it commits see the host that much fuller, so a burst
        spreads over the hosts instead of piling onto the one that looked best."""
        self.release(key)
        self._holds[key] = (host, need)
        self._add_held(host, need, 1)

    def release(self, key: str) -> None:
        """Give back what `hold` took (once; again does nothing): the claim is settled."""
        holding = self._holds.pop(key, None)
        if holding is not None:
            self._add_held(*holding, -1)

    def _add_held(self, host: str, need: tuple[int, int, int], sign: int) -> None:
        old = self._held.get(host, (0, 0, 0))
        new = (old[0] + sign * need[0], old[1] + sign * need[1], old[2] + sign * need[2])
        if new == (0, 0, 0):
            self._held.pop(host, None)
        else:
            self._held[host] = new
        record = self._hosts.get(host)
        if record is not None:
            record.held = new
            record.refresh()

    def load_disabled(self, disabled: Mapping[str, str]) -> None:
        self._disabled = dict(disabled)
        for record in self._hosts.values():
            reason = self._disabled.get(record.name)
            record.disabled = reason is not None
            record.disabled_reason = reason or ""
        self.version += 1

    def set_disabled(self, name: str, disabled: bool, reason: str = "") -> None:
        if disabled:
            self._disabled[name] = reason
        else:
            self._disabled.pop(name, None)
        record = self._hosts.get(name)
        if record is not None:
            record.disabled = disabled
            record.disabled_reason = reason if disabled else ""
        self.version += 1

    def is_online(self, record: HostRecord, now: float | None = None) -> bool:
        return (self.clock() if now is None else now) - record.beat_at < self.ttl

    def get(self, name: str) -> HostRecord | None:
        return self._hosts.get(name)

    def is_disabled(self, name: str) -> bool:
        return name in self._disabled

    def known(self, name: str) -> bool:
        return name in self._hosts or name in self._disabled

    def online(self) -> Iterator[HostRecord]:
        now = self.clock()
        ttl = self.ttl
        return (r for r in self._hosts.values() if now - r.beat_at < ttl)

    def sorted_names(self) -> list[str]:
        """Host names in order, kept until the set of hosts changes (for paging)."""
        if self._sorted is None or self._sorted[0] != self.version:
            self._sorted = (self.version, sorted(self._hosts))
        return self._sorted[1]

    def all(self) -> list[HostRecord]:
        return list(self._hosts.values())

    def expire(self) -> int:
        """Forget long-silent hosts; return how many went."""
        now = self.clock()
        gone = [n for n, r in self._hosts.items() if now - r.beat_at >= self.forget_after]
        for name in gone:
            self._set_agent(self._hosts[name], None)
            del self._hosts[name]
        if gone:
            self.version += 1
        return len(gone)

    def __len__(self) -> int:
        return len(self._hosts)
