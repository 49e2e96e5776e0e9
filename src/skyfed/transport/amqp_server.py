"""A zone's end of the `amqp` link: consume the zone's durable queue, serve each call.

Each message is one call to the zone's own API, run through its ASGI app as if
it had come over HTTP (same auth, validation, error shape), and answered to the
message's reply-to with its correlation id. The message is acknowledged only
after its answer is published: a process killed mid-call leaves it to the
broker to hand to another process of the zone. Repeats of a call (same message
id, sent again after a broker restart) are answered from the first run, or
joined to it while it is still running, within this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from skyfed.errors import error_body
from skyfed.transport.bus import connect_and_set_up
from skyfed.transport.envelope import (
    Envelope,
    EnvelopeError,
    current_hops,
    current_route,
)

log = logging.getLogger("skyfed.transport.amqp")

Answer = tuple[int, dict[str, str], bytes]
_KEPT_HEADERS = ("content-type", "x-request-id", "retry-after", "location")


class AnswerCache:
    """Answers of recent calls by message id, bounded in count and bytes."""

    def __init__(self, max_items: int = 20_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._answers: OrderedDict[str, Answer] = OrderedDict()

    def get(self, call_id: str) -> Answer | None:
        return self._answers.get(call_id)

    def put(self, call_id: str, answer: Answer) -> None:
        if call_id in self._answers:
            return
        self._answers[call_id] = answer
        self.bytes += len(answer[2])
        while len(self._answers) > self.max_items or self.bytes > self.max_bytes:
            _, old = self._answers.popitem(last=False)
            self.bytes -= len(old[2])


async def asgi_call(app: Any, envelope: Envelope, body: bytes, *, server: str) -> Answer:
    """Run one call through an ASGI app in this task; its whole answer."""
    path, _, query = envelope.target.partition("?")
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in envelope.headers.items()]
    if envelope.request_id and "x-request-id" not in envelope.headers:
        headers.append((b"x-request-id", envelope.request_id.encode("latin-1")))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": envelope.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": ("amqp", 0),
        "server": (server, 0),
    }
    sent_body = False
    status = 500
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the call has no client to disconnect
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                key = name.decode("latin-1").lower()
                if key in _KEPT_HEADERS:
                    out_headers[key] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    route, hops = current_route.set(envelope.route), current_hops.set(envelope.hops)
    try:
        await app(scope, receive, send)
    finally:
        current_route.reset(route)
        current_hops.reset(hops)
    return status, out_headers, b"".join(chunks)


class ZoneQueueServer:
    """Serves calls from `queue` on `broker_url` with `app` until stopped."""

    def __init__(
        self,
        app: Any,
        broker_url: str,
        queue: str,
        *,
        zone: str,
        prefetch: int = 256,
        retry_interval: float = 2.0,
    ) -> None:
        self.app = app
        self.broker_url = broker_url
        self.queue = queue
        self.zone = zone
        self.prefetch = prefetch
        self.retry_interval = retry_interval
        self.answers = AnswerCache()
        self._running: dict[str, list[AbstractIncomingMessage]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection: AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._consumer: tuple[aio_pika.abc.AbstractQueue, str] | None = None

    async def start(self) -> None:
        """Connect and consume; until the broker answers, try again every few seconds."""

        async def set_up(connection: AbstractRobustConnection) -> None:
            channel = await connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.declare_queue(self.queue, durable=True)
            self._consumer = (queue, await queue.consume(self._on_message))
            self._channel = channel

        self._connection = await connect_and_set_up(
            self.broker_url, f"zone {self.zone}", set_up, retry_interval=self.retry_interval
        )
        log.info("serving calls from the zone bus", extra={"queue": self.queue})

    @property
    def serving(self) -> bool:
        """Consuming now (not before the first connect, nor while the broker is away)."""
        return self._connection is not None and self._connection.connected.is_set()

    async def delete_queue(self) -> None:
        """Remove the zone's queue from the broker (tests, and a zone taken down for good)."""
        if self._channel is not None:
            await self._channel.queue_delete(self.queue)

    async def stop(self, grace: float = 10.0) -> None:
        """Take no new calls, let the running ones answer (up to `grace` seconds), close:
        calls cut short go back to the broker, for the zone's other processes."""
        if self._consumer is not None:
            queue, tag = self._consumer
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self._connection is not None:
            await self._connection.close()
        self._tasks.clear()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        call_id = message.message_id or message.correlation_id or ""
        if not message.reply_to or not call_id:
            log.warning("dropped a message with no reply-to or id", extra={"queue": self.queue})
            await _settle(message)
            return
        try:
            envelope = Envelope.from_headers(message.headers)
        except EnvelopeError as exc:
            await self._answer([message], _error(400, "bad_envelope", str(exc)))
            return
        if envelope.expired:  # the caller has given up: do not do the work, say why
            await self._answer(
                [message], _error(504, "deadline_passed", "the call's deadline had passed")
            )
            return
        if envelope.over_limit:
            await self._answer(
                [message],
                _error(508, "loop_detected", f"the call crossed {envelope.hops} zone links"),
            )
            return
        known = self.answers.get(call_id)
        if known is not None:
            await self._answer([message], known)
            return
        joined = self._running.get(call_id)
        if joined is not None:  # the first copy is still running; answer both at its end
            joined.append(message)
            return
        waiting = self._running[call_id] = [message]
        try:
            answer = await asgi_call(self.app, envelope, message.body, server=self.zone)
        except Exception:
            log.exception("a call from the bus failed", extra={"target": envelope.target})
            answer = _error(500, "internal_error", "an internal error occurred; see the zone's log")
        finally:
            del self._running[call_id]
        self.answers.put(call_id, answer)
        await self._answer(waiting, answer)

    async def _answer(self, messages: list[AbstractIncomingMessage], answer: Answer) -> None:
        status, headers, body = answer
        for message in messages:
            if self._channel is None:
                return
            reply = aio_pika.Message(
                body,
                headers={"x-status": status, "x-headers": headers},
                correlation_id=message.correlation_id or message.message_id,
                expiration=60,
            )
            try:
                await self._channel.default_exchange.publish(
                    reply, routing_key=message.reply_to or ""
                )
            except Exception as exc:  # the broker is away: the caller asks again once back
                log.warning("could not answer a call", extra={"error": str(exc)})
                return
            await _settle(message)


def _error(status: int, code: str, message: str) -> Answer:
    body = json.dumps(error_body(code, message)).encode()
    return status, {"content-type": "application/json"}, body


async def _settle(message: AbstractIncomingMessage) -> None:
    # A closed channel refuses the ack: the broker hands the message out again.
    with contextlib.suppress(Exception):
        await message.ack()
