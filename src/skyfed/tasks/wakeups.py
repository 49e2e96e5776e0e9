"""Task wake-ups between a zone's processes over its broker.

A process that queues tasks tells the others at once instead of leaving them to
their next poll: one message on the fanout exchange `skyfed.zone.<name>.tasks`,
which every process of the zone (API and `skyfed worker`) reads through its own
exclusive queue (`skyfed.zone.<name>.tasks.<random>`: named, so the broker's
permissions can grant it to the zone's own user alone). The database stays the
truth: a wake-up only makes a worker claim sooner, and one that is lost (broker
away) costs at most a poll interval. Wake-ups queued while one is being sent go
out as one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection

from skyfed.tasks.store import TaskStore
from skyfed.transport.bus import connect_and_set_up
from skyfed.transport.names import wakeups_exchange_for

log = logging.getLogger("skyfed.tasks.wakeups")


class BusWakeups:
    def __init__(self, broker_url: str, zone: str, store: TaskStore) -> None:
        self.broker_url = broker_url
        self.exchange_name = wakeups_exchange_for(zone)
        self.store = store
        self.me = uuid.uuid4().hex  # our own wake-ups come back too: skip them
        self._exchange: AbstractExchange | None = None
        self._pending = False
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Connect (again and again until the broker answers), then listen until cancelled."""

        async def set_up(connection: AbstractRobustConnection) -> None:
            channel = await connection.channel(publisher_confirms=False)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.FANOUT, durable=True
            )
            queue = await channel.declare_queue(
                f"{self.exchange_name}.{uuid.uuid4().hex}", exclusive=True, auto_delete=True
            )
            await queue.bind(exchange)
            await queue.consume(self._on_wake, no_ack=True)
            self._exchange = exchange

        connection = await connect_and_set_up(self.broker_url, self.exchange_name, set_up)
        self.store.on_notify.append(self.wake)
        try:
            await asyncio.Event().wait()
        finally:
            self.store.on_notify.remove(self.wake)
            self._exchange = None
            await connection.close()

    async def _on_wake(self, message: AbstractIncomingMessage) -> None:
        if message.app_id != self.me:
            self.store.wakeup.set()

    def wake(self) -> None:
        if self._pending or self._exchange is None:
            return
        self._pending = True
        task = asyncio.get_running_loop().create_task(self._send())
        self._sending.add(task)  # a task nobody holds may be collected mid-run
        task.add_done_callback(self._sending.discard)

    async def _send(self) -> None:
        await asyncio.sleep(0)  # let the other notifies of this moment join this one
        self._pending = False
        exchange = self._exchange
        if exchange is None:
            return
        try:
            await exchange.publish(aio_pika.Message(b"", app_id=self.me), routing_key="")
        except Exception as exc:  # the broker is away: the others poll meanwhile
            log.debug("task wake-up not sent", extra={"error": str(exc)})
