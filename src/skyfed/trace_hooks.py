"""What logging and the client need of the current trace, without loading OpenTelemetry.

`skyfed.observability.tracing` fills these in when imported (every zone process);
an agent or a CLI command that traces nothing never imports it, and starts in
a third of the time.
"""

from __future__ import annotations

from collections.abc import Callable

# The current trace and span ids, as hex, for log lines.
ids: Callable[[], tuple[str, str] | None] = lambda: None  # noqa: E731
# The W3C traceparent of the current span, for a call's headers.
traceparent: Callable[[], str | None] = lambda: None  # noqa: E731
