"""Which heartbeats a zone takes, and from whom (pure: the registry is read, never changed).

A batch is taken whole or refused whole, so a refusal changes nothing:

1. 403 `agent_mismatch`: an agent's beat names another agent (the field is set
   from the caller; an admin may name one).
2. 403 `host_not_granted`: an agent beats for a host its grant does not cover.
3. 422 `host_out_of_bounds`: resources beyond the zone's `host_max_*`, or a
   `used` beyond the resources.
4. 409 `host_carried`: the host is carried by another agent (carriers.py says
   when a host is carried and how it changes hands).
5. 409 `zone_host_limit` / `agent_host_limit`: the beat would bring the zone past
   `max_hosts` known hosts, or the agent past its grant's `max_hosts`. A 409, not
   a 422: the beat itself is well formed and is taken again once hosts are
   forgotten, released or the cap raised; hosts already known keep beating.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from skyfed.compute.hosts.grants import HostGrant
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.hosts.schemas import HeartbeatIn, ResourcesIn
from skyfed.errors import Conflict, Forbidden, Invalid
from skyfed.settings import Settings

SHOWN = 5  # names a refusal lists before "and N more"


@dataclass(frozen=True, slots=True)
class BeatLimits:
    max_vcpus: int
    max_ram_mb: int
    max_disk_gb: int
    max_hosts: int  # in the zone

    @classmethod
    def of(cls, settings: Settings) -> BeatLimits:
        return cls(
            settings.host_max_vcpus,
            settings.host_max_ram_mb,
            settings.host_max_disk_gb,
            settings.max_hosts,
        )


@dataclass(frozen=True, slots=True)
class Caller:
    """Who beats: an agent with its grant, or an admin (no grant; may name an agent)."""

    name: str
    grant: HostGrant | None

    @property
    def is_agent(self) -> bool:
        return self.grant is not None


@dataclass(slots=True)
class Screened:
    """A batch that passed checks 1 to 3."""

    agent: str | None  # the agent the beats are for
    # Hosts this process believes another agent carries (check 4): the caller asks
    # the shared record (carriers.reconcile), screens again and refuses what is left.
    contested: dict[str, str] = field(default_factory=dict)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown if len(names) <= SHOWN else f"{shown} and {len(names) - SHOWN} more"


def beat_agent(caller: Caller, named: Iterable[str | None]) -> str | None:
    """The agent a batch is for: an agent's own name (a beat may repeat it, never name
    another); for an admin, the one agent its beats name, or none."""
    names = set(named)
    if caller.is_agent:
        others = sorted(n for n in names if n is not None and n != caller.name)
        if others:
            raise Forbidden(
                f"agent '{caller.name}' cannot beat as agent {_listed(others)}: "
                "a beat's agent is its caller",
                code="agent_mismatch",
            )
        return caller.name
    if len(names) > 1:
        raise Invalid("the beats of one batch name different agents", code="validation_error")
    return next(iter(names), None)


def check_bounds(name: str, beat: HeartbeatIn, limits: BeatLimits) -> None:
    r, u = beat.resources, beat.used
    if (
        r.vcpus <= limits.max_vcpus
        and r.ram_mb <= limits.max_ram_mb
        and r.disk_gb <= limits.max_disk_gb
        and u.vcpus <= r.vcpus
        and u.ram_mb <= r.ram_mb
        and u.disk_gb <= r.disk_gb
    ):
        return  # the usual case, without building a message
    problems = [
        f"{key} {value} is more than this zone takes ({limit})"
        for key, value, limit in (
            ("vcpus", r.vcpus, limits.max_vcpus),
            ("ram_mb", r.ram_mb, limits.max_ram_mb),
            ("disk_gb", r.disk_gb, limits.max_disk_gb),
        )
        if value > limit
    ]
    problems += [f"used {key} exceeds its total" for key in _over(u, r)]
    if problems:
        raise Invalid(f"host '{name}': {'; '.join(problems)}", code="host_out_of_bounds")


def _over(used: ResourcesIn, total: ResourcesIn) -> list[str]:
    return [
        key
        for key, u, t in (
            ("vcpus", used.vcpus, total.vcpus),
            ("ram_mb", used.ram_mb, total.ram_mb),
            ("disk_gb", used.disk_gb, total.disk_gb),
        )
        if u > t
    ]


def screen(
    registry: HostRegistry,
    limits: BeatLimits,
    caller: Caller,
    beats: Sequence[tuple[str, HeartbeatIn]],
) -> Screened:
    """Checks 1 to 3, and the hosts another agent carries as this process sees it (4)."""
    agent = beat_agent(caller, (beat.agent for _, beat in beats))
    if caller.grant is not None:
        refused = caller.grant.uncovered(name for name, _ in beats)
        if refused:
            why = (
                "not in its grant: see GET /v1/agents/{name}"
                if caller.grant.patterns
                else "its grant covers no host: see GET /v1/agents/{name}"
            )
            raise Forbidden(
                f"agent '{caller.name}' may not carry host {_listed(refused)} ({why})",
                code="host_not_granted",
            )
    for name, beat in beats:
        check_bounds(name, beat, limits)
    screened = Screened(agent)
    for name, _ in beats:
        holder = registry.carrier(name)
        if holder is not None and holder != agent:
            screened.contested[name] = holder
    return screened


def refuse_carried(held: Mapping[str, str]) -> None:
    """Check 4, on the hosts still contested once the shared record was read."""
    if held:
        name = sorted(held)[0]
        more = f" (and {len(held) - 1} more hosts of this batch)" if len(held) > 1 else ""
        raise Conflict(
            f"host '{name}' is carried by agent '{held[name]}'{more}; an admin hands it "
            f"over with POST /v1/hosts/{name}/release",
            code="host_carried",
            details={"hosts": dict(sorted(held.items())[:100])},
        )


def check_caps(
    registry: HostRegistry, limits: BeatLimits, caller: Caller, agent: str | None, names: list[str]
) -> list[str]:
    """Check 5; returns the hosts this batch makes `agent` carry anew."""
    unknown = sum(1 for name in set(names) if registry.get(name) is None)
    if unknown and len(registry) + unknown > limits.max_hosts:
        raise Conflict(
            f"this zone knows {len(registry)} hosts and takes at most {limits.max_hosts} "
            f"(max_hosts): {unknown} new hosts refused",
            code="zone_host_limit",
        )
    taken = sorted({name for name in names if registry.carrier(name) != agent})
    if agent is None:
        return []
    if caller.grant is not None and taken:
        carried = registry.carried_by(agent)
        if carried + len(taken) > caller.grant.max_hosts:
            raise Conflict(
                f"agent '{agent}' carries {carried} hosts and may carry at most "
                f"{caller.grant.max_hosts} (its grant's max_hosts): {len(taken)} new hosts "
                "refused",
                code="agent_host_limit",
            )
    return taken
