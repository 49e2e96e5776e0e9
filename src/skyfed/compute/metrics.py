"""The compute feature's figures: placement decisions and how placements end."""

from __future__ import annotations

from skyfed.observability.metrics import TASK_BUCKETS, Metrics

# What a decision chose: a host of this zone, a child zone, or nothing fit.
DECISIONS = ("host", "zone", "none")
# How a place task ended here: placed on a host of this zone or in a child, failed
# (nothing accepted the server), gone (deleted meanwhile), cancelled.
PLACEMENTS = ("host", "zone", "failed", "gone", "cancelled")


class PlacementMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.decisions = metrics.counter(
            "skyfed_placement_decisions",
            "Placement decisions made by this zone, by what was chosen: host, zone, none.",
            ("outcome",),
        )
        self.decision_duration = metrics.histogram(
            "skyfed_placement_decision_duration_seconds",
            "Time of one placement decision (the planner over hosts and children).",
        )
        self.placements = metrics.counter(
            "skyfed_placements",
            "Place tasks ended at this zone, by outcome: host, zone (placed in a child), "
            "failed, gone, cancelled.",
            ("outcome",),
        )
        self.placement_duration = metrics.histogram(
            "skyfed_placement_duration_seconds",
            "Time of a place task's run at this zone, from its start to its outcome "
            "(a child's placement included).",
            buckets=TASK_BUCKETS,
        )
        self.refusals = metrics.counter(
            "skyfed_placement_refusals",
            "Chosen candidates that then refused the server (a host's claim lost a "
            "race, a child found no room), by kind: host or zone.",
            ("kind",),
        )
