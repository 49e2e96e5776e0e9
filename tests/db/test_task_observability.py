"""Tasks carry the trace that queued them, across retries and workers, and are counted:
runs by kind and outcome, retries, lease expiries, and states read from the database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import update

from skyfed.db.base import utcnow
from skyfed.db.engine import Database
from skyfed.observability.metrics import Metrics
from skyfed.observability.tracing import Tracing
from skyfed.tasks.kinds import Kind
from skyfed.tasks.metrics import TaskMetrics
from skyfed.tasks.models import Task
from skyfed.tasks.store import TaskStore
from skyfed.tasks.worker import RetryLater, TaskFailed, Worker
from tests.scrapes import samples, value


class Observed:
    def __init__(self, db: Database) -> None:
        self.store = TaskStore(db, max_attempts=3, backoff_base=0.01, backoff_cap=0.02)
        self.metrics = Metrics(refresh_every=0.0)
        self.task_metrics = TaskMetrics(self.metrics, self.store)
        self.tracing = Tracing("skyfed-zone", "z")
        self.spans = InMemorySpanExporter()
        self.tracing.export(self.spans)
        self.calls: dict[str, int] = {}

    async def enqueue(self, kind: str, resource: str) -> Task:
        async with self.store.db.session() as session:
            task = self.store.enqueue(
                session, kind=kind, resource_type="thing", resource_id=resource
            )
            await session.commit()
        self.store.notify()
        return task

    async def scrape(self) -> dict[Any, float]:
        return samples((await self.metrics.render()).decode())

    def worker(self, **options: Any) -> Worker:
        return Worker(
            self.store,
            self.store.kinds,
            poll_interval=0.02,
            tracing=self.tracing,
            metrics=self.task_metrics,
            **options,
        )


@pytest.fixture
def observed(db: Database) -> Iterator[Observed]:
    made = Observed(db)

    async def ok(task: Task) -> dict[str, Any]:
        return {}

    async def flaky(task: Task) -> dict[str, Any]:
        made.calls[task.id] = made.calls.get(task.id, 0) + 1
        if made.calls[task.id] == 1:
            raise RetryLater("not yet")
        return {}

    async def bad(task: Task) -> None:
        raise TaskFailed("never")

    made.store.register({"ok": Kind(ok), "flaky": Kind(flaky), "bad": Kind(bad)})
    made.task_metrics.zero(made.store.kinds)
    yield made
    made.tracing.provider.shutdown()


async def test_attempts_continue_the_trace_that_queued_them_and_are_counted(
    observed: Observed,
) -> None:
    before = await observed.scrape()
    assert value(before, "skyfed_task_runs_total", kind="ok", outcome="succeeded") == 0
    with observed.tracing.span("POST /v1/things") as request:
        assert request is not None
        tasks = [
            await observed.enqueue("ok", "a"),
            await observed.enqueue("ok", "b"),
            await observed.enqueue("flaky", "c"),
            await observed.enqueue("bad", "d"),
        ]
    queued = await observed.scrape()
    assert value(queued, "skyfed_tasks", kind="ok", state="queued") == 2
    assert value(queued, "skyfed_tasks", kind="bad", state="failed") == 0
    assert value(queued, "skyfed_task_queue_depth", kind="ok") == 2
    assert value(queued, "skyfed_task_queue_depth", kind="flaky") == 1
    oldest = value(queued, "skyfed_task_queue_oldest_seconds", kind="ok")
    assert oldest is not None and oldest >= 0

    job = asyncio.create_task(observed.worker().run())
    try:
        for task in tasks:
            assert await observed.store.wait(task.id, timeout=20) is not None
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)

    after = await observed.scrape()
    expected = {
        ("ok", "succeeded"): 2,
        ("flaky", "retried"): 1,
        ("flaky", "succeeded"): 1,
        ("bad", "failed"): 1,
        ("bad", "succeeded"): 0,
    }
    for (kind, outcome), count in expected.items():
        assert value(after, "skyfed_task_runs_total", kind=kind, outcome=outcome) == count
    assert value(after, "skyfed_task_retries_total", kind="flaky") == 1
    assert value(after, "skyfed_task_retries_total", kind="ok") == 0
    assert value(after, "skyfed_task_run_duration_seconds_count", kind="ok") == 2
    assert value(after, "skyfed_task_wait_seconds_count", kind="flaky") == 2
    assert value(after, "skyfed_tasks", kind="bad", state="failed") == 1
    assert value(after, "skyfed_tasks", kind="ok", state="queued") == 0
    assert value(after, "skyfed_task_queue_depth", kind="ok") == 0

    # Every attempt, the retry too, is a child of the request that queued its task.
    spans: tuple[ReadableSpan, ...] = observed.spans.get_finished_spans()
    context = request.get_span_context()
    attempts = [s for s in spans if s.name.startswith("task ")]
    assert (
        sorted(s.name for s in attempts)
        == ["task bad", "task flaky", "task flaky"] + ["task ok"] * 2
    )
    for span in attempts:
        assert span.context is not None and span.context.trace_id == context.trace_id
        assert span.parent is not None and span.parent.span_id == context.span_id
    flaky = sorted(
        (s for s in attempts if s.name == "task flaky"),
        key=lambda s: s.attributes["skyfed.task.attempt"],  # type: ignore[index]
    )
    assert [s.attributes["skyfed.task.attempt"] for s in flaky] == [1, 2]  # type: ignore[index]
    assert [s.status.status_code for s in flaky] == [StatusCode.ERROR, StatusCode.UNSET]
    assert [s.attributes["skyfed.task.outcome"] for s in flaky] == ["retried", "succeeded"]  # type: ignore[index]
    [bad] = [s for s in attempts if s.name == "task bad"]
    assert bad.status.status_code == StatusCode.ERROR and bad.status.description == "never"


async def test_a_lease_taken_back_from_a_dead_worker_is_counted_and_its_trace_kept(
    observed: Observed,
) -> None:
    with observed.tracing.span("POST /v1/things") as request:
        assert request is not None
        task = await observed.enqueue("ok", "a")
    [orphan] = await observed.store.claim("died", 1, lease=30)
    async with observed.store.db.session() as session:  # its lease lapses (not waited for)
        await session.execute(
            update(Task).where(Task.seq == orphan.seq).values(lease_expires=utcnow())
        )
        await session.commit()
    job = asyncio.create_task(observed.worker(sweep_interval=0.05).run())
    try:
        done = await observed.store.wait(task.id, timeout=10)
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert done is not None and done.attempts == 2
    scrape = await observed.scrape()
    assert value(scrape, "skyfed_task_lease_expiries_total", kind="ok") == 1
    assert value(scrape, "skyfed_task_retries_total", kind="ok") == 1
    assert value(scrape, "skyfed_task_runs_total", kind="ok", outcome="succeeded") == 1
    [attempt] = [s for s in observed.spans.get_finished_spans() if s.name == "task ok"]
    assert attempt.context is not None
    assert attempt.context.trace_id == request.get_span_context().trace_id
    assert attempt.attributes is not None and attempt.attributes["skyfed.task.attempt"] == 2
