"""What container moves report: objects and bytes copied, moves ended, time throttled."""

from __future__ import annotations

from skyfed.observability.metrics import Metrics


class MoveMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.objects = metrics.counter(
            "skyfed_container_move_objects",
            "Objects container moves copied, skipped (there already, or newer there) or"
            " found deleted meanwhile, and cleaned where they were.",
            ("outcome",),
        )
        self.bytes = metrics.counter(
            "skyfed_container_move_bytes", "Bytes container moves copied between clusters."
        )
        self.ended = metrics.counter(
            "skyfed_container_moves_ended",
            "Container moves that ended in this process, by how (done, cancelled).",
            ("outcome",),
        )
        self.throttled = metrics.counter(
            "skyfed_container_move_throttled_seconds",
            "Seconds container moves waited for their clusters' bandwidth (move_bandwidth).",
        )
        for outcome in ("copied", "skipped", "gone", "cleaned"):
            self.objects.labels(outcome)
        for outcome in ("done", "cancelled"):
            self.ended.labels(outcome)
