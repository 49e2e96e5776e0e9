"""Real federations for integration tests: zone processes on loopback, linked and beating."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from skyfed.federation.launcher import Federation
from skyfed.federation.topology import parse_topology
from tests.conftest import CHEAP_HASHING

FAST = {
    "poll_interval": 0.75,
    "poll_timeout": 0.75,
    "poll_failures": 3,
    "host_ttl": 5.0,
    "heartbeat_interval": 1.0,
    **CHEAP_HASHING,
}

pytestmark = pytest.mark.integration


def hosts(count: int, prefix: str, **extra: Any) -> dict[str, Any]:
    group = {
        "count": count,
        "prefix": prefix,
        "vcpus": [8, 16, 32],
        "ram_mb": [16384, 65536],
        "disk_gb": 500,
        "load": 0.5,
        "capabilities": {"arch": ["x86_64", "arm64"], "ssd": [0, 1], "rack": ["r1", "r2"]},
    }
    group.update(extra)
    return group


@asynccontextmanager
async def running(
    zones: list[dict[str, Any]], state_dir: Path, **defaults: Any
) -> AsyncIterator[Federation]:
    """A federation of `zones` (FAST, unless `defaults` say otherwise), started, covering
    all its hosts; stopped at the end, its state and broker accounts removed."""
    topology = parse_topology({"defaults": {**FAST, **defaults}, "zones": zones})
    fed = Federation(topology, state_dir, temporary=True)
    try:
        await fed.start()
        await fed.wait_covered(timeout=90)
        yield fed
    finally:
        stop_together(fed)


@pytest.fixture
def federation(tmp_path: Path) -> Callable[..., Any]:
    """`async with federation({...zones...}) as fed:` starts it, waits for coverage, stops it.

    Its state goes to `state_dir` when given (process servers must pass through it)."""

    def start(zones: list[dict[str, Any]], state_dir: Path | None = None, **defaults: Any) -> Any:
        return running(zones, state_dir or tmp_path / "fed", **defaults)

    return start


def stop_together(fed: Federation) -> None:
    """`fed.stop()`, with every process told to stop first: they stop side by side rather
    than one after another (each takes a few tenths of a second)."""
    for proc in [*fed.agents.values(), *fed.zones.values()]:
        if proc.running and proc.process is not None:
            proc.process.send_signal(signal.SIGCONT)  # a paused one cannot act on SIGTERM
            proc.process.send_signal(signal.SIGTERM)
    fed.stop()  # waits for each (killing one that does not stop), and cleans up
