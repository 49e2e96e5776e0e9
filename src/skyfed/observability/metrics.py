"""One registry of Prometheus metrics per zone process.

Each process keeps its own figures and is scraped on its own (a zone's API
process at `/metrics`, a `skyfed worker` on its metrics port); the scrape
config's target labels (`zone`, `process`) tell them apart, so
`sum by (zone)` adds a zone's processes up. Features declare their own metric
families on the registry (`zones/metrics.py`, `tasks/metrics.py`, ...).
Figures that are states rather than events (a child's state, free units per
flavor, tasks by state) are read when scraped: a `Collector` yields them from
what the feature holds, and an async `refresh` fetches what needs the database
first, at most once per `refresh_every` seconds however often it is scraped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a cached answer (0.5 ms) to a child near its timeout (10 s).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Tasks and agent commands run longer: a boot, a child's placement, a retry's wait.
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

Refresh = Callable[[], Awaitable[None]]


class _Scraped(Collector):
    """Yields a feature's state figures, computed when scraped."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


class Metrics:
    def __init__(self, refresh_every: float = 5.0, refresh_timeout: float = 2.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.refresh_every = refresh_every
        self.refresh_timeout = refresh_timeout
        self._refreshes: list[Refresh] = []
        self._refreshed = 0.0
        self._lock = asyncio.Lock()
        self._infos: dict[str, Info] = {}

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
        return Counter(name, doc, tuple(labels), registry=self.registry)

    def histogram(
        self,
        name: str,
        doc: str,
        labels: Iterable[str] = (),
        buckets: Iterable[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        return Histogram(name, doc, tuple(labels), registry=self.registry, buckets=tuple(buckets))

    def info(self, name: str, doc: str, labels: dict[str, str]) -> None:
        """A constant `<name>_info` series (set again on a restart in-process)."""
        family = self._infos.get(name)
        if family is None:
            family = self._infos[name] = Info(name, doc, registry=self.registry)
        family.info(labels)

    def scraped(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Figures computed at each scrape (`collect` must not block: no I/O)."""
        self.registry.register(_Scraped(collect))

    def refreshed(self, refresh: Refresh) -> None:
        """An async step run before a scrape (at most every `refresh_every` s) to fetch
        what a scraped collector then reads, such as counts from the database."""
        self._refreshes.append(refresh)

    async def render(self) -> bytes:
        """The text exposition of every figure, refreshed when due."""
        async with self._lock:  # concurrent scrapes refresh once
            if time.monotonic() - self._refreshed >= self.refresh_every:
                for refresh in self._refreshes:
                    try:
                        await asyncio.wait_for(refresh(), self.refresh_timeout)
                    except Exception as exc:  # a figure goes stale; the scrape still answers
                        log.warning("metrics refresh failed", extra={"error": repr(exc)})
                self._refreshed = time.monotonic()
        return generate_latest(self.registry)
