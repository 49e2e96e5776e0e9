"""The `amqp` link: calls to a child as RPC over the child's own RabbitMQ broker.

The parent connects to the broker URL it was given for the child (no broker
federation or Shovel between sites), publishes each call to the child's durable
queue with publisher confirms, and waits on its own reply queue for the answer
with the same correlation id. Everything above the bytes (login, identity
headers, error mapping, bounded retries) is the `http` link's: this module is an
httpx transport, so an AMQP call is the same request with another carrier.

A broker restart: the connection and channel come back on their own (aio-pika's
robust connection, which also redeclares the reply queue), and every call still
waiting is published again under its own message id, which the child answers
from what it already did. A reply that arrives twice is counted and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from yarl import URL

from skyfed.errors import error_body
from skyfed.logs import request_id
from skyfed.transport.envelope import (
    HOP_LIMIT,
    RECONNECT_INTERVAL,
    Envelope,
    carried_headers,
    current_hops,
    current_route,
    text,
)
from skyfed.transport.http import HttpLink

log = logging.getLogger("skyfed.transport.amqp")

FAILURE_MEMORY = 1.0  # seconds a failed connect is answered from memory
ANSWERED_KEPT = 10_000

# What a broken connection looks like while it is being restored.
_CONNECTION_LOST = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    RuntimeError,  # aio-pika: "Connection closed" / channel not opened
)


@dataclass
class _Call:
    message: aio_pika.Message
    answer: asyncio.Future[tuple[int, dict[str, str], bytes]]
    sent: int = 0  # how many times it was published
    resend_due: bool = False  # the connection came back while it waited
    wake: asyncio.Future[None] | None = None  # the caller waiting for either

    def poke(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


@dataclass
class LinkStats:
    resent: int = 0  # calls published again after the connection came back
    duplicate_replies: int = 0  # second answers to one call, dropped


class AmqpTransport(httpx.AsyncBaseTransport):
    """httpx requests to one queue on one broker, answered on a reply queue."""

    def __init__(
        self,
        broker_url: str,
        queue: str,
        *,
        origin: str = "",
        hop_limit: int = HOP_LIMIT,
        connect_timeout: float = 5.0,
    ) -> None:
        self.broker_url = broker_url
        self.queue = queue
        self.origin = origin
        self.hop_limit = hop_limit
        self.connect_timeout = connect_timeout
        self.stats = LinkStats()
        self._calls: dict[str, _Call] = {}
        self._connection: AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._reply_queue = f"skyfed.reply.{origin or 'client'}.{uuid.uuid4().hex}"
        self._connecting: asyncio.Task[aio_pika.abc.AbstractChannel] | None = None
        self._failed_at = -FAILURE_MEMORY
        self._failure = ""
        self._closed = False
        # Calls answered lately: a second answer to one of them is a duplicate.
        self._answered: OrderedDict[str, None] = OrderedDict()

    async def _connected(self, deadline: float) -> aio_pika.abc.AbstractChannel:
        """The channel; concurrent callers share one attempt to connect, each within its
        own deadline, and a failure is remembered for a moment so a burst of calls to
        a broker that is down fails fast instead of queueing connect attempts."""
        if self._channel is not None:
            return self._channel
        if self._closed:
            raise httpx.ConnectError("the link is closed")
        if time.monotonic() - self._failed_at < FAILURE_MEMORY:
            raise httpx.ConnectError(self._failure)
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect())
            self._connecting.add_done_callback(_retrieve)
        try:
            return await asyncio.wait_for(
                asyncio.shield(self._connecting), max(0.001, deadline - time.monotonic())
            )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"broker {without_password(self.broker_url)}: no connection in time"
            ) from exc

    async def _connect(self) -> aio_pika.abc.AbstractChannel:
        connection: AbstractRobustConnection | None = None
        try:
            connection = aio_pika.RobustConnection(
                URL(self.broker_url),
                reconnect_interval=RECONNECT_INTERVAL,
                client_properties={"connection_name": f"skyfed {self.origin}->{self.queue}"},
            )
            await connection.connect(timeout=self.connect_timeout)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            replies = await channel.declare_queue(
                self._reply_queue, exclusive=True, auto_delete=True
            )
            await replies.consume(self._on_reply, no_ack=True)
        except asyncio.CancelledError:  # the link closed meanwhile: stop its reconnecting
            if connection is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.close())
            raise
        except (TimeoutError, OSError, RuntimeError, aiormq.exceptions.AMQPError) as exc:
            reason = str(exc) or type(exc).__name__
            self._failed_at = time.monotonic()
            self._failure = f"broker {without_password(self.broker_url)}: {reason}"
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
            raise httpx.ConnectError(self._failure) from exc
        if self._closed:  # closed while connecting: nobody will use or close it
            await connection.close()
            raise httpx.ConnectError("the link is closed")
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection, self._channel = connection, channel
        return channel

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        budget = timeouts.get("read") or timeouts.get("pool") or 10.0
        deadline = time.monotonic() + budget
        hops = current_hops.get() + 1
        if hops > self.hop_limit:
            body = error_body(
                "loop_detected",
                f"the call crossed {hops - 1} zone links (limit {self.hop_limit}); "
                f"route {' > '.join(current_route.get())}",
            )
            return httpx.Response(508, json=body, request=request)
        route = (*current_route.get(), self.origin) if self.origin else current_route.get()
        target = request.url.raw_path.decode("ascii")
        envelope = Envelope(
            method=request.method,
            target=target,
            headers=carried_headers(request.headers),
            route=route,
            hops=hops,
            hop_limit=self.hop_limit,
            deadline=time.time() + budget,
            request_id=request.headers.get("x-request-id", request_id.get()),
        )
        loop = asyncio.get_running_loop()
        call_id = uuid.uuid4().hex
        call = _Call(
            message=aio_pika.Message(
                await request.aread(),
                headers=envelope.to_headers(),
                content_type=request.headers.get("content-type"),
                message_id=call_id,
                correlation_id=call_id,
                reply_to=self._reply_queue,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                expiration=budget,  # the broker drops it once nobody waits
            ),
            answer=loop.create_future(),
        )
        self._calls[call_id] = call
        try:
            async with asyncio.timeout(budget):
                channel = await self._connected(deadline)
                await self._publish(channel, call, deadline)
                while not call.answer.done():  # published again when the connection is back
                    if call.resend_due:
                        call.resend_due = False
                        self.stats.resent += 1
                        await self._publish(channel, call, deadline)
                        continue
                    call.wake = loop.create_future()
                    await call.wake
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer on {self.queue} within {budget:g}s") from exc
        finally:
            self._calls.pop(call_id, None)
            if call.answer.done():
                self._answered[call_id] = None
                if len(self._answered) > ANSWERED_KEPT:
                    self._answered.popitem(last=False)
        status, headers, content = call.answer.result()
        return httpx.Response(status, headers=headers, content=content, request=request)

    async def _publish(
        self, channel: aio_pika.abc.AbstractChannel, call: _Call, deadline: float
    ) -> None:
        """Publish until the broker confirms, waiting out reconnects (the deadline bounds it)."""
        while True:
            call.message.expiration = max(0.001, deadline - time.monotonic())
            try:
                await channel.default_exchange.publish(call.message, routing_key=self.queue)
                call.sent += 1
                return
            except aiormq.exceptions.PublishError as exc:
                raise httpx.ConnectError(
                    f"no zone consumes queue {self.queue} on {without_password(self.broker_url)}"
                ) from exc
            except aiormq.exceptions.DeliveryError as exc:  # nack: the broker could not keep it
                log.warning("broker refused a call; sending again", extra={"error": str(exc)})
            except _CONNECTION_LOST:
                pass
            await self._wait_for_connection()

    async def _wait_for_connection(self) -> None:
        connection = self._connection
        if connection is None or self._closed:
            raise httpx.ConnectError("the link is closed")
        await asyncio.sleep(0.05)
        await connection.connected.wait()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        call = self._calls.get(message.correlation_id or "")
        if call is None:  # answered before, or its caller gave up
            if (message.correlation_id or "") in self._answered:
                self.stats.duplicate_replies += 1
            return None
        if call.answer.done():
            self.stats.duplicate_replies += 1
            return None
        headers = message.headers or {}
        try:
            status = int(headers.get("x-status", 502))  # type: ignore[arg-type]
            carried = {str(k): text(v) for k, v in dict(headers.get("x-headers") or {}).items()}  # type: ignore[arg-type]
        except (TypeError, ValueError):
            status, carried = 502, {}
        call.answer.set_result((status, carried, message.body))
        call.poke()
        return None

    def _on_reconnect(self, *_: Any) -> None:
        """The broker is back: replies sent while it was away are gone; ask again."""
        waiting = [c for c in self._calls.values() if not c.answer.done() and c.sent]
        if waiting:
            log.info("broker back; sending waiting calls again", extra={"calls": len(waiting)})
        for call in waiting:
            call.resend_due = True
            call.poke()

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            # Wait for it: a robust connection cancelled mid-connect keeps reconnecting
            # until it is closed, which its task does on the way out.
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connecting
        for call in self._calls.values():
            if not call.answer.done():
                call.answer.set_exception(httpx.ConnectError("the link was closed"))
                _retrieve(call.answer)  # its caller may be elsewhere (publishing) and not read it
                call.poke()
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = None


class AmqpLink(HttpLink):
    """A child reached through its broker; the child's API, carried as messages."""

    kind = "amqp"

    def __init__(
        self,
        broker_url: str,
        queue: str,
        *,
        username: str | None,
        password: str | None,
        origin: str = "",
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.1,
    ) -> None:
        self.transport = AmqpTransport(broker_url, queue, origin=origin)
        super().__init__(
            base_url_for(queue),
            username=username,
            password=password,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            transport=self.transport,
            max_connections=None,  # no pool to wait for: every call is its own message
        )

    async def aclose(self) -> None:
        await super().aclose()
        await self.transport.aclose()


def base_url_for(queue: str) -> str:
    """httpx needs a base URL; over AMQP only the path and query travel."""
    return f"http://{queue}.amqp"


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (whoever needs it reads it separately)."""
    if not future.cancelled():
        future.exception()


def without_password(url: str) -> str:
    """The broker URL without its credentials, for messages and display."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
