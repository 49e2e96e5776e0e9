"""The task engine on SQLite and PostgreSQL: order, leases, retries, competing workers."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import select, update

from skyfed.db.base import utcnow
from skyfed.db.engine import Database
from skyfed.errors import Conflict
from skyfed.tasks.kinds import Kind
from skyfed.tasks.models import Task
from skyfed.tasks.store import TaskStore
from skyfed.tasks.worker import RetryLater, TaskFailed, Worker


async def _never_run(task: Task) -> None:
    raise AssertionError("these tests run no worker")


async def enqueue(store: TaskStore, resource: str, kind: str = "k", **payload: Any) -> Task:
    async with store.db.session() as session:
        task = store.enqueue(
            session, kind=kind, resource_type="thing", resource_id=resource, payload=payload
        )
        await session.commit()
    store.notify()
    return task


@pytest.fixture
def store(db: Database) -> TaskStore:
    return TaskStore(db, max_attempts=3, backoff_base=0.01, backoff_cap=0.05)


async def test_claims_follow_arrival_order_one_task_per_resource(store: TaskStore) -> None:
    a1 = await enqueue(store, "a")
    b1 = await enqueue(store, "b")
    a2 = await enqueue(store, "a")
    claimed = await store.claim("w1", 10, lease=30)
    # a2 waits for a1: one task at a time per resource, in arrival order.
    assert [t.id for t in claimed] == [a1.id, b1.id]
    assert await store.claim("w2", 10, lease=30) == []
    assert await store.succeed(claimed[0], "w1", {"done": 1})
    again = await store.claim("w2", 10, lease=30)
    assert [t.id for t in again] == [a2.id]
    assert again[0].attempts == 1 and again[0].lease_owner == "w2"


async def test_a_retried_task_still_blocks_the_next_one(store: TaskStore) -> None:
    first = await enqueue(store, "r")
    second = await enqueue(store, "r")
    [claimed] = await store.claim("w", 10, lease=30)
    assert await store.fail(claimed, "w", "transient", retry=True) == "queued"
    await asyncio.sleep(0.1)  # past the backoff
    [retry] = await store.claim("w", 10, lease=30)
    assert retry.id == first.id and retry.attempts == 2
    await store.succeed(retry, "w", None)
    [after] = await store.claim("w", 10, lease=30)
    assert after.id == second.id


async def test_attempts_run_out_and_the_task_fails(store: TaskStore) -> None:
    task = await enqueue(store, "x")
    for attempt in range(1, 4):
        await asyncio.sleep(0.06)
        [claimed] = await store.claim("w", 1, lease=30)
        assert claimed.attempts == attempt
        state = await store.fail(claimed, "w", f"boom {attempt}", retry=True)
    assert state == "failed"
    final = await store.get(task.id)
    assert (final.state, final.error, final.attempts) == ("failed", "boom 3", 3)
    assert final.finished_at is not None


async def test_expired_lease_goes_to_another_worker_and_the_late_one_cannot_finish(
    store: TaskStore,
) -> None:
    task = await enqueue(store, "y")
    [mine] = await store.claim("dead-worker", 1, lease=0.05)
    await asyncio.sleep(0.1)
    requeued, failed = await store.sweep()
    assert ([t.id for t in requeued], failed) == ([task.id], [])
    [theirs] = await store.claim("live-worker", 1, lease=30)
    assert theirs.id == task.id and theirs.attempts == 2
    # The first worker comes back from the dead: its outcome is refused.
    assert not await store.succeed(mine, "dead-worker", {"late": True})
    assert await store.succeed(theirs, "live-worker", {"ok": True})
    assert (await store.get(task.id)).result == {"ok": True}


async def test_renewed_leases_are_not_swept(store: TaskStore) -> None:
    task = await enqueue(store, "z")
    [claimed] = await store.claim("w", 1, lease=0.2)
    # Renewed for long at once: the sleep below may take any time past the first lease
    # (a short renewal would have to land within it, a race on a loaded machine).
    assert await store.renew("w", [claimed.seq], lease=60) == 1
    await asyncio.sleep(0.3)  # past the lease it was claimed with
    assert (await store.sweep())[0] == []
    assert (await store.get(task.id)).state == "running"
    assert await store.renew("other-worker", [claimed.seq], lease=60) == 0  # not its task


async def test_retry_and_cancel(store: TaskStore) -> None:
    queued = await enqueue(store, "c1")
    cancelled = await store.cancel(queued.id)
    assert cancelled.state == "cancelled"
    with pytest.raises(Conflict):
        await store.cancel(queued.id)
    retried = await store.retry(queued.id)
    assert (retried.state, retried.attempts) == ("queued", 0)
    [running] = await store.claim("w", 1, lease=30)
    with pytest.raises(Conflict):
        await store.cancel(running.id)
    with pytest.raises(Conflict):
        await store.retry(running.id)


async def test_a_retry_runs_its_kinds_hook_in_the_same_transaction(store: TaskStore) -> None:
    """A kind's retry hook runs before the task is queued again, and only for that kind;
    a hook that fails leaves the task as it was."""
    hooked = await enqueue(store, "h1", kind="hooked")
    plain = await enqueue(store, "h2", kind="plain")
    for claimed in await store.claim("w", 10, lease=30):
        await store.fail(claimed, "w", "for good", retry=False)
    seen: list[tuple[str, str]] = []
    broken = False

    async def hook(session: Any, task: Task) -> None:
        seen.append((task.id, task.state))
        if broken:
            raise RuntimeError("cannot make it ready")

    store.register({"hooked": Kind(_never_run, retry=hook)})
    assert (await store.retry(plain.id)).state == "queued"
    assert seen == []
    broken = True
    with pytest.raises(RuntimeError):
        await store.retry(hooked.id)
    assert (await store.get(hooked.id)).state == "failed"  # nothing queued without the hook
    broken = False
    assert (await store.retry(hooked.id)).state == "queued"
    assert seen == [(hooked.id, "failed")] * 2


async def test_wait_returns_the_finished_task(store: TaskStore) -> None:
    task = await enqueue(store, "w")
    assert await store.wait(task.id, timeout=0.1) is None

    async def finish() -> None:
        [claimed] = await store.claim("w", 1, lease=30)
        await asyncio.sleep(0.05)
        await store.succeed(claimed, "w", {"answer": 42})

    finisher = asyncio.create_task(finish())
    done = await store.wait(task.id, timeout=5)
    await finisher
    assert done is not None and done.result == {"answer": 42}


async def test_competing_workers_run_each_task_once_in_order(store: TaskStore) -> None:
    """Four workers, 120 tasks on 12 resources: each runs once, one at a time per resource."""
    runs: dict[str, list[int]] = defaultdict(list)
    in_flight: set[str] = set()
    overlaps: list[str] = []

    async def handle(task: Task) -> dict[str, Any]:
        resource = task.resource_id
        if resource in in_flight:
            overlaps.append(resource)
        in_flight.add(resource)
        await asyncio.sleep(random.uniform(0, 0.01))
        runs[resource].append(task.payload["n"])
        in_flight.discard(resource)
        return {"n": task.payload["n"]}

    for n in range(120):
        await enqueue(store, f"r{n % 12}", n=n)
    workers = [
        Worker(store, {"k": Kind(handle)}, concurrency=8, poll_interval=0.05, name=f"w{i}")
        for i in range(4)
    ]
    jobs = [asyncio.create_task(w.run()) for w in workers]
    states: list[str] = []
    try:
        # A handler returning is not the task finishing: wait for the store to record it.
        async with asyncio.timeout(60):
            while set(states) != {"succeeded"}:
                await asyncio.sleep(0.05)
                async with store.db.session() as session:
                    states = list((await session.scalars(select(Task.state))).all())
    finally:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
    assert overlaps == []
    for resource, ns in runs.items():
        assert ns == sorted(ns), resource
    assert sorted(n for ns in runs.values() for n in ns) == list(range(120))
    assert len(states) == 120


async def test_worker_retries_transient_failures_and_gives_up_on_permanent_ones(
    store: TaskStore,
) -> None:
    calls: dict[str, int] = defaultdict(int)
    given_up: list[tuple[str, str]] = []

    async def flaky(task: Task) -> dict[str, Any]:
        calls[task.id] += 1
        if task.payload["mode"] == "flaky" and calls[task.id] < 3:
            raise RetryLater("not yet")
        if task.payload["mode"] == "broken":
            raise TaskFailed("cannot ever work")
        if task.payload["mode"] == "crash":
            raise ValueError("unexpected")
        return {"calls": calls[task.id]}

    async def give_up(task: Task, error: str) -> None:
        given_up.append((task.payload["mode"], error))

    flaky_task = await enqueue(store, "f", mode="flaky")
    broken = await enqueue(store, "b", mode="broken")
    crash = await enqueue(store, "c", mode="crash")
    worker = Worker(store, {"k": Kind(flaky, give_up=give_up)}, poll_interval=0.02, name="w")
    job = asyncio.create_task(worker.run())
    try:
        for task in (flaky_task, broken, crash):
            assert await store.wait(task.id, timeout=20) is not None
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert (await store.get(flaky_task.id)).result == {"calls": 3}
    assert (await store.get(broken.id)).state == "failed"
    crashed = await store.get(crash.id)
    assert (crashed.state, crashed.attempts) == ("failed", 3)
    assert "ValueError: unexpected" in crashed.error
    assert sorted(given_up) == [
        ("broken", "cannot ever work"),
        ("crash", "ValueError: unexpected"),
    ]


async def test_a_task_whose_worker_died_is_finished_by_another(store: TaskStore) -> None:
    async def handle(task: Task) -> dict[str, Any]:
        return {"by": "survivor"}

    task = await enqueue(store, "d")
    [orphan] = await store.claim("died", 1, lease=30)
    # The dead worker's lease runs out (made to lapse here rather than waited for).
    async with store.db.session() as session:
        await session.execute(
            update(Task).where(Task.seq == orphan.seq).values(lease_expires=utcnow())
        )
        await session.commit()
    survivor = Worker(store, {"k": Kind(handle)}, poll_interval=0.02, sweep_interval=0.05)
    job = asyncio.create_task(survivor.run())
    try:
        done = await store.wait(task.id, timeout=10)
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert done is not None and done.result == {"by": "survivor"} and done.attempts == 2


async def test_a_task_queued_behind_another_starts_when_it_ends_not_at_the_next_poll(
    store: TaskStore,
) -> None:
    """Workers do not claim on every finished task; the store wakes them when one
    that finished had another queued behind it on its resource (and on a cancel).
    The worker's own poll is an hour away: only those wake-ups run the tasks in time."""
    started: list[int] = []
    gate = asyncio.Event()

    async def handle(task: Task) -> None:
        started.append(task.payload["n"])
        await gate.wait()

    worker = Worker(store, {"k": Kind(handle)}, concurrency=4, poll_interval=3600.0, name="w")
    job = asyncio.create_task(worker.run())
    try:
        on_r = [await enqueue(store, "r", n=n) for n in range(3)]
        async with store.db.session() as session:  # held back, as a backoff would
            blocker = store.enqueue(
                session, kind="k", resource_type="thing", resource_id="s", payload={"n": 3}
            )
            blocker.run_after = utcnow().replace(year=2999)
            await session.commit()
        behind = await enqueue(store, "s", n=4)
        # r's tasks finish one after another from now, each claim after `behind` was
        # queued: a claim that could take it would.
        gate.set()
        last_on_r = await store.wait(on_r[2].id, 30)
        assert last_on_r is not None and last_on_r.state == "succeeded"
        assert started == [0, 1, 2]  # not 4: blocked by the queued task before it
        await store.cancel(blocker.id)
        finished = await store.wait(behind.id, 30)
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert finished is not None and finished.state == "succeeded"
    assert started == [0, 1, 2, 4]


async def test_tasks_born_running_start_at_the_commit_without_a_claim(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New tasks take a free slot of this process's worker in the transaction that
    makes them: they are running, with its lease, when it commits; no claim query."""
    claims = 0
    real_claim = store.claim

    async def counted(*args: Any, **kwargs: Any) -> list[Task]:
        nonlocal claims
        claims += 1
        return await real_claim(*args, **kwargs)

    ran: list[int] = []
    gate = asyncio.Event()

    async def handle(task: Task) -> None:
        await gate.wait()
        ran.append(task.payload["n"])

    worker = Worker(store, {"k": Kind(handle)}, concurrency=2, poll_interval=30.0, name="w")
    job = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.05)  # the worker's first claim finds nothing
        monkeypatch.setattr(store, "claim", counted)
        with store.births() as births:
            async with store.db.session() as session:
                made = [
                    store.enqueue(
                        session,
                        kind="k",
                        resource_type="t",
                        resource_id=f"r{n}",
                        payload={"n": n},
                        births=births,
                    )
                    for n in range(3)
                ]
                await session.commit()
        assert [t.state for t in made] == ["running", "running", "queued"]  # 2 slots
        async with store.db.session() as session:
            rows = {t.id: t for t in await session.scalars(select(Task))}
        assert rows[made[0].id].lease_owner == "w" and rows[made[0].id].attempts == 1
        assert rows[made[2].id].state == "queued"
        gate.set()
        async with asyncio.timeout(5):
            for task in made:
                assert (await store.wait(task.id, 5)).state == "succeeded"  # type: ignore[union-attr]
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert sorted(ran) == [0, 1, 2]
    assert claims >= 1  # the queued one was claimed when a slot came free


async def test_a_failed_transaction_gives_born_running_slots_back(store: TaskStore) -> None:
    worker = Worker(store, {"k": Kind(lambda task: asyncio.sleep(0))}, concurrency=2, name="w")
    job = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError), store.births() as births:
            async with store.db.session() as session:
                store.enqueue(session, kind="k", resource_type="t", resource_id="r", births=births)
                raise RuntimeError("the commit failed")
        assert len(births.running) == 1
        assert worker.reserve() and worker.reserve() and not worker.reserve()  # both free
        worker.unreserve(2)
        async with store.db.session() as session:
            assert (await session.scalars(select(Task))).all() == []
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)


async def test_without_a_running_worker_births_are_queued(store: TaskStore) -> None:
    with store.births() as births:
        async with store.db.session() as session:
            task = store.enqueue(
                session, kind="k", resource_type="t", resource_id="r", births=births
            )
            await session.commit()
    assert task.state == "queued" and births.queued == 1 and store.wakeup.is_set()


async def test_a_task_that_has_begun_cannot_be_cancelled(store: TaskStore) -> None:
    """Queued again after an attempt, it may have had effects elsewhere (a child asked)."""
    task = await enqueue(store, "begun")
    [claimed] = await store.claim("w", 1, lease=30)
    assert await store.fail(claimed, "w", "the child did not answer", retry=True) == "queued"
    with pytest.raises(Conflict) as exc:
        await store.cancel(task.id)
    assert exc.value.code == "task_begun"
    assert "has begun (1 attempt)" in exc.value.message
    after = await store.get(task.id)
    assert (after.state, after.attempts) == ("queued", 1)


async def test_a_cancel_undoes_its_request_in_its_own_transaction(store: TaskStore) -> None:
    async def undo(session: Any, task: Task) -> None:
        store.enqueue(session, kind="undone", resource_type="thing", resource_id=task.resource_id)

    async def refuse(session: Any, task: Task) -> None:
        raise Conflict("not now")

    store.register(
        {"undoable": Kind(_never_run, cancel=undo), "refusing": Kind(_never_run, cancel=refuse)}
    )
    undoable = await enqueue(store, "u", kind="undoable")
    assert (await store.cancel(undoable.id)).state == "cancelled"
    [undone] = await store.list(resource_id="u", kind="undone")
    assert undone.state == "queued"
    # Undone: not to be run again (a kind without a cancel hook retries, see above).
    with pytest.raises(Conflict) as exc:
        await store.retry(undoable.id)
    assert exc.value.code == "task_undone"

    refusing = await enqueue(store, "r", kind="refusing")
    with pytest.raises(Conflict):
        await store.cancel(refusing.id)
    assert (await store.get(refusing.id)).state == "queued"  # the cancel rolled back
