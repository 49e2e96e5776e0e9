"""Simulated hosts for the benches: pools like the example federation, their heartbeats,
and a HostRegistry fed with them the way a zone's heartbeat route feeds it.

`skyfed bench summary` builds its zone from these, and so does each of its fake
children (`skyfed.bench.fake_children`); `skyfed bench placement` reuses the pools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skyfed.compute.agent.heartbeat import BATCH
from skyfed.compute.agent.sim import SimHost, expand_groups
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.hosts.schemas import HeartbeatBatchIn
from skyfed.compute.hosts.service import apply_batch
from skyfed.settings import Settings

RACK_SIZE = 40  # hosts per rack: a big zone has more racks than a summary keeps values
DISABLED_EVERY = 200  # every 200th host is disabled by an admin
OFFLINE_EVERY = 100  # every 100th host (offset by half) stopped beating


class BenchError(RuntimeError):
    """A bench whose two sides disagree, or whose setup failed; its figures mean nothing."""


# Pools like examples/federation.toml: (name, share of the zone, resources, capabilities).
POOLS: list[tuple[str, float, dict[str, Any], dict[str, Any]]] = [
    (
        "std",
        0.40,
        {"vcpus": [32, 48, 64], "ram_mb": [131072, 196608, 262144], "disk_gb": [1000, 2000]},
        {
            "arch": "x86_64",
            "ssd": 1,
            "gpu": 0,
            "hw:generation": [6, 7],
            "cpu_model": ["icelake", "sapphirerapids"],
            "numa_nodes": 2,
            "nic_gbps": 25,
        },
    ),
    (
        "gpu",
        0.10,
        {"vcpus": 96, "ram_mb": 786432, "disk_gb": 4000},
        {
            "arch": "x86_64",
            "ssd": 1,
            "gpu": 8,
            "gpu_model": ["a100", "h100"],
            "hw:generation": 8,
            "cpu_model": "sapphirerapids",
            "numa_nodes": 2,
            "nic_gbps": 100,
        },
    ),
    (
        "arm",
        0.20,
        {"vcpus": [64, 128], "ram_mb": [262144, 524288], "disk_gb": 1000},
        {
            "arch": "arm64",
            "ssd": 1,
            "gpu": 0,
            "hw:generation": 2,
            "cpu_model": "neoverse-v1",
            "numa_nodes": 1,
            "nic_gbps": 25,
        },
    ),
    (
        "hdd",
        0.10,
        {"vcpus": 16, "ram_mb": 65536, "disk_gb": 12000},
        {
            "arch": "x86_64",
            "ssd": 0,
            "gpu": 0,
            "hw:generation": 5,
            "cpu_model": "skylake",
            "numa_nodes": 1,
            "nic_gbps": 10,
        },
    ),
    (
        "mem",
        0.15,
        {"vcpus": [64, 96], "ram_mb": [524288, 1048576], "disk_gb": 2000},
        {
            "arch": "x86_64",
            "ssd": 1,
            "gpu": 0,
            "hw:generation": [7, 8],
            "cpu_model": ["icelake", "sapphirerapids"],
            "numa_nodes": [2, 4],
            "nic_gbps": 25,
        },
    ),
    (
        "arm-small",
        0.05,
        {"vcpus": 80, "ram_mb": 262144, "disk_gb": 1000},
        {
            "arch": "arm64",
            "ssd": 1,
            "gpu": 0,
            "hw:generation": 3,
            "cpu_model": "ampere-altra",
            "numa_nodes": 1,
            "nic_gbps": 25,
        },
    ),
]
_LOADS = {"std": 0.8, "gpu": 0.5, "arm": 0.6, "hdd": 0.9, "mem": 0.7, "arm-small": 0.4}


def zone_hosts(count: int, *, prefix: str, seed: int = 0) -> list[SimHost]:
    """`count` simulated hosts in the pools above, each with its rack and pod."""
    groups = []
    left = count
    for i, (pool, share, resources, caps) in enumerate(POOLS):
        n = left if i == len(POOLS) - 1 else min(left, round(count * share))
        left -= n
        racks = max(1, -(-n // RACK_SIZE))
        groups.append(
            {
                "prefix": f"{prefix}-{pool}",
                "count": n,
                "load": _LOADS[pool],
                **resources,
                "capabilities": {
                    **caps,
                    "rack": [f"{prefix}-{pool}-r{r:04d}" for r in range(racks)],
                    "pod": [f"{prefix}-p{p}" for p in range(8)],
                },
            }
        )
    return expand_groups(groups, prefix=prefix, seed=seed)


class ManualClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_registry() -> HostRegistry:
    defaults = Settings.model_fields
    return HostRegistry(
        defaults["host_ttl"].default, defaults["host_forget_after"].default, clock=ManualClock()
    )


@dataclass(slots=True)
class Heartbeats:
    """Heartbeat batches as the agent sends them (JSON), and which hosts an admin disabled."""

    offline: list[bytes] = field(default_factory=list)  # beat once, then fell silent
    online: list[bytes] = field(default_factory=list)
    disabled: dict[str, str] = field(default_factory=dict)


def heartbeats(hosts: Sequence[SimHost]) -> Heartbeats:
    beats = Heartbeats()
    offline = [h for i, h in enumerate(hosts) if i % OFFLINE_EVERY == OFFLINE_EVERY // 2]
    online = [h for i, h in enumerate(hosts) if i % OFFLINE_EVERY != OFFLINE_EVERY // 2]
    for group, out in ((offline, beats.offline), (online, beats.online)):
        for start in range(0, len(group), BATCH):
            batch = [h.heartbeat() for h in group[start : start + BATCH]]
            out.append(json.dumps({"hosts": batch}).encode())
    beats.disabled = {h.name: "bench: bad DIMM" for h in hosts[::DISABLED_EVERY]}
    return beats


def fill_registry(registry: HostRegistry, beats: Heartbeats | Sequence[SimHost]) -> None:
    """Feed heartbeats the way the zone's batch route does: JSON, validation, the service
    (as admitted beats: who may send them is not what this measures)."""
    if not isinstance(beats, Heartbeats):
        beats = heartbeats(beats)
    clock = registry.clock
    if not isinstance(clock, ManualClock):
        raise BenchError("fill_registry needs a registry made by new_registry()")
    registry.load_disabled(beats.disabled)
    for bodies, now in ((beats.offline, 0.0), (beats.online, 2 * registry.ttl)):
        clock.now = now
        for body in bodies:
            apply_batch(registry, HeartbeatBatchIn.model_validate(json.loads(body)))
