"""The agent loop: beat for every host this process carries, batched, until told to stop.

A beat names the agent (the zone sends a host's commands to the agent that
carries it) and reports what the host uses: the spec's baseline load plus what
the driver's servers take (`used`, a callable host name -> resources).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.compute.agent.sim import SimHost

log = logging.getLogger(__name__)
BATCH = 1000

UsedBy = Callable[[str], Mapping[str, int]]


async def beat_once(
    client: SkyfedClient,
    hosts: Sequence[SimHost],
    *,
    agent: str | None = None,
    used: UsedBy | None = None,
) -> set[str]:
    """Send one heartbeat for every host; return the names the zone reports disabled."""
    disabled: set[str] = set()
    for start in range(0, len(hosts), BATCH):
        beats = [
            h.heartbeat(servers=used(h.name) if used else None, agent=agent)
            for h in hosts[start : start + BATCH]
        ]
        answer = await client.heartbeat_batch(beats)
        disabled.update(answer.disabled)
    return disabled


async def run(
    client: SkyfedClient,
    hosts: Sequence[SimHost],
    interval: float,
    stop: asyncio.Event,
    *,
    agent: str | None = None,
    used: UsedBy | None = None,
) -> None:
    """Beat every `interval` seconds (with jitter, so many agents do not beat in step)."""
    failures = 0
    while not stop.is_set():
        try:
            await beat_once(client, hosts, agent=agent, used=used)
            if failures:
                log.info("heartbeats reach the zone again", extra={"after_failures": failures})
            failures = 0
        except SkyfedError as exc:
            failures += 1
            log.warning("heartbeat failed", extra={"error": str(exc), "failures": failures})
        delay = interval * random.uniform(0.9, 1.1)
        if failures:
            delay = min(interval, 0.5 * 2 ** min(failures, 6))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
