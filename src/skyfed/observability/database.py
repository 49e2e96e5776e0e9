"""The database pool's use, read when scraped: a pool always at its size with
requests waiting is the first sign a zone needs more connections or fewer workers."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.pool import QueuePool

from skyfed.db.engine import Database
from skyfed.observability.metrics import Metrics


def watch_pool(metrics: Metrics, db: Database) -> None:
    def collect() -> Iterable[Metric]:
        pool = db.engine.sync_engine.pool
        if not isinstance(pool, QueuePool):
            return
        yield GaugeMetricFamily(
            "skyfed_db_pool_size", "Connections the pool keeps open.", value=pool.size()
        )
        yield GaugeMetricFamily(
            "skyfed_db_pool_checked_out",
            "Connections in use by a transaction now.",
            value=pool.checkedout(),
        )
        yield GaugeMetricFamily(
            "skyfed_db_pool_overflow",
            "Connections opened beyond the pool's size (negative: not all of it opened yet).",
            value=pool.overflow(),
        )
        yield GaugeMetricFamily(
            "skyfed_db_pool_limit",
            "The most connections the pool may hold at once (size plus overflow allowed).",
            value=pool.size() + pool._max_overflow,
        )

    metrics.scraped(collect)
