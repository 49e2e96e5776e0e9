"""What the tasks feature keeps for a zone process: the store, its workers, its wake-ups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from skyfed.background import stop
from skyfed.core import Core
from skyfed.tasks.metrics import TaskMetrics
from skyfed.tasks.store import TaskStore
from skyfed.tasks.wakeups import BusWakeups
from skyfed.tasks.worker import Worker


class TaskEngine:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.store = TaskStore(core.db, max_attempts=core.settings.task_max_attempts)
        self.metrics = TaskMetrics(core.metrics, self.store)
        self.worker: Worker | None = None  # while the zone runs, when it has workers

    @asynccontextmanager
    async def lifespan(self, api: bool) -> AsyncIterator[None]:
        """Run the kinds every feature registered on the store (so this starts last), and
        hear the zone's other processes queue tasks when the zone has a broker."""
        settings = self.core.settings
        background: list[asyncio.Task[None]] = []
        self.metrics.zero(self.store.kinds)
        if settings.workers > 0:
            self.worker = Worker(
                self.store,
                self.store.kinds,
                concurrency=settings.workers,
                lease=settings.task_lease,
                poll_interval=settings.task_poll_interval,
                sweep_interval=settings.task_sweep_interval,
                tracing=self.core.tracing,
                metrics=self.metrics,
            )
            background.append(asyncio.create_task(self.worker.run(), name="worker"))
        if settings.bus_url.startswith("amqp"):
            wakeups = BusWakeups(settings.bus_url, settings.name, self.store)
            background.append(asyncio.create_task(wakeups.run(), name="task-wakeups"))
        try:
            yield
        finally:
            await stop(background)
            self.worker = None
