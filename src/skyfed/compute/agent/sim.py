"""Simulated hosts: many in one process, described by groups in a spec file.

A group says how many hosts, their resources and capabilities; a list value is
spread over the group's hosts in turn, so one group can mix architectures or
sizes. `load` is the largest fraction of each resource a host already uses
(drawn per host, reproducibly from the seed): the baseline that "other"
workloads hold. A host's heartbeat reports that baseline plus what the agent's
driver runs on it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skyfed.zones.capabilities import Value, check_capabilities

RESOURCE_FIELDS = ("vcpus", "ram_mb", "disk_gb")


class SpecError(ValueError):
    pass


@dataclass(slots=True)
class SimHost:
    name: str
    capabilities: dict[str, Value]
    resources: dict[str, int]
    used: dict[str, int]  # the baseline load, without the servers a driver runs here

    def heartbeat(
        self, *, servers: Mapping[str, int] | None = None, agent: str | None = None
    ) -> dict[str, Any]:
        """The heartbeat body; `servers` is what the driver's servers use on this host."""
        used = self.used
        if servers:
            used = {k: v + servers.get(k, 0) for k, v in self.used.items()}
        beat: dict[str, Any] = {
            "name": self.name,
            "capabilities": self.capabilities,
            "resources": self.resources,
            "used": used,
        }
        if agent is not None:
            beat["agent"] = agent
        return beat


def _pick(value: Any, i: int) -> Any:
    if isinstance(value, list):
        if not value:
            raise SpecError("an empty list of choices")
        return value[i % len(value)]
    return value


def group_prefix(group: Mapping[str, Any], index: int, prefix: str) -> str:
    """What the names of a group's hosts start with (before `-00000`...): the group's
    own prefix, or `<prefix>-g<index>`."""
    return str(group.get("prefix", f"{prefix}-g{index}"))


def host_patterns(groups: Sequence[Mapping[str, Any]], *, prefix: str) -> list[str]:
    """Grant patterns covering exactly the groups' host names (`eu-dc1-std-*`)."""
    return sorted({f"{group_prefix(g, i, prefix)}-*" for i, g in enumerate(groups)})


def expand_groups(
    groups: Sequence[Mapping[str, Any]], *, prefix: str, seed: int = 0
) -> list[SimHost]:
    rng = random.Random(seed)
    hosts: list[SimHost] = []
    for g, group in enumerate(groups):
        unknown = set(group) - {"count", "prefix", "capabilities", "load", *RESOURCE_FIELDS}
        if unknown:
            raise SpecError(f"host group {g}: unknown keys {sorted(unknown)}")
        count = group.get("count", 1)
        if not isinstance(count, int) or not 0 <= count <= 1_000_000:
            raise SpecError(f"host group {g}: count must be 0..1000000")
        load = group.get("load", 0.0)
        if isinstance(load, bool) or not isinstance(load, int | float) or not 0.0 <= load <= 1.0:
            raise SpecError(f"host group {g}: load must be within 0..1")
        names = group_prefix(group, g, prefix)
        caps_spec = group.get("capabilities", {})
        for i in range(count):
            resources = {}
            for key in RESOURCE_FIELDS:
                value = _pick(group.get(key, 0), i)
                if not isinstance(value, int) or value < 0:
                    raise SpecError(f"host group {g}: {key} must be a non-negative integer")
                resources[key] = value
            try:
                caps = check_capabilities({k: _pick(v, i) for k, v in caps_spec.items()})
            except ValueError as exc:
                raise SpecError(f"host group {g}: {exc}") from exc
            share = rng.uniform(0, load)
            used = {k: int(v * share) for k, v in resources.items()}
            hosts.append(SimHost(f"{names}-{i:05d}", caps, resources, used))
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise SpecError("host names repeat; give each group its own prefix")
    return hosts
