"""Traces across the zone tree (OpenTelemetry), one `Tracing` per zone process or agent.

The W3C `traceparent` of the call being served is always carried on: read from an
incoming request (HTTP headers, or the AMQP envelope's headers), written into every
call to a child, stored with each durable task and agent command. So one create
entered at the root is one trace down to the agent's boot, whichever zones on the
way record spans. A zone records spans only when something exports them
(`otlp_endpoint`, `trace_console`, or an exporter a test adds); otherwise it
starts none and costs one header parse per request.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from skyfed import trace_hooks
from skyfed.wire import TRACEPARENT

_propagator = TraceContextTextMapPropagator()

__all__ = ["TRACEPARENT", "SpanKind", "Tracing", "attached", "current_traceparent"]


class Tracing:
    def __init__(
        self,
        service: str,
        zone: str,
        *,
        otlp_endpoint: str | None = None,
        console: bool = False,
    ) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service, "skyfed.zone": zone}),
        )
        self.tracer = self.provider.get_tracer("skyfed")
        self.enabled = False
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.export(OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint)), batch=True)
        if console:
            # The standard output of now (the SDK's default is the one at its import).
            self.export(ConsoleSpanExporter(out=sys.stdout), batch=False)

    def export(self, exporter: SpanExporter, *, batch: bool = False) -> None:
        """Record spans from now on and hand them to `exporter` (a batch in the
        background, or each as it ends: tests and the console)."""
        processor: SpanProcessor
        if batch:
            # A zone at 200 creates/s ends about 1,100 spans/s: SDK's default queue of
            # 2,048 (dropping beyond) with an export every 5 s leaves no room for a burst.
            processor = BatchSpanProcessor(
                exporter, max_queue_size=32768, schedule_delay_millis=1000
            )
        else:
            processor = SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.enabled = True

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        parent: str | None = None,
    ) -> Iterator[Span | None]:
        """A span, current inside the block; None (and nothing started) when spans are
        not exported. `parent`: a stored `traceparent` to continue instead of the
        current context (a task, an agent command)."""
        with attached(parent) if parent is not None else contextlib.nullcontext():
            if not self.enabled:
                yield None
                return
            with self.tracer.start_as_current_span(
                name, kind=kind, attributes=attributes, record_exception=True
            ) as span:
                yield span

    def flush(self) -> None:
        """Hands every ended span to the exporters (at a process's end)."""
        if self.enabled:
            self.provider.force_flush(timeout_millis=5000)


def current_traceparent() -> str | None:
    """The `traceparent` of the current span or the trace carried in, for storing."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def attached(traceparent: str | None) -> Iterator[None]:
    """The trace named by `traceparent` is current inside the block (an unreadable
    or missing one: a new trace starts at the next span)."""
    if not traceparent:
        yield
        return
    token = otel_context.attach(_propagator.extract({TRACEPARENT: traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def annotate(attributes: Mapping[str, Any]) -> None:
    """Adds to the current span, when one records: cheaper than a span of its own."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


def failed(span: Span | None, description: str) -> None:
    """Marks a span as an error (a refused request, a failed task attempt)."""
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, description))


def _ids() -> tuple[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _traces_url(endpoint: str) -> str:
    """`otlp_endpoint` is the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


# Log lines name the span they were written in; calls carry it on.
trace_hooks.ids = _ids
trace_hooks.traceparent = current_traceparent
