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

from skyfed.tasks.store import TaskStore
from skyfed.transport.fanout import Fanout
from skyfed.transport.names import wakeups_exchange_for


class BusWakeups:
    def __init__(self, broker_url: str, zone: str, store: TaskStore) -> None:
        self.store = store
        self.fanout = Fanout(broker_url, wakeups_exchange_for(zone), self._on_wake)

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
        self.fanout.publish_soon(lambda: b"")
