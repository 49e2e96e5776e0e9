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

Before anything else, each call's signature is verified with the key of the
account it names (`signing.py`): an unknown account, a missing or wrong
signature, a malformed envelope, and the call is refused; it reaches neither the
record of answers nor the app. A verified call runs as that account (no token is
read from a message) and is answered, signed with the same key, only to a reply
queue of that account (`names.py`); the record of answers is per (account, call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from skyfed.coalesce import Coalescer
from skyfed.identity.principal import Principal
from skyfed.transport.bus import connect_and_set_up
from skyfed.transport.envelope import (
    ANSWERS_TYPE,
    CALLS_TYPE,
    CREDENTIAL_HEADERS,
    Envelope,
    EnvelopeError,
    current_hops,
    current_route,
    pack,
    text,
    unpack,
)
from skyfed.transport.names import CALLS_EXCHANGE, is_reply_queue_of
from skyfed.transport.queue_policy import PARENT_CALLS, QueuePolicy
from skyfed.transport.signing import (
    ACCOUNT_HEADER,
    BUS_CALLER,
    SIGNATURE_HEADER,
    AccountResolver,
    LinkAccount,
    SigningError,
    answer_signature,
    call_signature,
    same,
)
from skyfed.wire import REQUEST_ID, error_body

log = logging.getLogger("skyfed.transport.amqp")

Answer = tuple[int, dict[str, str], bytes]
CallKey = tuple[str, str]  # (account, call id): one caller never gets another's answer
_REQUEST_ID = REQUEST_ID.lower()  # as the envelope carries header names
_KEPT_HEADERS = ("content-type", _REQUEST_ID, "retry-after", "location")
# Never handed to the app from a message: a call over the bus is its signer's.


class AnswerCache:
    """Answers of recent calls by (account, call id), bounded in count and bytes."""

    def __init__(self, max_items: int = 20_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._answers: OrderedDict[CallKey, Answer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: CallKey) -> Answer | None:
        return self._answers.get(key)

    def put(self, key: CallKey, answer: Answer) -> None:
        if key in self._answers:
            return
        self._answers[key] = answer
        self.bytes += len(answer[2])
        while len(self._answers) > self.max_items or self.bytes > self.max_bytes:
            _, old = self._answers.popitem(last=False)
            self.bytes -= len(old[2])


async def asgi_call(
    app: Any, envelope: Envelope, body: bytes, *, server: str, caller: Principal
) -> Answer:
    """Run one call through an ASGI app in this task, as `caller`; its whole answer."""
    path, _, query = envelope.target.partition("?")
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in envelope.headers.items()
        if k not in CREDENTIAL_HEADERS
    ]
    if envelope.request_id and _REQUEST_ID not in envelope.headers:
        headers.append((_REQUEST_ID.encode("latin-1"), envelope.request_id.encode("latin-1")))
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
        BUS_CALLER: caller,  # verified by the bus server; no HTTP request can set it
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


@dataclass(frozen=True, slots=True)
class _Refused:
    """A call that is not run: why, and whether the claimed caller may hear of it."""

    reason: str
    tell: bool


@dataclass
class ServerStats:
    refused: int = 0  # calls unsigned, wrongly signed, malformed or of an unknown account
    misdirected: int = 0  # signed calls whose reply-to was no reply queue of their account


class ZoneQueueServer:
    """Serves calls from `queue` on `broker_url` with `app` until stopped: calls signed
    by an account `accounts` knows, that `policy` lets through."""

    def __init__(
        self,
        app: Any,
        broker_url: str,
        queue: str,
        *,
        zone: str,
        accounts: AccountResolver,
        policy: QueuePolicy = PARENT_CALLS,
        exchange: str = CALLS_EXCHANGE,
        prefetch: int = 64,  # messages; a batch holds up to 64 calls
        max_calls: int = 256,  # calls run at once; the rest of a prefetch waits
        retry_interval: float = 2.0,
    ) -> None:
        self.app = app
        self.broker_url = broker_url
        self.queue = queue
        self.zone = zone
        self.accounts = accounts
        self.policy = policy
        self.exchange = exchange
        self.prefetch = prefetch
        self.retry_interval = retry_interval
        self.answers = AnswerCache()
        self.stats = ServerStats()
        self._logged_refusal_at = 0.0
        self._slots = asyncio.Semaphore(max_calls)
        self._running: dict[CallKey, asyncio.Future[Answer]] = {}
        # Per reply: (call id, the key to sign with or None for a refusal, the answer).
        self._replies: Coalescer[str, tuple[str, bytes | None, Answer], None] = Coalescer(
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
            # Callers may publish to this exchange only (not the default one, which
            # reaches every queue); it routes to the zone's queue by its name.
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
            queue = await channel.declare_queue(self.queue, durable=True)
            await queue.bind(exchange, routing_key=self.queue)
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
        calls: list[tuple[str, Mapping[str, Any], bytes]]
        if message.content_type == CALLS_TYPE:
            try:
                records = unpack(message.body)
            except EnvelopeError as exc:  # no call ids to answer under: nobody to tell
                log.warning("dropped a malformed batch of calls", extra={"error": str(exc)})
                await _settle(message)
                return
            calls = [(str(head.get("id", "")), head, body) for head, body in records]
        else:
            reply_id = message.correlation_id or message_id
            calls = [(reply_id, message.headers or {}, message.body)]
        reply_to = message.reply_to
        answered = await asyncio.gather(
            *(self._serve_and_answer(reply_to, *call) for call in calls)
        )
        if all(answered):
            await _settle(message)

    async def _serve_and_answer(
        self, reply_to: str, call_id: str, head: Mapping[str, Any], body: bytes
    ) -> bool:
        """Verify, run and answer one call; False when its answer could not be sent."""
        checked = await self._verify(reply_to, call_id, head, body)
        if isinstance(checked, _Refused):
            if not checked.tell:
                return True  # nobody to tell: dropped (and acknowledged)
            reply: tuple[str, bytes | None, Answer] = (
                call_id,
                None,  # unsigned: the caller cannot believe it, but learns why it waits
                _error(401, "bad_signature", f"call refused: {checked.reason}"),
            )
        else:
            account, envelope = checked
            reply = (call_id, account.key, await self._serve(account, call_id, envelope, body))
        try:
            await self._replies.submit(reply_to, reply)
        except Exception as exc:  # the broker is away: the caller asks again once back
            log.warning("could not answer a call", extra={"error": str(exc)})
            return False
        return True

    async def _verify(
        self, reply_to: str, call_id: str, head: Mapping[str, Any], body: bytes
    ) -> tuple[LinkAccount, Envelope] | _Refused:
        """The account that signed the call and its envelope, or why the call is refused.
        A refusal goes (unsigned) only to a reply queue of the account the call names."""
        try:
            name = text(head.get(ACCOUNT_HEADER, ""))
        except (TypeError, ValueError):
            name = ""
        tell = bool(name) and is_reply_queue_of(reply_to, name)
        signature = head.get(SIGNATURE_HEADER)
        if not name or signature is None or not call_id:
            return self._refuse("the call is not signed", name, tell)
        try:
            envelope = Envelope.from_headers(head)
        except EnvelopeError as exc:
            return self._refuse(str(exc), name, tell)
        try:
            account = await self.accounts(name)
        except Exception as exc:  # its database is away: nothing to verify with
            return self._refuse(f"the zone could not read its accounts ({exc!r:.200})", name, tell)
        # One reason for an unknown account and a wrong key: a prober learns no names.
        forged = (
            f"the signature does not verify for account '{name}' on {self.queue} "
            "(an unknown or disabled account, or a key from another password)"
        )
        if account is None:
            return self._refuse(forged, name, tell)
        try:
            expected = call_signature(
                account.key,
                account=name,
                call_id=call_id,
                queue=self.queue,
                reply_to=reply_to,
                envelope=envelope,
                body=body,
            )
        except SigningError as exc:
            return self._refuse(str(exc), name, tell)
        if not same(expected, signature):
            return self._refuse(forged, name, tell)
        if not tell:  # signed, but answers would go to a queue not the caller's own
            self.stats.misdirected += 1
            log.warning(
                "dropped a call whose reply-to is no reply queue of its account",
                extra={"account": name, "reply_to": reply_to[:255], "queue": self.queue},
            )
            return _Refused("reply-to is no reply queue of the caller", tell=False)
        return account, envelope

    def _refuse(self, reason: str, name: str, tell: bool) -> _Refused:
        self.stats.refused += 1
        now = time.monotonic()
        if now - self._logged_refusal_at >= 1.0:  # a flood of junk makes one line a second
            self._logged_refusal_at = now
            log.warning(
                "refused a call from the bus",
                extra={
                    "reason": reason,
                    "account": name[:64],
                    "queue": self.queue,
                    "refused": self.stats.refused,
                },
            )
        return _Refused(reason, tell)

    async def _serve(
        self, account: LinkAccount, call_id: str, envelope: Envelope, body: bytes
    ) -> Answer:
        if envelope.expired:  # the caller has given up: do not do the work, say why
            return _error(504, "deadline_passed", "the call's deadline had passed")
        if envelope.over_limit:
            return _error(508, "loop_detected", f"the call crossed {envelope.hops} zone links")
        refusal = self.policy.refusal(account.principal, envelope.method, envelope.target)
        if refusal is not None:
            return _error(403, "not_served_here", refusal)
        key = (account.name, call_id)
        known = self.answers.get(key)
        if known is not None:
            return known
        running = self._running.get(key)
        if running is not None:  # the first copy is still running; answer both at its end
            return await asyncio.shield(running)
        first = self._running[key] = asyncio.get_running_loop().create_future()
        try:
            async with self._slots:  # the database pool, not the prefetch, sets the pace
                answer = await asgi_call(
                    self.app, envelope, body, server=self.zone, caller=account.principal
                )
        except Exception:
            log.exception("a call from the bus failed", extra={"target": envelope.target})
            answer = _error(500, "internal_error", "an internal error occurred; see the zone's log")
        except BaseException:  # cut short (a stop): its repeats are cut short too
            del self._running[key]
            first.cancel()
            raise
        del self._running[key]
        self.answers.put(key, answer)
        first.set_result(answer)
        return answer

    async def _publish_answers(
        self, reply_to: str, answers: list[tuple[str, bytes | None, Answer]]
    ) -> list[None]:
        """One reply for the answers finished together for one caller, each signed."""
        if self._channel is None:
            raise ConnectionError("no channel to answer on")
        heads = [
            (_answer_head(call_id, key, status, headers, body), body)
            for call_id, key, (status, headers, body) in answers
        ]
        if len(heads) == 1:
            [(head, body)] = heads
            reply = aio_pika.Message(
                body, headers=head, correlation_id=answers[0][0], expiration=60
            )
        else:
            reply = aio_pika.Message(
                pack(
                    [
                        ({"id": call_id, **head}, body)
                        for (head, body), (call_id, _, _) in zip(heads, answers, strict=True)
                    ]
                ),
                content_type=ANSWERS_TYPE,
                expiration=60,
            )
        # Not mandatory: a caller that is gone (its reply queue with it) asks again if it
        # comes back; the broker need not hand the answer back to us.
        await self._channel.default_exchange.publish(reply, routing_key=reply_to, mandatory=False)
        return [None] * len(answers)


def _answer_head(
    call_id: str, key: bytes | None, status: int, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    head: dict[str, Any] = {"x-status": status, "x-headers": headers}
    if key is not None:
        head[SIGNATURE_HEADER] = answer_signature(
            key, call_id=call_id, status=status, headers=headers, body=body
        )
    return head


def _error(status: int, code: str, message: str) -> Answer:
    body = json.dumps(error_body(code, message)).encode()
    return status, {"content-type": "application/json"}, body


async def _settle(message: AbstractIncomingMessage) -> None:
    # A closed channel refuses the ack: the broker hands the message out again.
    with contextlib.suppress(Exception):
        await message.ack()
