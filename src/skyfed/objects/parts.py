"""What the objects feature keeps for a zone process: its storage clusters, polled.

The API process polls every cluster each `poll_interval` (log in, `/info`, the bytes
its accounts use) and records what it found; a cluster failing `poll_failures`
polls in a row is down. The zone summary's `storage` section is built from the
clusters as last recorded, so it travels up the tree with the rest of the summary.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Hashable, Iterable
from contextlib import asynccontextmanager

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.background import stop
from skyfed.core import Core
from skyfed.db.base import utcnow
from skyfed.objects.child_pool import ChildPool
from skyfed.objects.cluster_pool import ClusterPool
from skyfed.objects.locations import AccountHolders, HolderStats, Locations
from skyfed.objects.models import DOWN, UP, Container, StorageCluster
from skyfed.objects.move_metrics import MoveMetrics
from skyfed.objects.move_throttle import Throttles
from skyfed.objects.placed import PlacedCounts
from skyfed.objects.section import NAME, storage_section
from skyfed.objects.service import StorageClusters
from skyfed.objects.swift_auth import account_of
from skyfed.objects.swift_backend import BackendError, SwiftBackend
from skyfed.objects.swift_quota import KnownQuotas
from skyfed.observability.tracing import annotate
from skyfed.transport.h1_stream import StreamPool
from skyfed.zones.reach_policy import forbidden_address, parse_patterns
from skyfed.zones.summary import Summary

log = logging.getLogger(__name__)


class StorageParts:
    def __init__(self, core: Core) -> None:
        self.core = core
        settings = core.settings
        self.allowed_hosts = parse_patterns(settings.allowed_storage_hosts)
        self.clusters: dict[str, StorageCluster] = {}  # by id, as last read or polled
        # Forwarding's sessions with the clusters (a slow object may take its time).
        self.pool = ClusterPool(core.vault, timeout=30.0)
        # And with the child zones, for containers placed below this zone.
        self.children = ChildPool(core.vault, timeout=30.0)
        # The object data path (swift_fast): where containers are, and the streaming
        # connections to the clusters.
        self.locations = Locations()
        self.account_holders = AccountHolders()
        self.holder_stats = HolderStats()
        self.stream = StreamPool(
            max_connections=256, connect_timeout=30.0, address_check=forbidden_address
        )
        # The temporary URL keys each place's account was last given (swift_tempurl).
        self.tempurl_keys: dict[tuple[str, str, str], tuple[tuple[str, str], ...]] = {}
        # Accounts' quotas, kept a moment (swift_quota; the data path asks on uploads).
        self.quotas = KnownQuotas()
        # Placement (places.place): the containers per place, and the planner's dice.
        self.placed = PlacedCounts()
        # Until when no container of the zone moves, as last read (moving_counts).
        self.no_moves_until = 0.0
        # Container moves' bandwidth per cluster, in this process (move_throttle).
        self.move_metrics = MoveMetrics(core.metrics)
        self.throttles = Throttles(self.move_metrics.throttled.inc)
        self.rng = random.Random()
        self._placements = core.metrics.counter(
            "skyfed_storage_placements",
            "New containers' placement decisions, by what was chosen (cluster, zone, none).",
            ("chosen",),
        )
        self._placement_seconds = core.metrics.histogram(
            "skyfed_storage_placement_decision_seconds",
            "Time the planner took to choose a new container's place.",
        )
        self._version = 0
        self._polls = core.metrics.counter(
            "skyfed_storage_cluster_polls",
            "Polls of each storage cluster (log in, /info, accounts' use), ok or failed.",
            ("cluster", "outcome"),
        )
        core.metrics.scraped(self._collect)

    def placement_decided(self, chosen: str, started: float) -> None:
        """Count and time a placement decision, and note it on the request's span."""
        seconds = time.perf_counter() - started
        self._placements.labels(chosen).inc()
        self._placement_seconds.observe(seconds)
        annotate(
            {"skyfed.placement.chosen": chosen, "skyfed.placement.decision_ms": seconds * 1000}
        )

    def registry(self, session: AsyncSession) -> StorageClusters:
        return StorageClusters(
            session,
            self.core.vault,
            self.allowed_hosts,
            self.core.settings.poll_timeout,
        )

    async def child_removed(self, session: AsyncSession, child_id: str) -> None:
        """Forget the containers placed in a child removed by force (they live on
        only there, and are served by it)."""
        await session.execute(delete(Container).where(Container.child_id == child_id))
        self.locations.forget_place(child_id)
        await self.children.forget(child_id)

    # -- the summary section ---------------------------------------------------------

    @property
    def version(self) -> Hashable:
        return self._version

    def summary(self) -> Summary:
        if not self.clusters:  # a zone without clusters reports no storage at all
            return Summary()
        return Summary(sections={NAME: storage_section(self.clusters.values())})

    # -- polling ---------------------------------------------------------------------

    async def load(self) -> None:
        async with self.core.db.session() as session:
            rows = (await session.scalars(select(StorageCluster))).all()
        fresh = {row.id: row for row in rows}
        for cluster_id, known in self.clusters.items():
            now = fresh.get(cluster_id)
            if now is None or _reach(now) != _reach(known):
                self.locations.forget_place(cluster_id)
        self.clusters = fresh
        self._version += 1

    async def cycle(self) -> tuple[int, int]:
        """Polls every cluster once; (polled, answered)."""
        await self.load()
        results = await asyncio.gather(*(self._poll(c) for c in list(self.clusters.values())))
        self._version += 1
        return len(results), sum(results)

    async def _poll(self, cluster: StorageCluster) -> bool:
        settings = self.core.settings
        backend = SwiftBackend(
            cluster.auth_url,
            cluster.username,
            self.core.vault.decrypt(cluster.password_secret),
            timeout=settings.poll_timeout,
        )
        try:
            async with asyncio.timeout(settings.poll_timeout * 2):
                await backend.authenticate()
                info = await backend.info()
                used = 0
                for account in await self._accounts(cluster):
                    used += await backend.account_bytes(account)
            values: dict[str, object] = {
                "state": UP,
                "failures": 0,
                "last_error": "",
                "last_seen": utcnow(),
                "used_bytes": used,
                "info": {
                    "version": info["swift"].get("version"),
                    "policies": _policies(info),
                    "slo": info.get("slo"),
                    "tempurl": info.get("tempurl"),
                    "max_file_size": info["swift"].get("max_file_size"),
                },
            }
            ok = True
        except (BackendError, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, BackendError) else "no answer in time"
            failures = cluster.failures + 1
            state = DOWN if failures >= settings.poll_failures else cluster.state
            if state == DOWN and cluster.state != DOWN:
                log.warning(
                    "storage cluster down", extra={"cluster": cluster.name, "error": reason}
                )
            values = {"state": state, "failures": failures, "last_error": reason[:512]}
            ok = False
        finally:
            await backend.aclose()
        self._polls.labels(cluster.name, "ok" if ok else "failed").inc()
        async with self.core.db.session() as session:
            await session.execute(
                update(StorageCluster).where(StorageCluster.id == cluster.id).values(**values)
            )
            await session.commit()
        for key, value in values.items():
            setattr(cluster, key, value)
        return ok

    async def _accounts(self, cluster: StorageCluster) -> list[str]:
        """The accounts skyfed keeps on the cluster, those of the projects with a
        container there: their bytes are the cluster's use."""
        async with self.core.db.session() as session:
            projects = await session.scalars(
                select(Container.project_id).where(Container.cluster_id == cluster.id).distinct()
            )
            return [account_of(project_id) for project_id in projects]

    async def _loop(self) -> None:
        interval = self.core.settings.poll_interval
        while True:
            started = time.monotonic()
            try:
                await self.cycle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("storage poll failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    @asynccontextmanager
    async def lifespan(self, api: bool) -> AsyncIterator[None]:
        """The API process polls the clusters; a worker-only process reads what it records."""
        await self.load()
        tasks = [asyncio.create_task(self._loop(), name="storage-poll")] if api else []
        try:
            yield
        finally:
            await stop(tasks)
            await self.pool.close()
            await self.children.close()
            await self.stream.aclose()

    # -- metrics ---------------------------------------------------------------------

    def _collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "skyfed_storage_cluster_state",
            "1 for the state each storage cluster is in (up, down), 0 for the other.",
            labels=("cluster", "state"),
        )
        capacity = GaugeMetricFamily(
            "skyfed_storage_cluster_capacity_bytes",
            "The bytes each cluster can hold, as registered.",
            labels=("cluster",),
        )
        used = GaugeMetricFamily(
            "skyfed_storage_cluster_used_bytes",
            "The bytes skyfed's accounts use on each cluster, as last polled.",
            labels=("cluster",),
        )
        for cluster in self.clusters.values():
            for name in (UP, DOWN):
                state.add_metric((cluster.name, name), 1.0 if cluster.state == name else 0.0)
            capacity.add_metric((cluster.name,), float(cluster.capacity_bytes))
            used.add_metric((cluster.name,), float(cluster.used_bytes))
        yield state
        yield capacity
        yield used


def _reach(cluster: StorageCluster) -> tuple[object, ...]:
    """What requests forwarded to a cluster depend on."""
    return (cluster.auth_url, cluster.username, cluster.password_secret, dict(cluster.tiers))


def _policies(info: dict[str, object]) -> list[str]:
    swift = info.get("swift")
    policies = swift.get("policies", []) if isinstance(swift, dict) else []
    return sorted(str(p.get("name")) for p in policies if isinstance(p, dict))
