"""Task wake-ups between a zone's processes over its broker.

A process that queues tasks tells the others at once instead of leaving them to
their next poll: one notice on the fanout exchange `skyfed.zone.<name>.tasks`
(transport/fanout.py), which every process of the zone (API and `skyfed
worker`) hears through a queue of its own named for the exchange (so the
broker's permissions can grant it to the zone's own user alone). The database
stays the truth: a wake-up only makes a worker
claim sooner, and one that is lost (broker away) costs at most a poll interval.
Wake-ups queued while one is being sent go out as one.
"""

from __future__ import annotations

import asyncio

from skyfed.tasks.store import TaskStore
from skyfed.transport.fanout import Fanout
from skyfed.transport.names import wakeups_exchange_for


class BusWakeups:
    def __init__(self, broker_url: str, zone: str, store: TaskStore) -> None:
        self.store = store
        self.fanout = Fanout(broker_url, wakeups_exchange_for(zone), self._on_wake)
        self._pending = False
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def exchange_name(self) -> str:
        return self.fanout.exchange_name

    async def run(self) -> None:
        """Connect (again and again until the broker answers), then listen until cancelled."""
        try:
            await self.fanout.run(started=lambda: self.store.on_notify.append(self.wake))
        finally:
            if self.wake in self.store.on_notify:
                self.store.on_notify.remove(self.wake)

    def _on_wake(self, _: bytes) -> None:
        self.store.wakeup.set()

    def wake(self) -> None:
        if self._pending or not self.fanout.ready:
            return
        self._pending = True
        task = asyncio.get_running_loop().create_task(self._send())
        self._sending.add(task)  # a task nobody holds may be collected mid-run
        task.add_done_callback(self._sending.discard)

    async def _send(self) -> None:
        await asyncio.sleep(0)  # let the other notifies of this moment join this one
        self._pending = False
        await self.fanout.publish()
