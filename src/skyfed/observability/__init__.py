"""A zone's metrics (Prometheus) and traces (OpenTelemetry); see docs/observability.md."""
