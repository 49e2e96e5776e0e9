"""The task engine's figures (Prometheus).

Events are counted where they happen, by the process they happen in: attempts by
kind and outcome with their time, retries, leases taken back from dead workers.
States are read from the database when scraped (`skyfed_tasks`, the due queue):
those are the zone's, the same in each of its processes, so sum them with
`max by (zone)`, not `sum`. Finished tasks are never deleted, so the state gauge
counts only queued, running and failed ones (what an operator acts on, found
through the (state, run_after) index); the run counters tell the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from skyfed.db.base import utcnow
from skyfed.observability.metrics import TASK_BUCKETS, Metrics
from skyfed.tasks.models import FAILED, QUEUED, RUNNING, Task
from skyfed.tasks.store import TaskStore

# How an attempt ended: succeeded; failed (for good); retried (queued again after a
# backoff); lost (its lease had gone to another worker before the success was
# recorded); abandoned (its worker stopped mid-run: the lease lapses, it runs again);
# unrecorded (recording the outcome failed: the lease lapses, it runs again). A
# running task is never cancelled: only queued ones that have not begun can be.
OUTCOMES = ("succeeded", "failed", "retried", "lost", "abandoned", "unrecorded")
COUNTED_STATES = (QUEUED, RUNNING, FAILED)
OTHER = "other"  # a kind no feature of this build declares (a row an older one wrote)


class TaskMetrics:
    def __init__(self, metrics: Metrics, store: TaskStore) -> None:
        self.store = store
        self.runs = metrics.counter(
            "skyfed_task_runs",
            "Task attempts ended, by kind and outcome: succeeded, failed, retried, lost, "
            "abandoned, unrecorded.",
            ("kind", "outcome"),
        )
        self.duration = metrics.histogram(
            "skyfed_task_run_duration_seconds",
            "Time of a task attempt, its outcome recorded, by kind.",
            ("kind",),
            buckets=TASK_BUCKETS,
        )
        self.wait = metrics.histogram(
            "skyfed_task_wait_seconds",
            "Time from when a task was due (queued, or its backoff over) to the start of "
            "its attempt, by kind.",
            ("kind",),
            buckets=TASK_BUCKETS,
        )
        self.retries = metrics.counter(
            "skyfed_task_retries",
            "Tasks queued again to run another attempt, by kind: after a failed attempt, "
            "or after their worker's lease expired.",
            ("kind",),
        )
        self.lease_expiries = metrics.counter(
            "skyfed_task_lease_expiries",
            "Running tasks this process's sweep took back from a worker that stopped "
            "renewing its lease (it died), by kind.",
            ("kind",),
        )
        self._states: dict[tuple[str, str], int] | None = None  # None: never read yet
        self._due: dict[str, tuple[int, float]] = {}  # kind -> (count, oldest's age)
        metrics.refreshed(self._refresh)
        metrics.scraped(self._collect)

    def kind(self, name: str) -> str:
        """The label of a task's kind: one of the declared kinds, so a bounded set."""
        return name if name in self.store.kinds else OTHER

    def zero(self, kinds: Iterable[str]) -> None:
        """Every series of the declared kinds from 0, so a first event shows as a rise."""
        for kind in kinds:
            for outcome in OUTCOMES:
                self.runs.labels(kind, outcome)
            self.duration.labels(kind)
            self.wait.labels(kind)
            self.retries.labels(kind)
            self.lease_expiries.labels(kind)

    def started(self, task: Task) -> None:
        waited = (utcnow() - task.run_after).total_seconds()
        self.wait.labels(self.kind(task.kind)).observe(max(waited, 0.0))

    def ran(self, task: Task, outcome: str, seconds: float) -> None:
        kind = self.kind(task.kind)
        self.runs.labels(kind, outcome).inc()
        self.duration.labels(kind).observe(seconds)
        if outcome == "retried":
            self.retries.labels(kind).inc()

    def swept(self, requeued: Iterable[Task], failed: Iterable[Task]) -> None:
        for task in requeued:
            self.lease_expiries.labels(self.kind(task.kind)).inc()
            self.retries.labels(self.kind(task.kind)).inc()
        for task in failed:
            self.lease_expiries.labels(self.kind(task.kind)).inc()

    # -- read when scraped ------------------------------------------------------

    async def _refresh(self) -> None:
        now = utcnow()
        async with self.store.db.session() as session:
            by_state = await session.execute(
                select(Task.kind, Task.state, func.count())
                .where(Task.state.in_(COUNTED_STATES))
                .group_by(Task.kind, Task.state)
            )
            states: dict[tuple[str, str], int] = {}
            for kind, state, count in by_state:
                key = (self.kind(kind), state)
                states[key] = states.get(key, 0) + count
            due = await session.execute(
                select(Task.kind, func.count(), func.min(Task.run_after))
                .where(Task.state == QUEUED, Task.run_after <= now)
                .group_by(Task.kind)
            )
            queue: dict[str, tuple[int, float]] = {}
            for kind, count, oldest in due:
                label = self.kind(kind)
                known, age = queue.get(label, (0, 0.0))
                queue[label] = (known + count, max(age, _age(now, oldest)))
        self._states, self._due = states, queue

    def _collect(self) -> Iterable[Metric]:
        if self._states is None:
            return []
        kinds = sorted(self.store.kinds)
        tasks = GaugeMetricFamily(
            "skyfed_tasks",
            "Tasks queued, running and failed (for good), by kind and state; read from the "
            "zone's database.",
            labels=("kind", "state"),
        )
        for kind in _with_other(kinds, {k for k, _ in self._states}):
            for state in COUNTED_STATES:
                tasks.add_metric((kind, state), self._states.get((kind, state), 0))
        depth = GaugeMetricFamily(
            "skyfed_task_queue_depth",
            "Queued tasks that are due (their run_after has come), by kind; read from the "
            "zone's database.",
            labels=("kind",),
        )
        oldest = GaugeMetricFamily(
            "skyfed_task_queue_oldest_seconds",
            "How long the oldest due task has waited since it was due, by kind (0: none).",
            labels=("kind",),
        )
        for kind in _with_other(kinds, set(self._due)):
            count, age = self._due.get(kind, (0, 0.0))
            depth.add_metric((kind,), count)
            oldest.add_metric((kind,), age)
        return [tasks, depth, oldest]


def _with_other(kinds: list[str], seen: set[str]) -> list[str]:
    return [*kinds, OTHER] if OTHER in seen else kinds


def _age(now: datetime, since: datetime | None) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0
