"""One agent: heartbeats, the command loop and the driver's events, until told to stop.

At the end, in order: stop polling and beating, give running commands
`drain_timeout` seconds to finish and post their results, close the driver
(stopping its servers when `stop_servers_on_exit`), then post the events that
left (bounded by `flush_timeout`).

A heartbeat's `used` is what other work takes on the host (the spec's baseline
load), not the zone's own servers: the zone counts those from its claims, so
reporting them too would count them twice (docs/compute.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.compute.agent import heartbeat
from skyfed.compute.agent.commands import CommandLoop, EventForwarder
from skyfed.compute.agent.driver import Driver

if TYPE_CHECKING:
    from skyfed.observability.tracing import Tracing

log = logging.getLogger(__name__)


class AgentRunner:
    def __init__(
        self,
        client: SkyfedClient,
        driver: Driver,
        name: str,
        *,
        interval: float = 10.0,
        poll_wait: int = 20,
        poll_limit: int = 100,
        concurrency: int = 64,
        stop_servers_on_exit: bool = False,
        drain_timeout: float = 5.0,
        flush_timeout: float = 3.0,
        beat_client: SkyfedClient | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """With `tracing`, each command runs in a span continuing the zone's trace."""
        self.client = client
        # Heartbeats may take another way to the zone than commands: its bus.
        self.beat_client = beat_client or client
        self.driver = driver
        self.name = name
        self.interval = interval
        self.stop_servers_on_exit = stop_servers_on_exit
        self.drain_timeout = drain_timeout
        self.flush_timeout = flush_timeout
        self.commands = CommandLoop(
            client,
            driver,
            name,
            wait=poll_wait,
            limit=poll_limit,
            concurrency=concurrency,
            tracing=tracing,
        )
        self.events = EventForwarder(client, driver, name, self.commands)

    async def run(self, stop: asyncio.Event) -> None:
        await self.driver.open()
        loops = [
            asyncio.create_task(
                heartbeat.run(
                    self.beat_client,
                    self.driver.hosts,
                    self.interval,
                    stop,
                    agent=self.name,
                    used=None,
                ),
                name="heartbeats",
            ),
            asyncio.create_task(self.commands.run(stop), name="commands"),
            asyncio.create_task(self.events.run(stop), name="events"),
        ]
        log.info(
            "agent running",
            extra={"agent": self.name, "driver": self.driver.name, "hosts": len(self.driver.hosts)},
        )
        try:
            # Every loop runs until `stop`; one that ends sooner failed, and ends the others.
            await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            for task in loops:
                task.cancel()  # commands already running are their own tasks: they drain below
            await asyncio.gather(*loops, return_exceptions=True)
            await self.shutdown()
        for task in loops:
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"agent loop {task.get_name()} failed") from task.exception()

    async def shutdown(self) -> None:
        await self.commands.drain(self.drain_timeout)
        await self.driver.close(stop_servers=self.stop_servers_on_exit)
        try:
            await asyncio.wait_for(self.events.flush(), timeout=self.flush_timeout)
        except (TimeoutError, SkyfedError) as exc:
            log.warning(
                "events not delivered at shutdown",
                extra={"error": str(exc) or type(exc).__name__, "count": len(self.events.pending)},
            )
