"""`skyfed bench move`: a container moved between two Swift clusters by skyfed, against
`rclone copy` of the same container between the same two clusters, in the same run.

Two real one-replica Swift clusters (`LocalSwift`, tier gold) and one zone process
(`skyfed serve`, SQLite, a temporary state directory) are started on loopback. A
container of `objects` objects is written through skyfed, their sizes spread evenly
on a log scale from `min_kib` KiB to `max_kib` KiB (the same sizes in every run: a
seeded draw). Then, `repeat` times, in turns:

- **rclone**: `rclone copy` of the container, from the cluster that holds it to a
  new container on the other one, each cluster's own Swift (its reseller admin, the
  project's account), `--transfers` as skyfed copies at once: seconds until it ends;
- **skyfed**: `POST /v1/container-moves` of the container to the other cluster:
  seconds until it has switched over (its objects all copied: the part comparable to
  a copy, with the move's wait for every process to see it, twice `locations.TTL`);
  its end (the old place emptied) is shown too.

`move_vs_rclone` is rclone's median seconds over skyfed's (1.0: as fast; goal >= 1.0).

Then the container moves once more while a reader (GETs of objects not written
since) and a writer (new 4 KiB objects) use it through skyfed, each on a connection
of its own: every failed request counts in `errors_during_move` (goal 0), and every
object the writer was told is written must be there after, with its bytes.
Loops are bounded in count and time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import os
import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from skyfed.bench.load_http import HttpConnection, HttpFailure
from skyfed.bench.objects import (
    BenchError,
    Side,
    Stack,
    expect,
    run_measured,
    swift_login,
)
from skyfed.objects.local_swift import LocalSwift
from skyfed.objects.move_runner import COPIES_AT_ONCE

KiB = 1 << 10
CLUSTERS = ("swift-a", "swift-b")
CONTAINER = "bench-move"
PUT_AT_ONCE = 8
MOVE_TIMEOUT = 1800.0
GOALS: dict[str, tuple[str, float]] = {
    "move_vs_rclone": (">=", 1.0),
    "errors_during_move": ("<=", 0.0),
}


@dataclasses.dataclass(frozen=True)
class Options:
    objects: int = 2000
    min_kib: int = 4
    max_kib: int = 4096
    repeat: int = 2
    seed: int = 42

    def check(self) -> None:
        if self.objects < 1 or self.repeat < 1:
            raise ValueError("--objects and --repeat: 1 or more")
        if not 1 <= self.min_kib <= self.max_kib <= 1 << 20:
            raise ValueError("1 <= --min-kib <= --max-kib <= 1048576")


def sizes(opts: Options) -> list[int]:
    """Sizes spread evenly on a log scale (as many small objects as large ones)."""
    rng = random.Random(opts.seed)
    low, high = math.log(opts.min_kib * KiB), math.log(opts.max_kib * KiB)
    return [int(math.exp(rng.uniform(low, high))) for _ in range(opts.objects)]


def body(name: str, size: int, source: bytes) -> bytes:
    """An object's bytes: the shared buffer, shifted by its name (no two alike)."""
    shift = int(hashlib.md5(name.encode()).hexdigest()[:6], 16) % len(source)
    whole = (source[shift:] + source[:shift]) * (size // len(source) + 1)
    return whole[:size]


async def fill(side: Side, names: list[str], object_sizes: list[int], source: bytes) -> int:
    """The container written through skyfed; the bytes written."""
    queue = list(zip(names, object_sizes, strict=True))
    written = 0

    async def writer() -> None:
        nonlocal written
        connection = await HttpConnection.open(side.host, side.port)
        try:
            while queue:
                name, size = queue.pop()
                answer = await connection.request(
                    "PUT", side.target(CONTAINER, name), side.headers, body=body(name, size, source)
                )
                expect(answer, (201,), f"PUT {name}")
                written += size
                if not connection.usable:
                    connection = await HttpConnection.open(side.host, side.port)
        finally:
            connection.close()

    await asyncio.gather(*(writer() for _ in range(PUT_AT_ONCE)))
    return written


async def direct_side(swift: LocalSwift, account: str) -> tuple[str, str, str]:
    """(its auth URL, its reseller admin user, key) and the account's storage URL."""
    creds = swift.reseller_admin
    _, url = await swift_login(swift.auth_url, creds.user, creds.key)
    return creds.user, creds.key, url.rsplit("/", 1)[0] + "/" + account


async def rclone_copy(
    rclone: str, frm: LocalSwift, to: LocalSwift, account: str, into: str
) -> float:
    env = {**os.environ, "RCLONE_CONFIG": os.devnull}
    for remote, swift in (("SRC", frm), ("DST", to)):
        user, key, storage_url = await direct_side(swift, account)
        env |= {
            f"RCLONE_CONFIG_{remote}_TYPE": "swift",
            f"RCLONE_CONFIG_{remote}_AUTH": swift.auth_url,
            f"RCLONE_CONFIG_{remote}_USER": user,
            f"RCLONE_CONFIG_{remote}_KEY": key,
            f"RCLONE_CONFIG_{remote}_STORAGE_URL": storage_url,
        }
    args = [
        rclone, "copy", f"src:{CONTAINER}", f"dst:{into}",
        f"--transfers={COPIES_AT_ONCE}", "--checkers=8", "--retries=1",
    ]  # fmt: skip
    started = time.perf_counter()
    done = await asyncio.to_thread(
        subprocess.run, args, env=env, capture_output=True, text=True, timeout=MOVE_TIMEOUT
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"rclone copy failed: {done.stderr[-500:]}")
    return seconds


async def move(stack: Stack, project: str, to: str) -> tuple[float, float, dict[str, Any]]:
    """(seconds until switched over, until done, the move as it ended)."""
    async with stack.admin() as admin:
        started = time.perf_counter()
        begun = await admin.move_container(project, CONTAINER, to)
        switched = None
        deadline = started + MOVE_TIMEOUT
        while time.perf_counter() < deadline:
            current = await admin.get_container_move(begun.id)
            now = time.perf_counter()
            if current.state != "copying" and switched is None:
                switched = now - started
            if current.state in ("done", "cancelled"):
                return switched or now - started, now - started, current.model_dump(mode="json")
            await asyncio.sleep(0.1)
    raise BenchError(f"the move did not end in {MOVE_TIMEOUT:.0f} s")


@dataclasses.dataclass
class Traffic:
    reads: int = 0
    writes: int = 0
    errors: int = 0
    first_error: str = ""
    written: dict[str, bytes] = dataclasses.field(default_factory=dict)

    def failed(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what


async def traffic(
    side: Side, readable: list[tuple[str, int]], source: bytes, stop: asyncio.Event
) -> Traffic:
    """A reader and a writer on the container until `stop` (at most 20,000 requests)."""
    seen = Traffic()
    rng = random.Random(7)

    async def reader() -> None:
        connection = await HttpConnection.open(side.host, side.port)
        try:
            while not stop.is_set() and seen.reads < 20_000:
                name, size = rng.choice(readable)
                try:
                    answer = await connection.request(
                        "GET", side.target(CONTAINER, name), side.headers
                    )
                    if answer.status != 200 or answer.received != size:
                        seen.failed(f"GET {name}: {answer.status}, {answer.received} bytes")
                except (HttpFailure, OSError) as exc:
                    seen.failed(f"GET {name}: {exc}")
                seen.reads += 1
                if not connection.usable:
                    connection = await HttpConnection.open(side.host, side.port)
        finally:
            connection.close()

    async def writer() -> None:
        connection = await HttpConnection.open(side.host, side.port)
        try:
            while not stop.is_set() and seen.writes < 20_000:
                name = f"during/{seen.writes:05d}"
                data = body(name, 4 * KiB, source)
                try:
                    answer = await connection.request(
                        "PUT", side.target(CONTAINER, name), side.headers, body=data
                    )
                    if answer.status == 201:
                        seen.written[name] = data
                    else:
                        seen.failed(f"PUT {name}: {answer.status}")
                except (HttpFailure, OSError) as exc:
                    seen.failed(f"PUT {name}: {exc}")
                seen.writes += 1
                if not connection.usable:
                    connection = await HttpConnection.open(side.host, side.port)
        finally:
            connection.close()

    await asyncio.gather(reader(), writer())
    return seen


async def check_written(side: Side, written: dict[str, bytes]) -> int:
    """How many of the acknowledged writes are missing or other bytes now."""
    wrong = 0
    connection = await HttpConnection.open(side.host, side.port)
    try:
        for name, data in written.items():
            answer = await connection.request(
                "GET", side.target(CONTAINER, name), side.headers, keep_body=True
            )
            if answer.status != 200 or answer.body != data:
                wrong += 1
            if not connection.usable:
                connection = await HttpConnection.open(side.host, side.port)
    finally:
        connection.close()
    return wrong


async def measure(opts: Options, root: Path, say: Callable[[str], None]) -> dict[str, Any]:
    rclone = shutil.which("rclone")
    if rclone is None:
        raise BenchError("rclone is not installed (apt-get install rclone)")
    stack = Stack(root, CLUSTERS)
    say("starting two Swift clusters and a zone")
    await stack.start()
    try:
        side = await stack.member("bench-move", "mover")
        project_id = side.account.rsplit("/", 1)[1].removeprefix("AUTH_")
        account = f"AUTH_{project_id}"
        source = hashlib.sha256(b"bench-move").digest() * (KiB * 32)  # 1 MiB
        answer = await _container(side)
        expect(answer, (201, 202), "container PUT")
        object_sizes = sizes(opts)
        names = [f"obj/{i:06d}" for i in range(opts.objects)]
        say(f"writing {opts.objects} objects ({sum(object_sizes) / 1e6:.0f} MB) through skyfed")
        total = await fill(side, names, object_sizes, source)
        rclone_s: list[float] = []
        switch_s: list[float] = []
        done_s: list[float] = []
        for round_ in range(opts.repeat):
            frm = await stack.holder(side, CONTAINER)
            to = next(s for s in stack.swifts if s is not frm)
            say(f"round {round_ + 1}: rclone copy {frm.name} -> {to.name}")
            rclone_s.append(await rclone_copy(rclone, frm, to, account, f"rclone-{round_}"))
            say(f"round {round_ + 1}: skyfed move {frm.name} -> {to.name}")
            switched, ended, last = await move(stack, "bench-move", to.name)
            if (
                last["state"] != "done"
                or last["objects_copied"] + last["objects_skipped"] < opts.objects
            ):
                raise BenchError(f"the move ended as {last}")
            switch_s.append(switched)
            done_s.append(ended)
        # Once more, in use.
        frm = await stack.holder(side, CONTAINER)
        to = next(s for s in stack.swifts if s is not frm)
        say(f"a move {frm.name} -> {to.name} under a reader and a writer")
        readable = list(zip(names, object_sizes, strict=True))
        stop = asyncio.Event()
        used = asyncio.ensure_future(traffic(side, readable, source, stop))
        await asyncio.sleep(1.0)
        try:
            _, busy_s, _ = await move(stack, "bench-move", to.name)
        finally:
            stop.set()
            seen = await used
        lost = await check_written(side, seen.written)
        rclone_median, switch_median = statistics.median(rclone_s), statistics.median(switch_s)
        return {
            "objects": opts.objects,
            "bytes": total,
            "rclone_s": [round(x, 2) for x in rclone_s],
            "move_switch_s": [round(x, 2) for x in switch_s],
            "move_done_s": [round(x, 2) for x in done_s],
            "rclone_mb_s": round(total / rclone_median / 1e6, 1),
            "move_mb_s": round(total / switch_median / 1e6, 1),
            "move_vs_rclone": round(rclone_median / switch_median, 3),
            "busy_move_s": round(busy_s, 2),
            "reads_during_move": seen.reads,
            "writes_during_move": seen.writes,
            "errors_during_move": seen.errors + lost,
            "first_error": seen.first_error or (f"{lost} writes lost" if lost else ""),
        }
    finally:
        await stack.stop()


async def _container(side: Side) -> Any:
    connection = await HttpConnection.open(side.host, side.port)
    try:
        return await connection.request("PUT", side.target(CONTAINER), side.headers)
    finally:
        connection.close()


def goals_met(result: dict[str, Any]) -> dict[str, bool | None]:
    met: dict[str, bool | None] = {}
    for key, (how, goal) in GOALS.items():
        value = result.get(key)
        met[key] = None if value is None else (value >= goal if how == ">=" else value <= goal)
    return met


def table(result: dict[str, Any]) -> Table:
    out = Table(
        title=f"container move of {result['objects']} objects, {result['bytes'] / 1e6:.0f} MB"
    )
    for column in ("figure", "skyfed", "rclone copy", "goal"):
        out.add_column(column)
    out.add_row("seconds (median)", str(statistics.median(result["move_switch_s"])),
                str(statistics.median(result["rclone_s"])), "")  # fmt: skip
    out.add_row("MB/s", str(result["move_mb_s"]), str(result["rclone_mb_s"]), "")
    out.add_row("move_vs_rclone", str(result["move_vs_rclone"]), "", ">= 1.0")
    out.add_row("errors_during_move", str(result["errors_during_move"]), "", "0")
    return out


def run_move_bench(opts: Options) -> dict[str, Any]:
    opts.check()
    result, machine, _ = run_measured("move", lambda root, say: measure(opts, root, say))
    summary: dict[str, Any] = {"bench": "move", **result}
    summary["goals"] = {key: {how: goal} for key, (how, goal) in GOALS.items()}
    summary["met"] = goals_met(result)
    summary["options"] = dataclasses.asdict(opts)
    summary |= machine
    Console(stderr=True).print(table(result))
    return summary
