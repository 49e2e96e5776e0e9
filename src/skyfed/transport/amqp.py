"""The `amqp` link: calls to a child as RPC over the child's own RabbitMQ broker.

The parent connects to the broker URL it was given for the child (no broker
federation or Shovel between sites), publishes each call to the child's durable
queue with publisher confirms, and waits on its own reply queue for the answer
with the same correlation id. Everything above the bytes (identity headers, error
mapping, bounded retries) is `HttpLink`'s: this module is an httpx transport that
the link holds (`amqp_link`), so an AMQP call is the same request with another
carrier.

Under load, calls safe to repeat that queue up while the link's last publishes
await their confirms leave together as one message (`envelope.CALLS_TYPE`), and the child
answers calls finished together in one reply: per call, the broker and the AMQP
codec then cost a fraction of what one message each did. An idle link sends a
call at once, alone.

A broker restart: the connection and channel come back on their own (aio-pika's
robust connection, which also redeclares the reply queue), and every call still
waiting is published again under its own id, which the child answers from what
it already did. A reply that arrives twice is counted and dropped.

Calls are signed with the link account's key and answers must be signed with it
(`signing.py`); no token travels. Calls go to the zone's exchange (parents:
`skyfed.calls`, agents: `skyfed.agents`), never the default one, and answers
come back on a reply queue named for the account (`names.py`), which the broker
lets only that account declare and read. An answer whose signature does not
verify is dropped and counted, and the call waits on for the genuine one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from yarl import URL

from skyfed.coalesce import Coalescer
from skyfed.identity.link_keys import derive_link_key
from skyfed.logs import request_id
from skyfed.transport.envelope import (
    ANSWERS_TYPE,
    CALLS_TYPE,
    HOP_LIMIT,
    RECONNECT_INTERVAL,
    Envelope,
    EnvelopeError,
    carried_headers,
    current_hops,
    current_route,
    pack,
    text,
    unpack,
)
from skyfed.transport.http import HttpLink
from skyfed.transport.names import CALLS_EXCHANGE, reply_queue_for
from skyfed.transport.signing import (
    ACCOUNT_HEADER,
    SIGNATURE_HEADER,
    SigningError,
    answer_signature,
    call_signature,
    same,
)
from skyfed.wire import IDEMPOTENT, REQUEST_ID, error_body

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


# Calls per message at most, and publishes awaiting their confirms at once: calls
# arriving meanwhile wait and make the next message.
MAX_BATCH = 64
PUBLISHES_IN_FLIGHT = 2
BATCH_BODY_LIMIT = 256 * 1024  # a call with a larger body travels alone


@dataclass
class _Call:
    call_id: str
    envelope: Envelope
    body: bytes
    content_type: str | None
    deadline: float  # time.monotonic() when the caller gives up
    answer: asyncio.Future[tuple[int, dict[str, str], bytes]]
    sent: int = 0  # how many times it was published
    resend_due: bool = False  # the connection came back while it waited
    wake: asyncio.Future[None] | None = None  # the caller waiting for either
    signature: str = ""
    dropped: int = 0  # answers to it whose signature did not verify
    dropped_said: str = ""  # what the last of them claimed, for the timeout's message

    def poke(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


@dataclass
class LinkStats:
    resent: int = 0  # calls published again after the connection came back
    messages: int = 0  # messages published (a batch of calls is one)
    duplicate_replies: int = 0  # second answers to one call, dropped
    disconnects: int = 0  # times the broker connection was lost (and then restored)
    disconnected_at: float | None = None  # time.perf_counter() of the last loss
    forged_answers: int = 0  # answers unsigned or wrongly signed, dropped


class AmqpTransport(httpx.AsyncBaseTransport):
    """httpx requests to one queue on one broker, answered on a reply queue."""

    def __init__(
        self,
        broker_url: str,
        queue: str,
        *,
        account: str,
        password: str,
        exchange: str = CALLS_EXCHANGE,
        origin: str = "",
        hop_limit: int = HOP_LIMIT,
        connect_timeout: float = 5.0,
    ) -> None:
        self.broker_url = broker_url
        self.queue = queue
        self.account = account
        self.exchange = exchange
        self.origin = origin
        self.hop_limit = hop_limit
        self.connect_timeout = connect_timeout
        self.stats = LinkStats()
        self._password: str | None = password
        self._key: bytes | None = None  # derived once, on the first connect
        self._calls: dict[str, _Call] = {}
        self._connection: AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._reply_queue = reply_queue_for(account)
        self._connecting: asyncio.Task[aio_pika.abc.AbstractChannel] | None = None
        self._failed_at = -FAILURE_MEMORY
        self._failure = ""
        self._closed = False
        # Calls answered lately: a second answer to one of them is a duplicate.
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._outbox: Coalescer[None, _Call, Exception | None] = Coalescer(
            self._publish_batch,
            linger=0.0,
            max_items=MAX_BATCH,
            max_in_flight=PUBLISHES_IN_FLIGHT,
        )

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
        if self._key is None and self._password is not None:
            # scrypt: tens of milliseconds, so once per link and off the event loop.
            self._key = await asyncio.to_thread(derive_link_key, self.account, self._password)
            self._password = None
        connection: AbstractRobustConnection | None = None
        try:
            connection = aio_pika.RobustConnection(
                URL(self.broker_url),
                reconnect_interval=RECONNECT_INTERVAL,
                client_properties={"connection_name": f"skyfed {self.origin}->{self.queue}"},
            )
            await connection.connect(timeout=self.connect_timeout)
            # Replies on a channel of their own: a publish the broker refuses closes
            # the publishing channel, and must not take the reply consumer with it.
            reply_channel = await connection.channel(publisher_confirms=False)
            replies = await reply_channel.declare_queue(
                self._reply_queue, exclusive=True, auto_delete=True
            )
            await replies.consume(self._on_reply, no_ack=True)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(self.exchange, ensure=False)
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
        connection.close_callbacks.add(self._on_close)
        self._connection, self._channel, self._exchange = connection, channel, exchange
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
            request_id=request.headers.get(REQUEST_ID, request_id.get()),
        )
        loop = asyncio.get_running_loop()
        call_id = uuid.uuid4().hex
        call = _Call(
            call_id=call_id,
            envelope=envelope,
            body=await request.aread(),
            content_type=request.headers.get("content-type"),
            deadline=deadline,
            answer=loop.create_future(),
        )
        # Only calls safe to run twice share a message: a batch is acknowledged once all
        # its calls are answered, so a process that dies mid-batch leaves all of them to
        # be run again elsewhere, not just the one it was still running.
        batchable = request.method in ("GET", "HEAD") or bool(request.extensions.get(IDEMPOTENT))
        self._calls[call_id] = call
        try:
            async with asyncio.timeout(budget):
                await self._connected(deadline)
                call.signature = self._sign(call)
                await self._send(call, batchable)
                while not call.answer.done():  # published again when the connection is back
                    if call.resend_due:
                        call.resend_due = False
                        self.stats.resent += 1
                        await self._send(call, batchable)
                        continue
                    call.wake = loop.create_future()
                    await call.wake
        except TimeoutError as exc:
            reason = f"no answer on {self.queue} within {budget:g}s"
            if call.dropped:
                reason += (
                    f"; dropped {call.dropped} unsigned or forged answer(s) to it"
                    f" (the last said: {call.dropped_said})"
                )
            raise httpx.ReadTimeout(reason) from exc
        finally:
            self._calls.pop(call_id, None)
            if call.answer.done():
                self._answered[call_id] = None
                if len(self._answered) > ANSWERED_KEPT:
                    self._answered.popitem(last=False)
        status, headers, content = call.answer.result()
        # A stream, not content=: httpx would undo a Content-Encoding of the answer at once.
        return httpx.Response(
            status, headers=headers, stream=httpx.ByteStream(content), request=request
        )

    def _sign(self, call: _Call) -> str:
        assert self._key is not None  # derived before the first connection was made
        return call_signature(
            self._key,
            account=self.account,
            call_id=call.call_id,
            queue=self.queue,
            reply_to=self._reply_queue,
            envelope=call.envelope,
            body=call.body,
        )

    async def _send(self, call: _Call, batchable: bool) -> None:
        if batchable:
            await self._outbox.submit(None, call)
        else:
            await self._publish([call])

    async def _publish_batch(self, _: None, calls: list[_Call]) -> list[Exception | None]:
        """Publish calls that queued up together: one message, or one per large body;
        each call learns how its own message fared."""
        small = [c for c in calls if len(c.body) <= BATCH_BODY_LIMIT]
        groups = [[c] for c in calls if len(c.body) > BATCH_BODY_LIMIT]
        if small:
            groups.append(small)
        outcome: dict[str, Exception | None] = {}
        for group in groups:
            try:
                await self._publish(group)
                failure = None
            except httpx.TransportError as exc:
                failure = exc
            for call in group:
                outcome[call.call_id] = failure
        return [outcome[c.call_id] for c in calls]

    async def _publish(self, calls: list[_Call]) -> None:
        """Publish until the broker confirms, waiting out reconnects until the last of
        the calls' deadlines."""
        deadline = max(c.deadline for c in calls)
        while True:
            exchange = self._exchange
            if exchange is None or self._closed:
                raise httpx.ConnectError("the link is closed")
            try:
                await exchange.publish(self._message(calls, deadline), routing_key=self.queue)
                for call in calls:
                    call.sent += 1
                self.stats.messages += 1
                return
            except aiormq.exceptions.PublishError as exc:  # returned: no queue bound
                raise httpx.ConnectError(
                    f"no zone consumes queue {self.queue} on {without_password(self.broker_url)}"
                ) from exc
            except aiormq.exceptions.ChannelNotFoundEntity as exc:  # no zone ever declared it
                raise httpx.ConnectError(
                    f"no zone consumes queue {self.queue} on {without_password(self.broker_url)}"
                    f" (no exchange {self.exchange} there)"
                ) from exc
            except aiormq.exceptions.ChannelAccessRefused as exc:
                raise httpx.ConnectError(
                    f"broker {without_password(self.broker_url)} refused: {exc}"
                ) from exc
            except aiormq.exceptions.DeliveryError as exc:  # nack: the broker could not keep it
                log.warning("broker refused a call; sending again", extra={"error": str(exc)})
            except _CONNECTION_LOST:
                pass
            try:
                async with asyncio.timeout(max(0.001, deadline - time.monotonic())):
                    await self._wait_for_connection()
            except TimeoutError as exc:
                raise httpx.ConnectTimeout(
                    f"broker {without_password(self.broker_url)} did not come back in time"
                ) from exc

    def _message(self, calls: list[_Call], deadline: float) -> aio_pika.Message:
        expiration = max(0.001, deadline - time.monotonic())  # the broker drops it then
        if len(calls) == 1:
            [call] = calls
            return aio_pika.Message(
                call.body,
                headers=self._signed_headers(call),
                content_type=call.content_type,
                message_id=call.call_id,
                correlation_id=call.call_id,
                reply_to=self._reply_queue,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                expiration=expiration,
            )
        batch_id = uuid.uuid4().hex
        return aio_pika.Message(
            pack([({"id": c.call_id, **self._signed_headers(c)}, c.body) for c in calls]),
            content_type=CALLS_TYPE,
            message_id=batch_id,
            correlation_id=batch_id,
            reply_to=self._reply_queue,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            expiration=expiration,
        )

    def _signed_headers(self, call: _Call) -> dict[str, Any]:
        return {
            **call.envelope.to_headers(),
            ACCOUNT_HEADER: self.account,
            SIGNATURE_HEADER: call.signature,
        }

    async def _wait_for_connection(self) -> None:
        await asyncio.sleep(0.05)
        while True:
            connection = self._connection
            if connection is None or self._closed:
                raise httpx.ConnectError("the link is closed")
            if connection.connected.is_set():
                return
            with contextlib.suppress(TimeoutError):  # looks again whether the link closed
                await asyncio.wait_for(connection.connected.wait(), 0.2)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        if message.content_type == ANSWERS_TYPE:
            try:
                records = unpack(message.body)
            except EnvelopeError as exc:
                log.warning("dropped a malformed reply", extra={"error": str(exc)})
                return None
            for head, body in records:
                self._deliver(str(head.get("id", "")), head, body)
            return None
        self._deliver(message.correlation_id or "", message.headers or {}, message.body)
        return None

    def _deliver(self, call_id: str, headers: Mapping[str, Any], body: bytes) -> None:
        try:
            status = int(headers["x-status"])
            carried = {str(k): text(v) for k, v in dict(headers.get("x-headers") or {}).items()}
        except (KeyError, TypeError, ValueError):
            status, carried = 0, {}
        if not self._genuine(call_id, status, carried, body, headers.get(SIGNATURE_HEADER)):
            self._drop_forged(call_id, status, body)
            return
        call = self._calls.get(call_id)
        if call is None:  # answered before, or its caller gave up
            if call_id in self._answered:
                self.stats.duplicate_replies += 1
            return
        if call.answer.done():
            self.stats.duplicate_replies += 1
            return
        call.answer.set_result((status, carried, body))
        call.poke()

    def _genuine(
        self, call_id: str, status: int, headers: dict[str, str], body: bytes, signature: Any
    ) -> bool:
        """Whether the zone signed this answer with the link's key."""
        if self._key is None or not status:
            return False
        try:
            expected = answer_signature(
                self._key, call_id=call_id, status=status, headers=headers, body=body
            )
        except SigningError:  # a field no genuine answer holds
            return False
        return same(expected, signature)

    def _drop_forged(self, call_id: str, status: int, body: bytes) -> None:
        """Not the zone's answer (or not signed for us): the call waits on for the genuine
        one; if it never comes, the call's timeout says what was dropped."""
        self.stats.forged_answers += 1
        said = f"{status} {body[:200].decode('utf-8', 'replace')}"
        log.warning(
            "dropped an answer whose signature does not verify",
            extra={"call_id": call_id[:64], "queue": self.queue, "said": said},
        )
        call = self._calls.get(call_id)
        if call is not None and not call.answer.done():
            call.dropped += 1
            call.dropped_said = said

    def _on_close(self, *_: Any) -> None:
        if not self._closed:
            self.stats.disconnects += 1
            self.stats.disconnected_at = time.perf_counter()

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
        self._connection = self._channel = self._exchange = None
        await self._outbox.aclose()  # batches still publishing see the link closed


def amqp_link(
    broker_url: str,
    queue: str,
    *,
    username: str,
    password: str,
    origin: str = "",
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 0.1,
) -> HttpLink:
    """A child reached through its broker: the child's API, carried as messages, each
    signed with the key of the child's account for this parent."""
    return HttpLink(
        base_url_for(queue),
        AmqpTransport(broker_url, queue, account=username, password=password, origin=origin),
        username=None,  # no login: each call is signed, and the child knows who signed
        password=None,
        kind="amqp",
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        max_connections=None,  # no pool to wait for: every call is its own message
    )


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
