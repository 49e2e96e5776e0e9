"""The envelope a zone call travels in over a message bus, and the route it has taken.

An HTTP request becomes one AMQP message: the body is the request body; the
method, path, headers and the routing facts ride in the message headers. The
routing facts: the zones the call passed through (`route`), how many links it
crossed (`hops`, refused past `hop_limit`, so a misconfigured tree cannot loop a
call forever), the wall-clock `deadline` after which nobody waits for it, and
the request id. The message id names the call: a call sent again (after a broker
restart) keeps it, and the receiver answers a repeat from what it already did.
Every call, and every answer, is signed by the calling account (`signing.py`).
"""

from __future__ import annotations

import contextvars
import json
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HOP_LIMIT = 16
# Seconds that wall clocks of two sites may differ by before a deadline is believed.
CLOCK_SKEW = 30.0
# Seconds between attempts to reach a broker that went away (aio-pika's default is 5).
RECONNECT_INTERVAL = 1.0
# Credentials: a call over a bus is signed instead (transport/signing.py); never carried,
# and dropped by the receiver if a message has them.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie"})
# Headers that describe one connection, not the call: never carried either.
_CONNECTION_HEADERS = (
    frozenset({"host", "content-length", "connection", "accept-encoding"}) | CREDENTIAL_HEADERS
)

# Where the call being served came from: set by the bus receiver, read by the links
# it calls on with (a zone forwarding a call further down extends its route).
current_route: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "current_route", default=()
)
current_hops: contextvars.ContextVar[int] = contextvars.ContextVar("current_hops", default=0)


class EnvelopeError(ValueError):
    """A message that is not a well-formed call."""


@dataclass(frozen=True, slots=True)
class Envelope:
    method: str
    target: str  # path with its query string
    headers: dict[str, str]
    route: tuple[str, ...]
    hops: int
    hop_limit: int
    deadline: float  # time.time() after which the caller has given up
    request_id: str

    def to_headers(self) -> dict[str, Any]:
        return {
            "x-method": self.method,
            "x-target": self.target,
            "x-headers": dict(self.headers),
            "x-route": list(self.route),
            "x-hops": self.hops,
            "x-hop-limit": self.hop_limit,
            "x-deadline-ms": self.deadline_ms,
            "x-request-id": self.request_id,
        }

    @classmethod
    def from_headers(cls, headers: Mapping[str, Any] | None) -> Envelope:
        h = headers or {}
        try:
            method, target = text(h["x-method"]), text(h["x-target"])
            carried = {text(k): text(v) for k, v in dict(h.get("x-headers") or {}).items()}
            route = tuple(text(z) for z in h.get("x-route") or ())
            hops, limit = int(h["x-hops"]), int(h.get("x-hop-limit", HOP_LIMIT))
            deadline = int(h["x-deadline-ms"]) / 1000
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(f"not a skyfed call: {exc}") from exc
        if not target.startswith("/"):
            raise EnvelopeError("the call's target is not a path")
        return cls(
            method=method.upper(),
            target=target,
            headers=carried,
            route=route,
            hops=hops,
            hop_limit=limit,
            deadline=deadline,
            request_id=text(h.get("x-request-id", "")),
        )

    @property
    def deadline_ms(self) -> int:
        """The deadline as it travels (and is signed): AMQP tables may carry floats in
        32 bits, so milliseconds as an integer, the same however often converted."""
        return round(self.deadline * 1000)

    @property
    def expired(self) -> bool:
        """Past the deadline by more than clocks between sites may differ. (The message's
        TTL, relative and kept by the broker, drops a call nobody waits for precisely.)"""
        return time.time() > self.deadline + CLOCK_SKEW

    @property
    def over_limit(self) -> bool:
        return self.hops > self.hop_limit


def carried_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in _CONNECTION_HEADERS}


def text(value: Any) -> str:
    """A header value as text (AMQP tables may carry bytes)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"expected text, got {type(value).__name__}")


# Several calls in one message, and several answers in one reply: under load a
# link sends what queued up while its last publish was being confirmed as one
# message, so the broker, aio-pika and the frame codec work once per batch rather
# than once per call. Each call keeps its own id, envelope and deadline, and is
# answered (and deduplicated) on its own.
CALLS_TYPE = "application/vnd.skyfed.calls"
ANSWERS_TYPE = "application/vnd.skyfed.answers"
_LENGTH = struct.Struct(">I")


def pack(records: list[tuple[dict[str, Any], bytes]]) -> bytes:
    """Records of (JSON head, raw body), each part prefixed with its length."""
    parts: list[bytes] = []
    for head, body in records:
        encoded = json.dumps(head, separators=(",", ":")).encode()
        parts += (_LENGTH.pack(len(encoded)), encoded, _LENGTH.pack(len(body)), body)
    return b"".join(parts)


def unpack(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    records: list[tuple[dict[str, Any], bytes]] = []
    view, at = memoryview(data), 0
    try:
        while at < len(data):
            (size,) = _LENGTH.unpack_from(view, at)
            head = json.loads(bytes(view[at + 4 : at + 4 + size]))
            at += 4 + size
            (size,) = _LENGTH.unpack_from(view, at)
            if at + 4 + size > len(data):
                raise ValueError("a record runs past the end")
            records.append((head, bytes(view[at + 4 : at + 4 + size])))
            at += 4 + size
    except (struct.error, ValueError) as exc:
        raise EnvelopeError(f"not a batch of calls: {exc}") from exc
    if not all(isinstance(head, dict) for head, _ in records):
        raise EnvelopeError("not a batch of calls: a record's head is not an object")
    return records
