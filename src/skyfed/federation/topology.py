"""A federation described in one TOML file: zones, who their parents are, and their hosts (pure).

[defaults]                  # settings for every zone (any zone setting)
poll_interval = 2.0
heartbeat_interval = 5.0    # for the simulated host agents

[[zones]]
name = "global"

[[zones]]
name = "eu"
parents = ["global"]        # several parents are allowed
capabilities = { region = "eu" }
settings = { database_url = "postgresql+asyncpg://..." }
link = "amqp"               # how its parents call it: "http" (default) or "amqp"

In any zone's database_url, `{zone}` stands for the zone's name; a PostgreSQL
database so named is created when missing. `links = "amqp"` in [defaults] sets
the link of every zone; a zone linked over AMQP needs an amqp:// bus_url.

[[zones.hosts]]             # simulated hosts of the zone above (see compute/agent/sim.py)
count = 300
vcpus = [32, 64]
ram_mb = 131072
capabilities = { arch = ["x86_64", "arm64"] }
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyfed.compute.agent.sim import SimHost, SpecError, expand_groups
from skyfed.settings import NAME_PATTERN

_ZONE_KEYS = {
    "name",
    "parents",
    "capabilities",
    "hosts",
    "settings",
    "port",
    "agent",
    "link",
    "storage",
}
_TIER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
LINKS = ("http", "amqp")
# Options of the zone's host agent (`skyfed agent --<option>`), with their types.
AGENT_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "driver": str,
    "boot_delay": (int, float),
    "jitter": (int, float),
    "failure_rate": (int, float),
    "seed": int,
    "stop_grace": (int, float),
    "server_uid_base": int,
    "server_uid_count": int,
    "server_max_processes": int,
    "server_max_open_files": int,
    "cgroups": bool,
    "cgroup_parent": str,
    "insecure_shared_user": bool,
}


class TopologyError(ValueError):
    pass


@dataclass(frozen=True)
class StorageSpec:
    """A Swift cluster of a zone: its name, its tiers (each a storage policy of the same
    name on the cluster) and the capacity it is registered with."""

    name: str
    tiers: tuple[str, ...]
    capacity_gb: float


@dataclass
class ZoneSpec:
    name: str
    parents: list[str] = field(default_factory=list)
    capabilities: dict[str, Any] = field(default_factory=dict)
    host_groups: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    port: int | None = None
    # Options of its host agent: driver (sim or process), boot_delay, failure_rate ...
    agent: dict[str, Any] = field(default_factory=dict)
    link: str = "http"  # how its parents call it
    # Swift clusters `skyfed up` runs beside the zone and registers with it.
    storage: list[StorageSpec] = field(default_factory=list)

    def hosts(self) -> list[SimHost]:
        return expand_groups(self.host_groups, prefix=self.name, seed=hash_name(self.name))


def hash_name(name: str) -> int:
    """A seed that is stable across runs (str hash is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name))


@dataclass
class Topology:
    zones: dict[str, ZoneSpec]
    defaults: dict[str, Any] = field(default_factory=dict)
    heartbeat_interval: float = 5.0

    def roots(self) -> list[str]:
        return [name for name, zone in self.zones.items() if not zone.parents]

    def children(self, name: str) -> list[str]:
        return [z.name for z in self.zones.values() if name in z.parents]

    def host_count(self, name: str) -> int:
        return sum(int(g.get("count", 1)) for g in self.zones[name].host_groups)

    def subtree_hosts(self, name: str) -> int:
        """Hosts a zone's summary covers: its own plus every child's subtree."""
        return self.host_count(name) + sum(self.subtree_hosts(c) for c in self.children(name))

    def walk(self, name: str, depth: int = 0) -> Iterator[tuple[int, str]]:
        yield depth, name
        for child in self.children(name):
            yield from self.walk(child, depth + 1)

    def order_children_first(self) -> list[str]:
        done: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            for child in self.children(name):
                visit(child)
            done.append(name)

        for root in self.roots():
            visit(root)
        return done


def load_topology(path: Path | str) -> Topology:
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TopologyError(f"cannot read topology {path}: {exc}") from exc
    return parse_topology(data)


def parse_topology(data: dict[str, Any]) -> Topology:
    unknown = set(data) - {"defaults", "zones"}
    if unknown:
        raise TopologyError(f"unknown top-level keys {sorted(unknown)}")
    defaults = _table(data.get("defaults", {}), "defaults")
    heartbeat_interval = defaults.pop("heartbeat_interval", 5.0)
    if isinstance(heartbeat_interval, bool) or not isinstance(heartbeat_interval, int | float):
        raise TopologyError("heartbeat_interval must be a number of seconds")
    heartbeat_interval = float(heartbeat_interval)
    default_link = defaults.pop("links", "http")
    if default_link not in LINKS:
        raise TopologyError(f"links must be one of {list(LINKS)}")
    if not heartbeat_interval > 0:
        raise TopologyError("heartbeat_interval must be positive")
    zones: dict[str, ZoneSpec] = {}
    for i, raw in enumerate(data.get("zones", [])):
        if not isinstance(raw, dict):
            raise TopologyError(f"zones[{i}] must be a table")
        extra = set(raw) - _ZONE_KEYS
        if extra:
            raise TopologyError(f"zones[{i}]: unknown keys {sorted(extra)}")
        name = raw.get("name")
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            raise TopologyError(f"zones[{i}]: a name of letters, digits and ._- is required")
        if name in zones:
            raise TopologyError(f"zone '{name}' is listed twice")
        parents = raw.get("parents", [])
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise TopologyError(f"zone '{name}': parents must be a list of zone names")
        hosts = raw.get("hosts", [])
        if not isinstance(hosts, list) or not all(isinstance(g, dict) for g in hosts):
            raise TopologyError(f"zone '{name}': hosts must be a list of tables")
        port = raw.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise TopologyError(f"zone '{name}': port must be an integer")
        link = raw.get("link", default_link)
        if link not in LINKS:
            raise TopologyError(f"zone '{name}': link must be one of {list(LINKS)}")
        zones[name] = ZoneSpec(
            name=name,
            parents=list(parents),
            capabilities=_table(raw.get("capabilities", {}), f"zone '{name}': capabilities"),
            host_groups=list(hosts),
            settings=_table(raw.get("settings", {}), f"zone '{name}': settings"),
            port=port,
            agent=_agent_options(raw.get("agent", {}), name),
            link=link,
            storage=_storage(raw.get("storage", []), name),
        )
    if not zones:
        raise TopologyError("a topology needs at least one zone")
    clusters = [c.name for zone in zones.values() for c in zone.storage]
    if len(set(clusters)) != len(clusters):
        raise TopologyError("storage cluster names must be unique across the federation")
    for zone in zones.values():
        for parent in zone.parents:
            if parent not in zones:
                raise TopologyError(f"zone '{zone.name}' names unknown parent '{parent}'")
            if parent == zone.name:
                raise TopologyError(f"zone '{zone.name}' cannot be its own parent")
        try:
            zone.hosts()
        except SpecError as exc:
            raise TopologyError(f"zone '{zone.name}': {exc}") from exc
    topology = Topology(zones=zones, defaults=defaults, heartbeat_interval=heartbeat_interval)
    _check_acyclic(topology)
    return topology


def _storage(value: Any, zone: str) -> list[StorageSpec]:
    if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
        raise TopologyError(f"zone '{zone}': storage must be a list of tables")
    clusters = []
    for raw in value:
        extra = set(raw) - {"name", "tiers", "capacity_gb"}
        if extra:
            raise TopologyError(f"zone '{zone}': storage: unknown keys {sorted(extra)}")
        name = raw.get("name")
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            raise TopologyError(f"zone '{zone}': a storage cluster needs a name")
        tiers = raw.get("tiers", ["gold", "silver"])
        if (
            not isinstance(tiers, list)
            or not tiers
            or not all(isinstance(t, str) and _TIER.fullmatch(t) for t in tiers)
        ):
            raise TopologyError(f"zone '{zone}': cluster '{name}': tiers must name tiers")
        capacity = raw.get("capacity_gb", 100)
        if isinstance(capacity, bool) or not isinstance(capacity, int | float) or capacity <= 0:
            raise TopologyError(f"zone '{zone}': cluster '{name}': capacity_gb must be positive")
        clusters.append(StorageSpec(name, tuple(tiers), float(capacity)))
    return clusters


def _table(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TopologyError(f"{what} must be a table")
    return dict(value)


def _agent_options(raw: Any, zone: str) -> dict[str, Any]:
    options = _table(raw, f"zone '{zone}': agent")
    for key, value in options.items():
        expected = AGENT_OPTIONS.get(key)
        if expected is None:
            raise TopologyError(f"zone '{zone}': unknown agent option '{key}'")
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            raise TopologyError(f"zone '{zone}': agent option '{key}' has the wrong type")
    if options.get("driver", "sim") not in ("sim", "process"):
        raise TopologyError(f"zone '{zone}': agent driver must be sim or process")
    return options


def _check_acyclic(topology: Topology) -> None:
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise TopologyError(f"zones form a cycle: {' > '.join([*path, name])}")
        state[name] = 1
        for child in topology.children(name):
            visit(child, [*path, name])
        state[name] = 2

    for name in topology.zones:
        visit(name, [])
    if not topology.roots():
        raise TopologyError("no root zone (every zone has a parent)")
    _check_single_paths(topology)


def _check_single_paths(topology: Topology) -> None:
    """A zone reached twice from one root would be counted twice in that root's summary."""
    for root in topology.roots():
        seen: set[str] = set()
        for _, name in topology.walk(root):
            if name in seen:
                raise TopologyError(
                    f"zone '{name}' is reached from root '{root}' by two paths; "
                    "its hosts would be counted twice (several parents are for several roots)"
                )
            seen.add(name)
