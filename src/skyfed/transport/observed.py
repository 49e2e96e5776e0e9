"""Every call to a child, counted and timed (Prometheus) and traced (a client span).

`ObservedLink` wraps a child's `ZoneLink`, whatever carries it: the span is current
while the inner link sends, so the `traceparent` it writes (HTTP headers, or the
AMQP envelope's) names this call, and the child's spans hang under it.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from skyfed.observability.metrics import Metrics
from skyfed.observability.tracing import SpanKind, Tracing, failed
from skyfed.transport.base import ZoneLink, ZoneRequest
from skyfed.wire import SkyfedError, ZoneUnreachable

OUTCOMES = ("ok", "refused", "failed", "unreachable", "timed_out", "abandoned")


class LinkMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.calls = metrics.counter(
            "skyfed_link_calls",
            "Calls to child zones, by child, transport and outcome: ok, refused (the "
            "child answered 4xx), failed (5xx), unreachable, timed_out, abandoned "
            "(the caller stopped waiting).",
            ("child", "transport", "outcome"),
        )
        self.duration = metrics.histogram(
            "skyfed_link_call_duration_seconds",
            "Time of a call to a child zone, retries included, by child and transport.",
            ("child", "transport"),
        )

    def forget(self, child: str, transport: str) -> None:
        """A removed child's series go (its name may come back as another zone)."""
        for outcome in OUTCOMES:
            _remove(self.calls, child, transport, outcome)
        _remove(self.duration, child, transport)


def _remove(family: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        family.remove(*labels)


class ObservedLink(ZoneLink):
    def __init__(self, inner: ZoneLink, child: str, metrics: LinkMetrics, tracing: Tracing) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.child = child
        self.metrics = metrics
        self.tracing = tracing

    async def call(self, request: ZoneRequest) -> Any:
        attributes = {
            "skyfed.child": self.child,
            "skyfed.link.transport": self.kind,
            "http.request.method": request.method,
            "url.path": request.path,
        }
        started = time.perf_counter()
        outcome = "ok"
        with self.tracing.span(
            f"call {self.child}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                return await self.inner.call(request)
            except ZoneUnreachable as exc:
                outcome = "timed_out" if exc.timed_out else "unreachable"
                failed(span, outcome)
                raise
            except SkyfedError as exc:
                outcome = "refused" if exc.status < 500 else "failed"
                if span is not None:
                    span.set_attribute("http.response.status_code", exc.status)
                    if exc.status >= 500:
                        failed(span, exc.code)
                raise
            except BaseException:  # cancelled by its caller, or a fault of ours
                outcome = "abandoned"
                raise
            finally:
                self.metrics.calls.labels(self.child, self.kind, outcome).inc()
                self.metrics.duration.labels(self.child, self.kind).observe(
                    time.perf_counter() - started
                )

    async def aclose(self) -> None:
        await self.inner.aclose()
