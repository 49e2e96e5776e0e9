"""`skyfed bench rpc`: seed 001's RabbitMQ spike, re-run through skyfed's zone links.

"Parallel add": N calls `add(i, i)` issued at once, all awaited; total time and
average per call, as in the seed's table. Each size runs with 1 and 2 worker
processes, over the `amqp` link (the worker consumes the queue like a zone) and
the `http` link (workers share one port), and, as the baseline in the same run,
with Celery on the same broker (`rpc://` results, prefork pool of 1 per worker).
On demand (`--systems`), `httpx`: the `http` link over httpx's own pool instead of
skyfed's (`link_http_transport = "httpx"`), to weigh the one against the other.

Fault rows, each with 3 workers, the fault triggered from inside the run once a
third of the answers are in: 1 and then 2 workers killed with -9; or the broker
restarted (`rabbitmqctl stop_app`, 1 s, `start_app`). `stop_app` bites a second
or more after it is called, and a run can answer the rest of its calls in less
(and the workers run ahead of the answers: 107 to 128 of a row's 150 calls had
run when its 50th answer came), so in that row the calls after the first third
are marked `hold`: the workers keep them, unanswered, while the bench's hold
file exists, and the bench removes it once the broker has gone. The restart so
meets two thirds of the calls in flight in every run. Each row says how many calls got no
correct answer (`lost`), how many ran more than once in the workers (`reruns`:
at least once delivery after a kill, as Celery's) and how many second answers
the link dropped (`answers_dropped`), so that no caller ever sees a result
twice; and whether the fault took effect before the last answer (`fault_hit`;
a row it missed says so). Nothing here is mocked: real processes, real sockets,
the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skyfed.federation.broker import ctl
from skyfed.federation.process import free_port
from skyfed.transport.amqp import without_password

FAULT_WORKERS = 3
FAULT_AFTER = 1 / 3  # the share of a row's answers in before its fault


def due_after(n: int) -> int:
    """Answers in before the fault of a row of `n` calls."""
    return max(1, int(n * FAULT_AFTER))


def held_from(n: int, fault: str) -> int:
    """The first call of a row that the workers hold until the broker has gone: those
    after the first share, in a broker restart row; none (`n`) in any other."""
    return due_after(n) if fault == "restart" else n


@dataclass
class Row:
    system: str  # "amqp", "http", "httpx" (skyfed links) or "celery"
    requests: int
    workers: int
    fault: str
    seconds: float
    lost: int
    answers_dropped: int  # second answers to a call, dropped by the link: no caller saw two
    reruns: int
    fault_hit: bool = False  # the fault took effect before the last answer came

    @property
    def avg_ms(self) -> float:
        return self.seconds / self.requests * 1000

    def line(self) -> str:
        fault = f" - {self.fault}" if self.fault else ""
        if self.fault and not self.fault_hit:
            fault += " (MISSED: it took effect after the last answer, or not at all)"
        return (
            f"{self.system:<6} {self.workers} worker(s)  Finished {self.requests - self.lost}/"
            f"{self.requests} in {self.seconds:9.3f} s (avg/req {self.avg_ms:8.3f} ms)"
            f"{fault}  lost {self.lost}, reruns {self.reruns}, "
            f"second answers dropped {self.answers_dropped}"
        )


class Workers:
    """Worker processes of one system; each records the keys it ran in its own file."""

    def __init__(self, system: str, count: int, broker: str, queue: str, port: int) -> None:
        self.system, self.broker, self.queue, self.port = system, broker, queue, port
        self.dir = Path(tempfile.mkdtemp(prefix=f"skyfed-bench-{system}-"))
        self.hold_file = self.dir / "hold"  # while it exists, calls marked `hold` wait
        self.procs: list[subprocess.Popen[bytes]] = []
        for i in range(count):
            self.procs.append(self._start(i))

    def _start(self, i: int) -> subprocess.Popen[bytes]:
        record = self.dir / f"worker-{i}.keys"
        log = (self.dir / f"worker-{i}.log").open("wb")
        env = {**os.environ}
        if self.system == "celery":
            env |= {
                "SKYFED_BENCH_BROKER": self.broker,
                "SKYFED_BENCH_QUEUE": self.queue,
                "SKYFED_BENCH_RECORD": str(record),
                "SKYFED_BENCH_HOLD": str(self.hold_file),
            }
            cmd = [
                sys.executable, "-m", "celery", "-A", "skyfed.bench.rpc_celery", "worker",
                "--concurrency", "1", "--pool", "prefork", "-n", f"w{i}-{uuid.uuid4().hex[:6]}@%h",
                "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "INFO",
            ]  # fmt: skip
        else:
            served = "amqp" if self.system == "amqp" else "http"  # httpx: the client's pool
            cmd = [
                sys.executable, "-m", "skyfed.bench.rpc_worker", "--transport", served,
                "--broker", self.broker, "--queue", self.queue, "--port", str(self.port),
                "--record", str(record), "--hold", str(self.hold_file),
            ]  # fmt: skip
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        marker = b"ready." if self.system == "celery" else b"ready"
        for i, proc in enumerate(self.procs):
            log = self.dir / f"worker-{i}.log"
            while marker not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.system} worker did not start:\n{log.read_text()}")
                time.sleep(0.05)

    def kill(self, count: int) -> None:
        for proc in self.procs[:count]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def hold(self) -> None:
        self.hold_file.touch()

    def release(self) -> None:
        self.hold_file.unlink(missing_ok=True)

    def runs(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for path in self.dir.glob("*.keys"):
            counts.update(path.read_text().split())
        return counts

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


async def _fault(kind: str, workers: Workers, due: asyncio.Event, broker: str) -> float:
    """Once `due` is set (a share of the answers is in), kill workers or restart the
    broker; the moment (perf_counter) the fault took effect."""
    if kind.startswith("kill"):
        await _until(due)
        workers.kill(int(kind.split(":")[1]))
        return time.perf_counter()
    return await _restart_broker(workers, due, broker)


async def _until(due: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(due.wait(), 60)


async def _restart_broker(workers: Workers, due: asyncio.Event, broker: str) -> float:
    """`stop_app`, 1 s, `start_app`, from `due`; the held calls are released once the
    broker is gone (it has closed a connection of ours, or `stop_app` has returned).
    The moment it was seen gone."""
    import aio_pika

    try:
        watch = await aio_pika.connect(broker, timeout=10)  # before `due`: no delay then
        gone = asyncio.Event()
        watch.close_callbacks.add(lambda *_: gone.set())
        try:
            await _until(due)
            stopping = asyncio.create_task(asyncio.to_thread(ctl, "stop_app"))
            closed = asyncio.create_task(gone.wait())
            # Bounded: `ctl` gives up after its own timeout.
            await asyncio.wait({stopping, closed}, return_when=asyncio.FIRST_COMPLETED)
            seen_gone = time.perf_counter()
            closed.cancel()
            workers.release()
            await stopping  # raises when rabbitmqctl failed: then there is no row to judge
        finally:
            with contextlib.suppress(Exception):
                await watch.close()
    finally:
        workers.release()  # whatever happened: no call waits for ever
    await asyncio.sleep(1.0)
    await asyncio.to_thread(ctl, "start_app")
    return seen_gone


FAULTS = {"": "", "kill:1": "1 worker killed", "kill:2": "2 workers killed"}
FAULTS["restart"] = "broker restarted"


class LinkSystem:
    """skyfed's side: a ZoneLink (amqp or http) calling the workers."""

    def __init__(self, transport: str, broker: str, timeout: float) -> None:
        self.transport, self.broker, self.timeout = transport, broker, timeout

    def link(self, queue: str, port: int) -> Any:
        from skyfed.bench.rpc_worker import BENCH_ACCOUNT, BENCH_PASSWORD
        from skyfed.transport.amqp import amqp_link
        from skyfed.transport.http import HttpLink, api_transport

        if self.transport == "amqp":
            return amqp_link(
                self.broker, queue, username=BENCH_ACCOUNT, password=BENCH_PASSWORD,
                origin="bench", timeout=self.timeout, retries=5,
            )  # fmt: skip
        # `http` over skyfed's own pool, `httpx` over httpx's: the choice of
        # `link_http_transport`, with the same bound and the same connections.
        url = f"http://127.0.0.1:{port}"
        choice = "httpx" if self.transport == "httpx" else "h1"
        return HttpLink(
            url, api_transport(choice, url, max_connections=64),
            username=BENCH_ACCOUNT, password=BENCH_PASSWORD,
            timeout=self.timeout, retries=5, max_connections=64,
        )  # fmt: skip

    async def run(
        self, link: Any, tag: str, n: int, fault: str, workers: Workers
    ) -> tuple[float, int, int, bool]:
        from skyfed.transport.base import ZoneRequest

        answered = 0
        lost = 0
        due = asyncio.Event()
        hold = held_from(n, fault)

        async def one(i: int) -> None:
            nonlocal answered, lost
            try:
                answer = await link.call(
                    ZoneRequest(
                        "POST", "/v1/add",
                        json={"key": f"{tag}-{i}", "a": i, "b": i, "hold": i >= hold},
                        idempotent=True,
                    )
                )  # fmt: skip
                if answer.get("sum") != 2 * i:
                    lost += 1
            except Exception:
                lost += 1
            answered += 1
            if answered >= due_after(n):
                due.set()

        stats = getattr(link.transport, "stats", None)  # the amqp transport's
        before = stats.duplicate_replies if stats is not None else 0
        started = time.perf_counter()
        injector = None
        if fault:
            if hold < n:
                workers.hold()  # before any call goes: `_fault` releases them
            injector = asyncio.create_task(_fault(fault, workers, due, self.broker))
        await asyncio.gather(*(one(i) for i in range(n)))
        finished = time.perf_counter()
        hit = injector is not None and await injector < finished
        if fault == "restart" and stats is not None:
            # When the link lost its connection is the moment the restart took effect
            # for it (the bench's own watch may have seen it a moment apart).
            lost_at = stats.disconnected_at
            hit = lost_at is not None and started < lost_at < finished
        dropped = (stats.duplicate_replies - before) if stats is not None else 0
        return finished - started, lost, dropped, hit


def _celery_run(
    tag: str, n: int, timeout: float, fault: str = "", due: Callable[[], None] = lambda: None
) -> tuple[float, int, float]:
    """N `add.delay` at once from this thread, then every result; calls that failed count
    lost. `due()` once a share of the results is in (read in order: at least that many)."""
    from skyfed.bench.rpc_celery import add

    lost = 0
    started = time.perf_counter()
    results = []
    for i in range(n):
        try:
            held = i >= held_from(n, fault)
            results.append((i, add.apply_async((f"{tag}-{i}", i, i, held))))
        except Exception:
            lost += 1
    deadline = time.monotonic() + timeout
    for read, (i, result) in enumerate(results):
        if read == due_after(n):
            due()
        left = deadline - time.monotonic()
        try:  # Celery's client raises its broker's errors from `ready` and `get` alike
            if left <= 0 and not result.ready():
                lost += 1  # past the deadline: what has not come is lost, without waiting
            elif result.get(timeout=max(0.001, left)) != 2 * i:
                lost += 1
        except Exception:
            lost += 1
    finished = time.perf_counter()
    return finished - started, lost, finished


async def _celery_row(
    tag: str, n: int, fault: str, workers: Workers, timeout: float, broker: str
) -> tuple[float, int, bool]:
    injector = None
    due = asyncio.Event()
    if fault:
        if held_from(n, fault) < n:
            workers.hold()
        injector = asyncio.create_task(_fault(fault, workers, due, broker))
    loop = asyncio.get_running_loop()
    seconds, lost, finished = await asyncio.to_thread(
        _celery_run, tag, n, timeout, fault, lambda: loop.call_soon_threadsafe(due.set)
    )
    hit = injector is not None and await injector < finished
    return seconds, lost, hit


def run_rpc_bench(
    *,
    broker: str,
    sizes: list[int],
    worker_counts: list[int],
    fault_requests: int,
    systems: list[str],
    timeout: float,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    from skyfed.bench.rpc_worker import run_loop

    return run_loop(_run(broker, sizes, worker_counts, fault_requests, systems, timeout, echo))


async def _run(
    broker: str,
    sizes: list[int],
    worker_counts: list[int],
    fault_requests: int,
    systems: list[str],
    timeout: float,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    rows: list[Row] = []
    # Plain rows: every system's workers up at once, each size run by each in turn,
    # so a slow moment of the machine falls on all of them alike.
    for count in worker_counts:
        sides = [Side(system, broker, count, timeout) for system in systems]
        try:
            for side in sides:
                await side.start()
            for n in sizes:
                for side in sides:
                    rows.append(await side.row(n, ""))
                    echo(rows[-1].line())
        finally:
            for side in sides:
                await side.stop()
    # Fault rows: one system at a time, on fresh workers (the broker restart hits all).
    for fault in ("kill:1", "kill:2", "restart") if fault_requests else ():
        for system in systems:
            if system in ("http", "httpx") and fault == "restart":
                continue  # no broker on the http link
            side = Side(system, broker, FAULT_WORKERS, timeout)
            try:
                await side.start()
                rows.append(await side.row(fault_requests, fault))
                echo(rows[-1].line())
            finally:
                await side.stop()
    return _summary(rows, broker)


class Side:
    """One system under test: its worker processes and the client that calls them."""

    def __init__(self, system: str, broker: str, count: int, timeout: float) -> None:
        self.system, self.count, self.timeout = system, count, timeout
        self.broker = broker if system != "celery" or broker.endswith("/") else broker + "/"
        self.queue = f"skyfed.bench.{system}.{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.workers: Workers | None = None
        self.runner = LinkSystem(system, broker, timeout)
        self.link: Any = None

    async def start(self) -> None:
        if self.system == "celery":
            os.environ["SKYFED_BENCH_BROKER"] = self.broker
            os.environ["SKYFED_BENCH_QUEUE"] = self.queue
            from skyfed.bench.rpc_celery import app as celery_app

            celery_app.conf.update(broker_url=self.broker, task_default_queue=self.queue)
        self.workers = Workers(self.system, self.count, self.broker, self.queue, self.port)
        await asyncio.to_thread(self.workers.wait_ready)
        if self.system == "celery":
            await asyncio.to_thread(_celery_run, "warm", 1, self.timeout)
        else:
            self.link = self.runner.link(self.queue, self.port)
            await self.runner.run(self.link, "warm", 1, "", self.workers)  # login, connections

    async def row(self, n: int, fault: str) -> Row:
        assert self.workers is not None
        tag = uuid.uuid4().hex[:8]
        runs_before = self.workers.runs()
        if self.system == "celery":
            seconds, lost, hit = await _celery_row(
                tag, n, fault, self.workers, self.timeout, self.broker
            )
            dropped = 0
        else:
            seconds, lost, dropped, hit = await self.runner.run(
                self.link, tag, n, fault, self.workers
            )
        ran = self.workers.runs() - runs_before
        reruns = sum(c - 1 for k, c in ran.items() if k.startswith(tag) and c > 1)
        return Row(self.system, n, self.count, FAULTS[fault], seconds, lost, dropped, reruns, hit)

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.aclose()
        if self.workers is not None:
            await asyncio.to_thread(self.workers.stop)
        await _delete_queue(self.broker, self.queue)


async def _delete_queue(broker: str, queue: str) -> None:
    import aio_pika

    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(broker, timeout=5)
        async with connection:
            await (await connection.channel()).queue_delete(queue)


def _summary(rows: list[Row], broker: str) -> dict[str, Any]:
    def avg(system: str, n: int, workers: int) -> float | None:
        for row in rows:
            if (row.system, row.requests, row.workers, row.fault) == (system, n, workers, ""):
                return row.avg_ms
        return None

    ratios: dict[str, float] = {}
    for row in rows:
        if row.system == "celery" or row.fault or row.requests < 1000:
            continue
        celery = avg("celery", row.requests, row.workers)
        if celery:
            ratios[f"{row.system}_{row.requests}x{row.workers}"] = round(row.avg_ms / celery, 3)
    faults = [r for r in rows if r.fault and r.system != "celery"]
    return {
        "bench": "rpc",
        "broker": without_password(broker),
        "rows": [{**asdict(r), "avg_ms": round(r.avg_ms, 4)} for r in rows],
        "ratio_to_celery": ratios,
        "goal_ratio": 0.5,
        "goal_ratio_met": bool(ratios) and all(v <= 0.5 for v in ratios.values()),
        "fault_rows_lost": sum(r.lost for r in faults),
        "fault_rows_answers_dropped": sum(r.answers_dropped for r in faults),
        "celery_fault_rows_lost": sum(r.lost for r in rows if r.fault and r.system == "celery"),
        "fault_rows_missed": sum(1 for r in rows if r.fault and not r.fault_hit),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
