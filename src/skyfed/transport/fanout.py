"""Notices between a zone's processes over its broker: one fanout exchange, heard by all.

Each process (API and `skyfed worker`) reads the exchange through its own
exclusive queue (`<exchange>.<32 hex>`: named, so the broker's permissions can
grant it to the zone's own user alone), so a notice published once reaches
every process of the zone; a process's own notices come back too and are
skipped. Notices are hints that
make a process look at the database sooner: the database stays the truth, and a
notice lost while the broker is away costs what the listener's own re-reads take.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection

from skyfed.transport.bus import connect_and_set_up
from skyfed.transport.names import notice_queue_for

log = logging.getLogger("skyfed.transport.fanout")


class Fanout:
    def __init__(self, broker_url: str, exchange: str, on_notice: Callable[[bytes], None]) -> None:
        self.broker_url = broker_url
        self.exchange_name = exchange
        self.on_notice = on_notice
        self.me = uuid.uuid4().hex
        self._exchange: AbstractExchange | None = None
        self._due = False
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self._exchange is not None

    async def run(self, started: Callable[[], None] = lambda: None) -> None:
        """Connect (again and again until the broker answers), call `started`, then
        listen until cancelled."""

        async def set_up(connection: AbstractRobustConnection) -> None:
            channel = await connection.channel(publisher_confirms=False)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.FANOUT, durable=True
            )
            queue = await channel.declare_queue(
                notice_queue_for(self.exchange_name), exclusive=True, auto_delete=True
            )
            await queue.bind(exchange)
            await queue.consume(self._on_message, no_ack=True)
            self._exchange = exchange

        connection = await connect_and_set_up(self.broker_url, self.exchange_name, set_up)
        started()
        try:
            await asyncio.Event().wait()
        finally:
            self._exchange = None
            await connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if message.app_id != self.me:
            self.on_notice(message.body)

    def publish_soon(self, body: Callable[[], bytes]) -> None:
        """One notice at the end of this moment for everything told in it: `body()`
        builds it then."""
        if self._due or self._exchange is None:
            return
        self._due = True
        task = asyncio.get_running_loop().create_task(self._publish_due(body))
        self._sending.add(task)  # a task nobody holds may be collected mid-run
        task.add_done_callback(self._sending.discard)

    async def _publish_due(self, body: Callable[[], bytes]) -> None:
        await asyncio.sleep(0)  # let the rest of this moment join
        self._due = False
        await self.publish(body())

    async def publish(self, body: bytes = b"") -> None:
        exchange = self._exchange
        if exchange is None:
            return
        try:
            await exchange.publish(aio_pika.Message(body, app_id=self.me), routing_key="")
        except Exception as exc:  # the broker is away: the listeners' re-reads cover it
            log.debug("notice not sent", extra={"exchange": self.exchange_name, "error": str(exc)})
