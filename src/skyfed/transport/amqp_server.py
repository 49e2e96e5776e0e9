"""A zone's end of the `amqp` link: consume the zone's durable queue, serve each call.

A message is one call, or a batch of them (`envelope.CALLS_TYPE`), each to the
zone's own API: run through its ASGI app as if it had come over HTTP (same
auth, validation, error shape), concurrently, and answered to the message's
reply-to under the call's id as soon as it is done. Answers finished together
for one reply queue leave as one reply. A message is acknowledged only after
all its answers are published: a process killed mid-call leaves the message to
the broker to hand to another process of the zone. Repeats of a call (same id,
sent again after a broker restart) are answered from the first run, or joined
to it while it is still running, within this process.
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

from skyfed.coalesce import Coalescer
from skyfed.errors import error_body
from skyfed.transport.bus import connect_and_set_up
from skyfed.transport.envelope import (
    ANSWERS_TYPE,
    CALLS_TYPE,
    Envelope,
    EnvelopeError,
    current_hops,
    current_route,
    pack,
    unpack,
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
        prefetch: int = 64,  # messages; a batch holds up to 64 calls
        max_calls: int = 256,  # calls run at once; the rest of a prefetch waits
        retry_interval: float = 2.0,
    ) -> None:
        self.app = app
        self.broker_url = broker_url
        self.queue = queue
        self.zone = zone
        self.prefetch = prefetch
        self.retry_interval = retry_interval
        self.answers = AnswerCache()
        self._slots = asyncio.Semaphore(max_calls)
        self._running: dict[str, asyncio.Future[Answer]] = {}
        self._replies: Coalescer[str, tuple[str, Answer], None] = Coalescer(
            self._publish_answers, linger=0.0, max_items=64, max_in_flight=2
        )
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
        message_id = message.message_id or message.correlation_id or ""
        if not message.reply_to or not message_id:
            log.warning("dropped a message with no reply-to or id", extra={"queue": self.queue})
            await _settle(message)
            return
        calls: list[tuple[str, Envelope | EnvelopeError, bytes]]
        if message.content_type == CALLS_TYPE:
            try:
                records = unpack(message.body)
            except EnvelopeError as exc:  # no call ids to answer under: nobody to tell
                log.warning("dropped a malformed batch of calls", extra={"error": str(exc)})
                await _settle(message)
                return
            calls = [(str(head.get("id", "")), _envelope(head), body) for head, body in records]
        else:
            reply_id = message.correlation_id or message_id
            calls = [(reply_id, _envelope(message.headers), message.body)]
        reply_to = message.reply_to
        answered = await asyncio.gather(
            *(self._serve_and_answer(reply_to, *call) for call in calls)
        )
        if all(answered):
            await _settle(message)

    async def _serve_and_answer(
        self, reply_to: str, call_id: str, envelope: Envelope | EnvelopeError, body: bytes
    ) -> bool:
        answer = await self._serve(call_id, envelope, body)
        try:
            await self._replies.submit(reply_to, (call_id, answer))
        except Exception as exc:  # the broker is away: the caller asks again once back
            log.warning("could not answer a call", extra={"error": str(exc)})
            return False
        return True

    async def _serve(self, call_id: str, envelope: Envelope | EnvelopeError, body: bytes) -> Answer:
        if isinstance(envelope, EnvelopeError):
            return _error(400, "bad_envelope", str(envelope))
        if not call_id:
            return _error(400, "bad_envelope", "the call has no id")
        if envelope.expired:  # the caller has given up: do not do the work, say why
            return _error(504, "deadline_passed", "the call's deadline had passed")
        if envelope.over_limit:
            return _error(508, "loop_detected", f"the call crossed {envelope.hops} zone links")
        known = self.answers.get(call_id)
        if known is not None:
            return known
        running = self._running.get(call_id)
        if running is not None:  # the first copy is still running; answer both at its end
            return await asyncio.shield(running)
        first = self._running[call_id] = asyncio.get_running_loop().create_future()
        try:
            async with self._slots:  # the database pool, not the prefetch, sets the pace
                answer = await asgi_call(self.app, envelope, body, server=self.zone)
        except Exception:
            log.exception("a call from the bus failed", extra={"target": envelope.target})
            answer = _error(500, "internal_error", "an internal error occurred; see the zone's log")
        except BaseException:  # cut short (a stop): its repeats are cut short too
            del self._running[call_id]
            first.cancel()
            raise
        del self._running[call_id]
        self.answers.put(call_id, answer)
        first.set_result(answer)
        return answer

    async def _publish_answers(
        self, reply_to: str, answers: list[tuple[str, Answer]]
    ) -> list[None]:
        """One reply for the answers finished together for one caller."""
        if self._channel is None:
            raise ConnectionError("no channel to answer on")
        if len(answers) == 1:
            [(call_id, (status, headers, body))] = answers
            reply = aio_pika.Message(
                body,
                headers={"x-status": status, "x-headers": headers},
                correlation_id=call_id,
                expiration=60,
            )
        else:
            reply = aio_pika.Message(
                pack(
                    [
                        ({"id": call_id, "x-status": status, "x-headers": headers}, body)
                        for call_id, (status, headers, body) in answers
                    ]
                ),
                content_type=ANSWERS_TYPE,
                expiration=60,
            )
        # Not mandatory: a caller that is gone (its reply queue with it) asks again if it
        # comes back; the broker need not hand the answer back to us.
        await self._channel.default_exchange.publish(reply, routing_key=reply_to, mandatory=False)
        return [None] * len(answers)


def _envelope(headers: Any) -> Envelope | EnvelopeError:
    try:
        return Envelope.from_headers(headers)
    except EnvelopeError as exc:
        return exc


def _error(status: int, code: str, message: str) -> Answer:
    body = json.dumps(error_body(code, message)).encode()
    return status, {"content-type": "application/json"}, body


async def _settle(message: AbstractIncomingMessage) -> None:
    # A closed channel refuses the ack: the broker hands the message out again.
    with contextlib.suppress(Exception):
        await message.ack()
