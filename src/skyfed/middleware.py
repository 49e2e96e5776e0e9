"""The outermost ASGI layer: a request id on every call (kept across zones), the
caller's trace continued (a server span when spans are exported), one access log
line, the request counted by route template (Prometheus), a bound on request
bodies (413), and the error shape for any failure nothing else handled (logged
once, with the request id)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from opentelemetry.trace import Span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyfed.errors import PayloadTooLarge
from skyfed.logs import request_id
from skyfed.observability.metrics import Metrics
from skyfed.observability.tracing import TRACEPARENT, SpanKind, Tracing, attached, failed
from skyfed.wire import REQUEST_ID, error_body

log = logging.getLogger("skyfed.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REQUEST_ID = REQUEST_ID.lower().encode("latin-1")  # as ASGI spells header names
_TRACEPARENT = TRACEPARENT.encode("latin-1")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a path no route matched (no raw paths)


class HttpMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.requests = metrics.counter(
            "skyfed_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ("route", "method", "status"),
        )
        self.duration = metrics.histogram(
            "skyfed_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template.",
            ("route", "method"),
        )

    def observe(self, scope: Scope, method: str, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(template, method, str(status)).inc()
        self.duration.labels(template, method).observe(seconds)


def _quiet(method: str, path: str) -> bool:
    """Heartbeats, probes and parents' polls arrive constantly: logged at debug level."""
    if path in ("/healthz", "/readyz"):
        return True
    if method == "GET" and path == "/v1/zone":
        return True
    return method == "PUT" and path.startswith("/v1/hosts")


DEFAULT_MAX_BODY = 32 * 1024 * 1024
# Object bodies (Swift's storage URL) are streamed to a cluster, never held: no bound.
UNBOUNDED_PREFIX = "/v1/AUTH_"


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        max_body: int = DEFAULT_MAX_BODY,
        *,
        http_metrics: HttpMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.http_metrics = http_metrics
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        length = None
        traceparent = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                incoming = value.decode("latin-1")
            elif name == b"content-length":
                length = value
            elif name == _TRACEPARENT:
                traceparent = value.decode("latin-1")
        with attached(traceparent):
            if self.tracing is None:
                await self._serve(scope, receive, send, incoming, length, None)
                return
            method = scope["method"]
            with self.tracing.span(method, kind=SpanKind.SERVER) as span:
                await self._serve(scope, receive, send, incoming, length, span)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        incoming: str,
        length: bytes | None,
        span: Span | None,
    ) -> None:
        rid = incoming if _VALID_ID.match(incoming) else f"req-{uuid.uuid4()}"
        token = request_id.set(rid)
        status = 500
        started_response = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = [*message.get("headers", []), (_REQUEST_ID, rid.encode())]
            await send(message)

        limit = self.max_body
        if scope["path"].startswith(UNBOUNDED_PREFIX):
            limit = 1 << 62
        too_large = f"the request body is larger than {limit:,} bytes"
        read = 0

        async def receive_bounded() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:  # (a body sent without a length, or longer than it said)
                    raise PayloadTooLarge(too_large)
            return message

        try:
            if length is not None and not length.isdigit():
                await _answer(send_with_id, 400, "bad_request", "Content-Length is not a number")
                return
            if length is not None and int(length) > limit:  # refused before a byte is read
                await _answer(send_with_id, 413, PayloadTooLarge.code, too_large)
                return
            await self.app(scope, receive_bounded, send_with_id)
        except PayloadTooLarge as exc:  # (the app's handlers answer it where they see it)
            if not started_response:
                await _answer(send_with_id, exc.status, exc.code, exc.message)
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"]})
            if not started_response:
                await _answer(
                    send_with_id,
                    500,
                    "internal_error",
                    "an internal error occurred; see the zone's log",
                )
        finally:
            method, path = scope["method"], scope["path"]
            seconds = time.perf_counter() - started
            if self.http_metrics is not None:
                self.http_metrics.observe(scope, method, status, seconds)
            if span is not None:
                _describe(span, scope, method, status)
            log.log(
                logging.DEBUG if status < 400 and _quiet(method, path) else logging.INFO,
                "request",
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                },
            )
            request_id.reset(token)


def _describe(span: Span, scope: Scope, method: str, status: int) -> None:
    route = getattr(scope.get("route"), "path", None) or UNMATCHED
    span.update_name(f"{method} {route}")
    span.set_attribute("http.request.method", method)
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        failed(span, f"answered {status}")


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    """A whole error response in the one error shape."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.body", "body": body})
