"""Task storage: enqueue, claim with a lease, finish, retry with backoff, sweep expired leases.

Claiming is one UPDATE ... RETURNING over a subquery that picks, in arrival
order, queued tasks with no earlier unfinished task on the same resource. On
PostgreSQL the subquery locks what it picks with SKIP LOCKED, so competing
workers take different tasks; on SQLite the statement takes the write lock at
once, so claims are serialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, exists, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed import trace_hooks
from skyfed.coalesce import Coalescer
from skyfed.db.base import new_id, utcnow
from skyfed.db.engine import Database
from skyfed.errors import Conflict, NotFound
from skyfed.tasks.kinds import Kind
from skyfed.tasks.models import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    UNFINISHED,
    Task,
)

FINISHED = (SUCCEEDED, FAILED, CANCELLED)


def backoff(attempts: int, base: float, cap: float) -> float:
    """Exponential with jitter: about base, 2 base, 4 base ... up to cap."""
    return min(cap, base * 2 ** max(attempts - 1, 0)) * random.uniform(0.8, 1.2)


class LocalRunner(Protocol):
    """A worker of this process that takes tasks born running (see `TaskStore.births`)."""

    name: str
    lease: float

    def reserve(self) -> bool: ...
    def unreserve(self, count: int) -> None: ...
    def adopt(self, tasks: Sequence[Task]) -> None: ...


class Births:
    """Tasks of one transaction, each born running on `runner` (this process's worker
    as the transaction began) when it has a free slot, else queued as usual."""

    def __init__(self, runner: LocalRunner | None) -> None:
        self.runner = runner
        self.running: list[Task] = []
        self.queued = 0


class TaskStore:
    def __init__(
        self,
        db: Database,
        *,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self.db = db
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        # Set when a task is queued by this process: its workers claim at once.
        self.wakeup = asyncio.Event()
        # Told whenever tasks were queued here: the zone's bus wakes its other processes.
        self.on_notify: list[Callable[[], None]] = []
        # This process's worker, when it has one: new tasks may be born running on it.
        self.local: LocalRunner | None = None
        # Waiters of each task id, and the tasks this process's workers are running now.
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._running_here: set[str] = set()
        self._claims: dict[int, Any] = {}  # claim statements by limit
        # Every kind the zone's features declared, with its hooks: on the store, so a
        # process without workers cancels and retries too.
        self.kinds: dict[str, Kind] = {}
        self._successes: Coalescer[str, tuple[Task, dict[str, Any]], bool] = Coalescer(
            self._succeed_many, linger=0.001, max_items=500, max_in_flight=1, retry_alone=True
        )
        # Many waiters polling at once read their tasks in one statement.
        self._reads: Coalescer[None, str, Task | None] = Coalescer(
            self._read_many, linger=0.001, max_items=500, max_in_flight=1
        )
        table = Task.__table__
        self._succeed_statement = (
            update(table)
            .where(table.c.seq == bindparam("b_seq"))
            .values(
                state=SUCCEEDED,
                result=bindparam("b_result"),
                error="",
                finished_at=bindparam("b_now"),
                updated_at=bindparam("b_now"),
                lease_owner=None,
                lease_expires=None,
            )
        )

    def register(self, kinds: Mapping[str, Kind]) -> None:
        """Declare task kinds (a feature's, as the zone is composed); a name is taken once."""
        taken = kinds.keys() & self.kinds.keys()
        if taken:
            raise ValueError(f"task kinds declared twice: {', '.join(sorted(taken))}")
        self.kinds.update(kinds)

    # -- producing -------------------------------------------------------------

    def enqueue(
        self,
        session: AsyncSession,
        *,
        kind: str,
        resource_type: str,
        resource_id: str,
        payload: dict[str, Any] | None = None,
        project_id: str | None = None,
        request_id: str = "",
        traceparent: str | None = None,
        max_attempts: int | None = None,
        births: Births | None = None,
    ) -> Task:
        """Add a task to the caller's transaction; call `notify()` once it is committed.

        It continues `traceparent`, by default the trace being served: give the
        request's own where tasks of several requests are written together.
        With `births` (see `births()`), the task may start on this process's worker at
        the commit. Only for a resource's first task: nothing may be queued before it.
        """
        task = Task(
            id=new_id(),  # known before the commit, for whoever waits on it
            kind=kind,
            resource_type=resource_type,
            resource_id=resource_id,
            payload=payload or {},
            project_id=project_id,
            request_id=request_id,
            traceparent=traceparent or trace_hooks.traceparent(),
            max_attempts=max_attempts or self.max_attempts,
            state=QUEUED,
            run_after=utcnow(),
        )
        if births is not None:
            runner = births.runner
            if runner is not None and runner.reserve():
                task.state, task.attempts = RUNNING, 1
                task.lease_owner = runner.name
                task.lease_expires = task.run_after + timedelta(seconds=runner.lease)
                births.running.append(task)
            else:
                births.queued += 1
        session.add(task)
        return task

    @contextlib.contextmanager
    def births(self) -> Iterator[Births]:
        """`with store.births() as births:` enqueue with `births=births` and commit
        inside; at the end, with no error, the tasks born running start here and the
        workers are woken for the rest; on an error their slots are given back."""
        births = Births(self.local)
        try:
            yield births
        except BaseException:
            if births.running and births.runner is not None:
                births.runner.unreserve(len(births.running))
            raise
        if births.running and births.runner is not None:
            births.runner.adopt(births.running)
        if births.queued:
            self.notify()

    def notify(self) -> None:
        self.wakeup.set()
        for hook in self.on_notify:
            hook()

    # -- consuming -------------------------------------------------------------

    def _claim_statement(self, limit: int) -> Any:
        """The claim for up to `limit` tasks, built once per limit: building it costs
        more CPU than SQLite takes to run it."""
        stmt = self._claims.get(limit)
        if stmt is not None:
            return stmt
        t = Task.__table__.alias("t")
        p = Task.__table__.alias("p")
        earlier_unfinished = exists(
            select(literal(1))
            .select_from(p)
            .where(
                p.c.resource_id == t.c.resource_id,
                p.c.seq < t.c.seq,
                p.c.state.in_(UNFINISHED),
            )
        )
        pick = (
            select(t.c.seq)
            .where(t.c.state == QUEUED, t.c.run_after <= bindparam("now"), ~earlier_unfinished)
            .order_by(t.c.seq)
            .limit(limit)
        )
        if not self.db.is_sqlite:
            pick = pick.with_for_update(skip_locked=True, of=t)
        stmt = (
            update(Task)
            .where(Task.seq.in_(pick))
            .values(
                state=RUNNING,
                lease_owner=bindparam("owner"),
                lease_expires=bindparam("expires"),
                attempts=Task.attempts + 1,
                updated_at=bindparam("now"),
            )
            .returning(Task)
            .execution_options(synchronize_session=False)
        )
        self._claims[limit] = stmt
        return stmt

    async def claim(self, owner: str, limit: int, lease: float) -> list[Task]:
        if limit <= 0:
            return []
        now = utcnow()
        stmt = self._claim_statement(limit)
        params = {"now": now, "owner": owner, "expires": now + timedelta(seconds=lease)}
        async with self.db.session() as session:
            tasks = list((await session.scalars(stmt, params)).all())
            await session.commit()
        return sorted(tasks, key=lambda task: task.seq)

    async def renew(self, owner: str, seqs: Sequence[int], lease: float) -> int:
        if not seqs:
            return 0
        now = utcnow()
        async with self.db.session() as session:
            result = await session.execute(
                update(Task)
                .where(Task.seq.in_(seqs), Task.state == RUNNING, Task.lease_owner == owner)
                .values(lease_expires=now + timedelta(seconds=lease), updated_at=now)
            )
            await session.commit()
        return int(getattr(result, "rowcount", 0) or 0)

    async def succeed(self, task: Task, owner: str, result: dict[str, Any] | None) -> bool:
        """Record success; False when the lease was lost (another worker took the task).

        Successes recorded at the same moment share one transaction.
        """
        return await self._successes.submit(owner, (task, result or {}))

    async def _succeed_many(
        self, owner: str, items: list[tuple[Task, dict[str, Any]]]
    ) -> list[bool]:
        now = utcnow()
        held = (
            select(Task.seq)
            .where(
                Task.seq.in_([task.seq for task, _ in items]),
                Task.state == RUNNING,
                Task.lease_owner == owner,
            )
            .order_by(Task.seq)  # rows locked in one order by every writer: no deadlock
        )
        if not self.db.is_sqlite:
            held = held.with_for_update()
        async with self.db.session() as session:
            ours = set(await session.scalars(held))
            rows = [
                {"b_seq": task.seq, "b_result": result, "b_now": now}
                for task, result in items
                if task.seq in ours
            ]
            waiting = None
            if rows:
                await session.execute(self._succeed_statement, rows)
                # A task queued behind one of these on its resource can run now; workers
                # do not claim on every finished task, so wake them only for those.
                waiting = await session.scalar(
                    select(Task.seq)
                    .where(
                        Task.resource_id.in_({t.resource_id for t, _ in items if t.seq in ours}),
                        Task.state == QUEUED,
                    )
                    .limit(1)
                )
            await session.commit()
        for task, _ in items:
            if task.seq in ours:
                self._signal(task.id)
        if waiting is not None:
            self.notify()
        return [task.seq in ours for task, _ in items]

    async def fail(self, task: Task, owner: str, error: str, *, retry: bool) -> str:
        """Record a failure: queued again after a backoff, or failed for good. Returns the state."""
        now = utcnow()
        if retry and task.attempts < task.max_attempts:
            delay = backoff(task.attempts, self.backoff_base, self.backoff_cap)
            await self._finish(
                task,
                owner,
                state=QUEUED,
                error=error[:1024],
                run_after=now + timedelta(seconds=delay),
                updated_at=now,
                lease_owner=None,
                lease_expires=None,
            )
            return QUEUED
        await self._finish(
            task,
            owner,
            state=FAILED,
            error=error[:1024],
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires=None,
        )
        return FAILED

    async def _finish(self, task: Task, owner: str, **values: Any) -> bool:
        async with self.db.session() as session:
            result = await session.execute(
                update(Task)
                .where(Task.seq == task.seq, Task.state == RUNNING, Task.lease_owner == owner)
                .values(**values)
            )
            await session.commit()
        done = int(getattr(result, "rowcount", 0) or 0) == 1
        if done and values.get("state") in FINISHED:
            self._signal(task.id)
            self.notify()  # a task queued behind it may run now (failures are rare)
        return done

    async def sweep(self) -> tuple[list[Task], list[Task]]:
        """Queue again the tasks whose worker stopped renewing its lease (it died).

        Returns the tasks requeued, and those that ran out of attempts (failed).
        """
        now = utcnow()
        requeued: list[Task] = []
        failed: list[Task] = []
        async with self.db.session() as session:
            expired = (
                await session.scalars(
                    select(Task).where(Task.state == RUNNING, Task.lease_expires < now)
                )
            ).all()
            for task in expired:
                task.lease_owner, task.lease_expires, task.updated_at = None, None, now
                if task.attempts >= task.max_attempts:
                    task.state, task.finished_at = FAILED, now
                    task.error = (task.error + "; " if task.error else "") + "lease expired"
                    failed.append(task)
                else:
                    task.state, task.run_after = QUEUED, now
                    requeued.append(task)
            await session.commit()
        if expired:
            self.notify()
        for task in failed:
            self._signal(task.id)
        return requeued, failed

    # -- waiting for an outcome ----------------------------------------------------

    def _signal(self, task_id: str) -> None:
        for event in self._waiters.get(task_id, ()):
            event.set()

    def started_here(self, task_id: str) -> None:
        """A worker of this process took the task: its waiters stop reading the row."""
        self._running_here.add(task_id)
        self._signal(task_id)

    def ended_here(self, task_id: str) -> None:
        """The local run is over (finished, or queued again for any worker)."""
        self._running_here.discard(task_id)
        self._signal(task_id)

    async def wait(
        self, task_id: str, timeout: float, poll: float = 0.05, max_poll: float = 0.5
    ) -> Task | None:
        """The task once finished, or None after `timeout`.

        While a worker of this process runs the task, its end wakes the waiter and
        nothing is read. Otherwise the row is read every `poll` seconds, backing off
        to `max_poll` (a worker in another process may have it; many waiters must not
        flood the database with reads). The first read waits one `poll`: a task just
        queued is usually taken by a local worker by then.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        read = False
        try:
            while True:
                left = deadline - loop.time()
                event.clear()  # before the read: a signal during it must not be lost
                if task_id in self._running_here:
                    pause = left
                elif read or left <= 0:
                    task = await self._reads.submit(None, task_id)
                    if task is None:
                        raise NotFound(f"task '{task_id}' not found")
                    if task.state in FINISHED:
                        return task
                    pause = min(poll, deadline - loop.time())
                    poll = min(poll * 2, max_poll)
                else:
                    pause = min(poll, left)
                read = True
                if pause <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=pause)
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]

    # -- reading and operator actions -------------------------------------------

    async def _read_many(self, _: None, task_ids: list[str]) -> list[Task | None]:
        async with self.db.session() as session:
            found = {
                task.id: task
                for task in await session.scalars(select(Task).where(Task.id.in_(task_ids)))
            }
        return [found.get(task_id) for task_id in task_ids]

    async def get(self, task_id: str) -> Task:
        async with self.db.session() as session:
            task = await session.scalar(select(Task).where(Task.id == task_id))
        if task is None:
            raise NotFound(f"task '{task_id}' not found")
        return task

    async def list(
        self,
        *,
        project_id: str | None = None,
        state: str | None = None,
        resource_id: str | None = None,
        kind: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[Task]:
        """Newest first; `before` is the `seq` to page from."""
        query = select(Task).order_by(Task.seq.desc()).limit(limit)
        if project_id is not None:
            query = query.where(Task.project_id == project_id)
        if state is not None:
            query = query.where(Task.state == state)
        if resource_id is not None:
            query = query.where(Task.resource_id == resource_id)
        if kind is not None:
            query = query.where(Task.kind == kind)
        if before is not None:
            query = query.where(Task.seq < before)
        async with self.db.session() as session:
            return list((await session.scalars(query)).all())

    async def retry(self, task_id: str) -> Task:
        """Run a failed or cancelled task again, from a clean attempt count.

        A cancelled task whose request was undone (its kind has a cancel hook) is not
        run again: its resource no longer expects it; the request is made again instead.
        The kind's retry hook, if any, readies the resource in the same transaction.
        """
        now = utcnow()
        async with self.db.session() as session:
            task = await session.scalar(select(Task).where(Task.id == task_id))
            if task is None:
                raise NotFound(f"task '{task_id}' not found")
            if task.state not in (FAILED, CANCELLED):
                raise Conflict(
                    f"task '{task_id}' is {task.state}; only failed or cancelled tasks retry"
                )
            kind = self.kinds.get(task.kind)
            if task.state == CANCELLED and kind is not None and kind.cancel is not None:
                raise Conflict(
                    f"task '{task_id}' was cancelled and its {task.kind} request undone;"
                    " make the request again instead",
                    code="task_undone",
                )
            if kind is not None and kind.retry is not None:
                await kind.retry(session, task)
            task.state, task.attempts, task.run_after = QUEUED, 0, now
            task.finished_at, task.updated_at = None, now
            await session.commit()
        self.notify()
        return task

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task that has not begun, and undo what accepting its request set up.

        Only a queued task with no attempt yet: one queued again after a failed attempt
        may already have had effects beyond this zone (a child was asked), which no
        cancel here can call back. The check is in the UPDATE's WHERE, so a worker
        cannot claim the task in between; the kind's cancel hook runs in the same
        transaction, so a crash leaves the task and its resource both as they were or
        both undone.
        """
        now = utcnow()
        async with self.db.session() as session:
            task = await session.scalar(
                update(Task)
                .where(Task.id == task_id, Task.state == QUEUED, Task.attempts == 0)
                .values(state=CANCELLED, finished_at=now, updated_at=now)
                .returning(Task)
                .execution_options(synchronize_session=False)
            )
            if task is not None:
                kind = self.kinds.get(task.kind)
                if kind is not None and kind.cancel is not None:
                    await kind.cancel(session, task)
                await session.commit()
            else:
                await session.rollback()
                task = await session.scalar(select(Task).where(Task.id == task_id))
                if task is None:
                    raise NotFound(f"task '{task_id}' not found")
                raise _not_cancellable(task)
        self._signal(task_id)
        self.notify()  # tasks queued behind it on its resource may run now
        return task


def _not_cancellable(task: Task) -> Conflict:
    details = {"state": task.state, "attempts": task.attempts}
    if task.state == QUEUED:
        tries = "attempt" if task.attempts == 1 else "attempts"
        return Conflict(
            f"task '{task.id}' has begun ({task.attempts} {tries}): its effect may already"
            " be under way; wait for it, or for it to fail and be retried",
            code="task_begun",
            details=details,
        )
    return Conflict(
        f"task '{task.id}' is {task.state}; only queued tasks that have not begun can be cancelled",
        details=details,
    )
