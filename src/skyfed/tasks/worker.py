"""Workers: claim tasks, run their handlers concurrently, renew leases, sweep dead workers' tasks.

Any number of workers, in any number of processes, share one zone's database.
A handler must be idempotent: after a crash its task runs again from the start.
Each attempt continues the trace of the request that queued its task, in
whichever process and after however many retries it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext

from opentelemetry.trace import Span

from skyfed.logs import request_id
from skyfed.observability.tracing import SpanKind, Tracing, failed
from skyfed.tasks.kinds import Kind
from skyfed.tasks.metrics import TaskMetrics
from skyfed.tasks.models import QUEUED, Task
from skyfed.tasks.store import TaskStore

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """A transient failure: run the task again after a backoff."""


class TaskFailed(Exception):
    """A permanent failure: the task ends failed with this message."""


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        store: TaskStore,
        kinds: Mapping[str, Kind],
        *,
        concurrency: int = 16,
        lease: float = 30.0,
        poll_interval: float = 0.5,
        sweep_interval: float = 5.0,
        name: str | None = None,
        tracing: Tracing | None = None,
        metrics: TaskMetrics | None = None,
    ) -> None:
        self.store = store
        self.tracing = tracing
        self.metrics = metrics
        self.kinds = kinds
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self.name = name or worker_name()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._reserved = 0  # slots promised to tasks born running, not yet committed
        self._slot_free = asyncio.Event()

    async def run(self) -> None:
        """Work until cancelled; in-flight tasks are cancelled with it (their leases lapse)."""
        helpers = [
            asyncio.create_task(self._renew_leases(), name="task-leases"),
            asyncio.create_task(self._sweep(), name="task-sweeper"),
        ]
        self.store.local = self  # new tasks may be born running here while it works
        try:
            while True:
                asked = self._free()
                if asked > 0 and await self._claim() == asked:
                    continue  # slots ran out before the queue did: there may be more
                await self._idle()
        finally:
            if self.store.local is self:
                self.store.local = None
            for job in [*helpers, *self._running.values()]:
                job.cancel()
            for job in [*helpers, *self._running.values()]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job

    def _free(self) -> int:
        return self.concurrency - len(self._running) - self._reserved

    # -- tasks born running (TaskStore.births) ------------------------------------------

    def reserve(self) -> bool:
        """A slot for a task about to be committed as running on this worker."""
        if self._free() <= 0:
            return False
        self._reserved += 1
        return True

    def unreserve(self, count: int) -> None:
        self._reserved -= count
        self._slot_free.set()

    def adopt(self, tasks: Sequence[Task]) -> None:
        """Run tasks committed as running with this worker's lease, as if claimed."""
        self._reserved -= len(tasks)
        for task in tasks:
            self._start(task)

    # -- claiming ------------------------------------------------------------------

    async def _claim(self) -> int:
        free = self._free()
        if free <= 0:
            return 0
        self.store.wakeup.clear()
        try:
            tasks = await self.store.claim(self.name, free, self.lease)
        except Exception:  # the database may be down: try again after a pause
            log.exception("claiming tasks failed")
            await asyncio.sleep(self.poll_interval)
            return 0
        for task in tasks:
            self._start(task)
        return len(tasks)

    def _start(self, task: Task) -> None:
        job = asyncio.create_task(self._execute(task), name=f"task-{task.kind}-{task.id}")
        self._running[task.seq] = job
        job.add_done_callback(lambda _, seq=task.seq: self._done(seq))

    def _done(self, seq: int) -> None:
        self._running.pop(seq, None)
        self._slot_free.set()

    async def _idle(self) -> None:
        """Wait for a wake-up (or, with every slot taken, a free slot) or the poll
        interval, whichever comes first. A slot freed while others are free claims
        nothing: the last claim took all that was due, a new task wakes us up."""
        event = self._slot_free if self._free() <= 0 else self.store.wakeup
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self.poll_interval)
        finally:
            self._slot_free.clear()

    async def _execute(self, task: Task) -> None:
        token = request_id.set(task.request_id or f"task-{task.id}")
        self.store.started_here(task.id)
        if self.metrics is not None:
            self.metrics.started(task)
        began = time.perf_counter()
        outcome = "unrecorded"
        try:
            with self._span(task) as span:
                outcome = await self._attempt(task, span)
                if span is not None:
                    span.set_attribute("skyfed.task.outcome", outcome)
        except asyncio.CancelledError:
            outcome = "abandoned"  # the worker stops: the lease lapses and it runs again
            raise
        except Exception:  # recording the outcome failed: the lease will lapse and it reruns
            log.exception("recording task %s failed", task.id)
        finally:
            self.store.ended_here(task.id)
            request_id.reset(token)
            if self.metrics is not None:
                self.metrics.ran(task, outcome, time.perf_counter() - began)

    def _span(self, task: Task) -> AbstractContextManager[Span | None]:
        """The attempt's span, in the trace of the request that queued the task."""
        if self.tracing is None:
            return nullcontext()
        return self.tracing.span(
            f"task {task.kind}",
            kind=SpanKind.CONSUMER,
            parent=task.traceparent,
            attributes={
                "skyfed.task.kind": task.kind,
                "skyfed.task.id": task.id,
                "skyfed.task.attempt": task.attempts,
                "skyfed.task.resource_type": task.resource_type,
                "skyfed.task.resource_id": task.resource_id,
            },
        )

    async def _attempt(self, task: Task, span: Span | None) -> str:
        """Runs the task's handler once and records what came of it; the outcome."""
        kind = self.kinds.get(task.kind)
        if kind is None:
            error = f"no handler for '{task.kind}'"
            await self.store.fail(task, self.name, error, retry=False)
            failed(span, error)
            return "failed"
        try:
            result = await kind.run(task)
        except asyncio.CancelledError:
            raise
        except TaskFailed as exc:
            return await self._failed(task, kind, str(exc), span, retry=False)
        except RetryLater as exc:
            return await self._failed(task, kind, str(exc), span, retry=True)
        except Exception as exc:
            log.exception("task %s (%s) raised", task.id, task.kind)
            if span is not None:
                span.record_exception(exc)
            return await self._failed(task, kind, f"{type(exc).__name__}: {exc}", span, retry=True)
        if not await self.store.succeed(task, self.name, result):
            log.warning("task %s finished after its lease was lost", task.id)
            return "lost"
        return "succeeded"

    async def _failed(
        self, task: Task, kind: Kind, error: str, span: Span | None, *, retry: bool
    ) -> str:
        failed(span, error)
        state = await self.store.fail(task, self.name, error, retry=retry)
        if state == "failed" and kind.give_up is not None:
            await kind.give_up(task, error)
        return "retried" if state == QUEUED else "failed"

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.store.renew(self.name, list(self._running), self.lease)
            except Exception:
                log.exception("renewing leases failed")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                requeued, gave_up = await self.store.sweep()
                if self.metrics is not None:
                    self.metrics.swept(requeued, gave_up)
                if requeued:
                    log.warning("requeued %d tasks whose worker stopped", len(requeued))
                for task in gave_up:
                    kind = self.kinds.get(task.kind)
                    if kind is not None and kind.give_up is not None:
                        await kind.give_up(task, task.error)
            except Exception:
                log.exception("sweeping leases failed")
