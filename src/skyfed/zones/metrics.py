"""The zones feature's figures: each child's state and polls, and the subtree summary.

Names and labels are bounded: a child is labelled by its name (the operator's
list of children), a flavor by its name (the zone's flavors); no ids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from skyfed.observability.metrics import Metrics
from skyfed.zones.links import ChildLinks
from skyfed.zones.view import ZoneView

CHILD_STATES = ("active", "offline")


class ZoneMetrics:
    def __init__(self, metrics: Metrics, view: ZoneView, links: ChildLinks) -> None:
        self.view = view
        self.links = links
        self.polls = metrics.counter(
            "skyfed_child_zone_polls",
            "Polls of each child zone for its report, by outcome (ok or failed).",
            ("child", "outcome"),
        )
        self.poll_duration = metrics.histogram(
            "skyfed_child_zone_poll_duration_seconds",
            "Time a child zone took to answer a poll (or to fail it).",
            ("child",),
        )
        metrics.scraped(self._collect)
        links.on_drop.append(self.forget)

    def polled(self, child: str, seconds: float, ok: bool) -> None:
        self.polls.labels(child, "ok" if ok else "failed").inc()
        self.poll_duration.labels(child).observe(seconds)

    def forget(self, child: str) -> None:
        """A removed child's series go with it."""
        for family, labels in (
            (self.polls, (child, "ok")),
            (self.polls, (child, "failed")),
            (self.poll_duration, (child,)),
        ):
            with contextlib.suppress(KeyError):
                family.remove(*labels)

    def _collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "skyfed_child_zone_state",
            "1 for the state each child zone is in (active: answering polls; offline: "
            "poll_failures polls in a row failed), 0 for the others.",
            labels=("child", "state"),
        )
        failures = GaugeMetricFamily(
            "skyfed_child_zone_consecutive_failures",
            "Polls of the child that failed in a row (0 once one succeeds).",
            labels=("child",),
        )
        for child in self.links.rows.values():  # as the poller last recorded them
            for name in CHILD_STATES:
                state.add_metric((child.name, name), 1.0 if child.state == name else 0.0)
            failures.add_metric((child.name,), float(child.failures or 0))
        yield state
        yield failures
        yield from self._summary()

    def _summary(self) -> Iterable[Metric]:
        summary, _ = self.view.summary()
        unreachable = self.view.unreachable()
        figures = (
            ("skyfed_summary_hosts", "Online hosts in the subtree.", summary.hosts),
            (
                "skyfed_summary_disabled_hosts",
                "Online hosts in the subtree that an admin disabled.",
                summary.disabled,
            ),
            ("skyfed_summary_zones", "Zones of the subtree that answered.", summary.zones),
            (
                "skyfed_summary_unreachable_zones",
                "Zones below out of reach now (offline children and what they reported).",
                len(unreachable.paths),
            ),
        )
        for name, doc, value in figures:
            yield GaugeMetricFamily(name, doc, value=float(value))
        units = GaugeMetricFamily(
            "skyfed_summary_free_units",
            "How many more servers of each flavor fit in the subtree.",
            labels=("flavor",),
        )
        for flavor, count in sorted(summary.fits.items()):
            units.add_metric((flavor,), float(count))
        yield units
