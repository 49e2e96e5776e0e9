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


@pytest.fixture
def federation(tmp_path: Path) -> Callable[..., Any]:
    """`async with federation({...zones...}) as fed:` starts it, waits for coverage, stops it.

    Its state goes to `state_dir` when given (process servers must pass through it)."""

    @asynccontextmanager
    async def start(
        zones: list[dict[str, Any]], state_dir: Path | None = None, **defaults: Any
    ) -> AsyncIterator[Federation]:
        topology = parse_topology({"defaults": {**FAST, **defaults}, "zones": zones})
        # Its broker accounts go at the end too.
        fed = Federation(topology, state_dir or tmp_path / "fed", temporary=True)
        try:
            await fed.start()
            await fed.wait_covered(timeout=90)
            yield fed
        finally:
            stop_together(fed)

    return start


def stop_together(fed: Federation) -> None:
    """`fed.stop()`, with every process told to stop first: they stop side by side rather
    than one after another (each takes a few tenths of a second)."""
    for proc in [*fed.agents.values(), *fed.zones.values()]:
        if proc.running and proc.process is not None:
            proc.process.send_signal(signal.SIGCONT)  # a paused one cannot act on SIGTERM
            proc.process.send_signal(signal.SIGTERM)
    fed.stop()  # waits for each (killing one that does not stop), and cleans up
