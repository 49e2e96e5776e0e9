"""`skyfed bench objects`: skyfed's Swift API against the same work sent to the cluster.

Three real one-replica Swift clusters (`LocalSwift`, tier gold on each) and one
zone process (`skyfed serve`, SQLite, a temporary state directory) are started on
loopback; the clusters are registered with the zone, and a project with a member
user is made. Every figure is measured through skyfed (the user's token from the
zone's `/auth/v1.0`, its storage URL) and, in the same run and in turns, against
the cluster that holds the container, directly, as that cluster's reseller admin on
the same account name (`AUTH_<project id>`, another container):

- **large objects**: a PUT and a GET of `large_mib` MiB, MB/s (10^6 bytes a second);
- **small objects**: `small_kib` KiB PUTs, then GETs of what was written, by
  `concurrency` clients for `small_seconds` (at most `small_max_ops`), operations a
  second;
- **an account listing**: `containers` containers created through skyfed, spread
  over the three clusters (each batch goes to the one cluster left with room), and
  listed as Swift documents it (`GET /v1/AUTH_x?format=json&limit=10000`, paging with
  `marker` until an empty page), against the same number created on one cluster and
  listed there directly, containers a second. While skyfed does not serve account
  GET, `list_ratio` is null and `list_error` says what it answered;
- **the zone's memory during an upload**: the zone process's resident set before a
  `upload_mib` MiB PUT through skyfed, and its peak during it (`VmHWM`, reset first
  through `/proc/PID/clear_refs`, and `VmRSS` sampled every 20 ms).

Ratios are skyfed's rate over the direct one (1.0: skyfed costs nothing). The load
generator (`load_http`) sends bodies from one reused buffer and drops what it
receives, so it costs the two sides the same, little. Every loop is bounded in count
and in time: requests have timeouts, repeats stop once a measurement has used
`budget_s` (after its first round), creates and listings have deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import tomli_w
from rich.console import Console
from rich.table import Table

from skyfed.bench.load_http import Answer, HttpConnection, HttpFailure
from skyfed.client import SkyfedClient
from skyfed.federation.process import ZoneProcess, free_port
from skyfed.identity.secret_files import write_private
from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet

MB = 1_000_000
MiB = 1 << 20
KiB = 1 << 10
ADMIN_PASSWORD = "bench-admin-password"
USER_PASSWORD = "bench-user-password-1"
CLUSTERS = ("swift-a", "swift-b", "swift-c")
TIER = "gold"
CAPACITY = 1 << 40  # what each cluster is registered with (bytes)
LISTING_LIMIT = 10_000  # Swift's largest page
SOURCE_BYTES = 1 * MiB  # the reused buffer bodies are sent from
LARGE_TIMEOUT = 600.0
SMALL_TIMEOUT = 30.0
LIST_TIMEOUT = 300.0
RSS_SAMPLE_EVERY = 0.02
OBJECTS = "bench-objects"  # the container of the object figures, through skyfed
DIRECT_OBJECTS = "bench-objects-direct"  # and directly, in the same account
DIRECT_LIST_ACCOUNT = "AUTH_bench-list-direct"

GOALS: dict[str, tuple[str, float]] = {
    "large_put_ratio": (">=", 0.9),
    "large_get_ratio": (">=", 0.9),
    "small_put_ratio": (">=", 0.8),
    "small_get_ratio": (">=", 0.8),
    "list_ratio": (">=", 0.7),
    "upload_rss_growth_mb": ("<=", 50.0),
}


class BenchError(RuntimeError):
    """The bench could not run as it should (a failed setup, a wrong answer)."""


@dataclasses.dataclass(frozen=True)
class Options:
    large_mib: int = 64
    large_repeat: int = 3
    small_kib: int = 4
    concurrency: int = 32
    small_seconds: float = 10.0
    small_max_ops: int = 100_000
    small_repeat: int = 3
    containers: int = 10_000
    list_repeat: int = 3
    upload_mib: int = 1024
    budget_s: float = 300.0  # a measurement stops repeating after this (its first round done)

    def check(self) -> None:
        if min(self.large_mib, self.small_kib, self.concurrency, self.small_max_ops) < 1:
            raise ValueError("--large-mib, --small-kib, --concurrency, --small-max-ops >= 1")
        if min(self.large_repeat, self.small_repeat, self.list_repeat) < 1:
            raise ValueError("repeats must be 1 or more")
        if not 0 < self.small_seconds <= 600 or self.budget_s <= 0:
            raise ValueError("--small-seconds in (0, 600], --budget-s > 0")
        if self.containers < 0 or self.upload_mib < 0:
            raise ValueError("--containers and --upload-mib: 0 (skip) or more")


# -- the two sides ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Side:
    """Where a measurement's requests go: host, port, an account's path, a token."""

    name: str
    host: str
    port: int
    account: str  # /v1/AUTH_...
    token: str

    def target(self, *path: str) -> str:
        return "/".join([self.account, *(quote(p, safe="/") for p in path)])

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}

    def with_account(self, account: str) -> Side:
        base = self.account.rsplit("/", 1)[0]
        return dataclasses.replace(self, account=f"{base}/{account}")


def side_of(name: str, storage_url: str, token: str) -> Side:
    parts = urlsplit(storage_url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise BenchError(f"unexpected storage URL {storage_url}")
    return Side(name, parts.hostname, parts.port, parts.path.rstrip("/"), token)


async def swift_login(auth_url: str, user: str, key: str) -> tuple[str, str]:
    """Swift v1 auth: a token and the storage URL."""
    async with httpx.AsyncClient(timeout=30.0) as http:
        answer = await http.get(auth_url, headers={"X-Auth-User": user, "X-Auth-Key": key})
    token, url = answer.headers.get("x-auth-token"), answer.headers.get("x-storage-url")
    if answer.status_code != 200 or not token or not url:
        raise BenchError(f"login of {user} at {auth_url} answered {answer.status_code}")
    return token, url


async def exchange(
    side: Side, method: str, target: str, *, timeout: float = SMALL_TIMEOUT, **kwargs: Any
) -> Answer:
    """One request on a connection of its own."""
    connection = await HttpConnection.open(side.host, side.port)
    try:
        async with asyncio.timeout(timeout):
            return await connection.request(method, target, side.headers, **kwargs)
    finally:
        connection.close()


def expect(answer: Answer, statuses: Sequence[int], what: str) -> None:
    if answer.status not in statuses:
        raise BenchError(f"{what} answered {answer.status}: {answer.body[:300]!r}")


# -- the clusters and the zone ------------------------------------------------------------


def zone_process(directory: Path) -> ZoneProcess:
    """A zone as `skyfed up` runs one: its own process, SQLite in its state directory."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    values: dict[str, Any] = {
        "name": "bench-objects",
        "host": "127.0.0.1",
        "port": port,
        "state_dir": str(directory),
        "log_file": str(directory / "zone.log"),
        "log_level": "WARNING",
        "admin_password": ADMIN_PASSWORD,
        "allowed_storage_hosts": ["127.0.0.1"],
    }
    config = directory / "zone.toml"
    write_private(config, tomli_w.dumps(values))
    return ZoneProcess("bench-objects", config, port, directory / "process.log")


class Stack:
    """Swift clusters (three by default) and one zone process with them registered."""

    def __init__(self, root: Path, clusters: Sequence[str] = CLUSTERS) -> None:
        self.swifts = LocalSwiftSet.create(root / "swift", clusters, policies=(TIER,))
        self.zone = zone_process(root / "zone")

    def admin(self) -> SkyfedClient:
        return SkyfedClient(self.zone.url, username="admin", password=ADMIN_PASSWORD, timeout=60.0)

    async def start(self) -> None:
        self.zone.start()
        await self.swifts.start(timeout=120.0)
        await self.zone.wait_ready(timeout=120.0)
        async with self.admin() as admin:
            for swift in self.swifts:
                creds = swift.reseller_admin
                await admin.add_storage_cluster(
                    swift.name, swift.auth_url, creds.user, creds.key,
                    tiers={TIER: TIER}, capacity_bytes=CAPACITY,
                )  # fmt: skip

    async def stop(self) -> None:
        await asyncio.to_thread(self.zone.stop)
        await self.swifts.stop()
        await self.swifts.wipe()  # the objects on tmpfs go too

    async def member(self, project: str, user: str) -> Side:
        """A new project with a member user, logged in at the zone's /auth/v1.0."""
        async with self.admin() as admin:
            await admin.create_project(project)
            await admin.create_user(user, USER_PASSWORD, project, ["member"])
        token, url = await swift_login(
            f"{self.zone.url}/auth/v1.0", f"{project}:{user}", USER_PASSWORD
        )
        return side_of("skyfed", url, token)

    async def direct(self, swift: LocalSwift, account: str) -> Side:
        """`swift` itself, as its reseller admin, on `account`."""
        creds = swift.reseller_admin
        token, url = await swift_login(swift.auth_url, creds.user, creds.key)
        return side_of("direct", url, token).with_account(account)

    async def holder(self, side: Side, container: str) -> LocalSwift:
        """The cluster that holds `side`'s container (asked of each, directly)."""
        for swift in self.swifts:
            direct = await self.direct(swift, side.account.rsplit("/", 1)[1])
            answer = await exchange(direct, "GET", direct.target(container) + "?limit=0")
            if answer.status in (200, 204):
                return swift
        raise BenchError(f"no cluster holds container {container}")

    async def favour(self, swift: LocalSwift) -> None:
        """Leave room on `swift` alone, so new containers are placed there (placement
        weighs the clusters by their free bytes per container: one byte against a TiB)."""
        async with self.admin() as admin:
            for other in self.swifts:
                room = CAPACITY if other is swift else 1
                await admin.update_storage_cluster(other.name, capacity_bytes=room)


# -- measurements ---------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One timed run: operations (or bytes) done, seconds, failures."""

    done: int
    seconds: float
    errors: int = 0
    error: str = ""

    def rate(self, per: float = 1.0) -> float:
        return self.done / per / self.seconds if self.seconds > 0 else 0.0


async def put_large(side: Side, container: str, name: str, source: memoryview, size: int) -> Run:
    connection = await HttpConnection.open(side.host, side.port)
    try:
        started = time.perf_counter()
        async with asyncio.timeout(LARGE_TIMEOUT):
            answer = await connection.request(
                "PUT", side.target(container, name), side.headers, source=source, size=size
            )
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    expect(answer, (201,), f"{side.name}: PUT of {size} bytes")
    return Run(size, seconds)


async def get_large(side: Side, container: str, name: str, size: int) -> Run:
    connection = await HttpConnection.open(side.host, side.port)
    try:
        started = time.perf_counter()
        async with asyncio.timeout(LARGE_TIMEOUT):
            answer = await connection.request("GET", side.target(container, name), side.headers)
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    expect(answer, (200,), f"{side.name}: GET of {size} bytes")
    if answer.received != size:
        raise BenchError(f"{side.name}: GET gave {answer.received} bytes of {size}")
    return Run(size, seconds)


async def many(
    side: Side,
    concurrency: int,
    count: int,
    seconds: float,
    request: Callable[[HttpConnection, int], Any],
) -> Run:
    """`request(connection, i)` for i = 0, 1, ... from `concurrency` clients, each on a
    keep-alive connection of its own, until `count` are done or `seconds` have passed.
    A request answers True (done) or a reason (failed); an exception fails it too."""
    connections = await asyncio.gather(
        *(HttpConnection.open(side.host, side.port) for _ in range(concurrency))
    )
    counter = iter(range(count))
    done = errors = 0
    error = ""
    started = time.perf_counter()
    end = started + seconds

    async def client(connection: HttpConnection) -> None:
        nonlocal done, errors, error
        for i in counter:
            if time.perf_counter() >= end:
                break
            try:
                if not connection.usable:
                    connection = await HttpConnection.open(side.host, side.port)
                async with asyncio.timeout(SMALL_TIMEOUT):
                    outcome = await request(connection, i)
            except (HttpFailure, OSError, TimeoutError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
                connection.close()
            if outcome is True:
                done += 1
            else:
                errors += 1
                error = error or str(outcome)
        connection.close()

    try:
        await asyncio.gather(*(client(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    return Run(done, time.perf_counter() - started, errors, error)


async def put_small(
    side: Side, container: str, prefix: str, body: bytes, opts: Options, written: list[str]
) -> Run:
    async def put(connection: HttpConnection, i: int) -> bool | str:
        name = f"{prefix}{i}"
        answer = await connection.request("PUT", side.target(container, name), side.headers,
                                          body=body)  # fmt: skip
        if answer.status != 201:
            return f"PUT answered {answer.status}"
        written.append(name)
        return True

    return await many(side, opts.concurrency, opts.small_max_ops, opts.small_seconds, put)


async def get_small(
    side: Side, container: str, names: Sequence[str], size: int, opts: Options
) -> Run:
    if not names:
        raise BenchError(f"{side.name}: no small object was written to read")

    async def get(connection: HttpConnection, i: int) -> bool | str:
        answer = await connection.request(
            "GET", side.target(container, names[i % len(names)]), side.headers
        )
        if answer.status != 200 or answer.received != size:
            return f"GET answered {answer.status} with {answer.received} bytes"
        return True

    return await many(side, opts.concurrency, opts.small_max_ops, opts.small_seconds, get)


async def create_containers(
    side: Side, names: Sequence[str], concurrency: int, deadline: float
) -> Run:
    async def put(connection: HttpConnection, i: int) -> bool | str:
        answer = await connection.request("PUT", side.target(names[i]), side.headers)
        return True if answer.status in (201, 202) else f"container PUT answered {answer.status}"

    run = await many(side, concurrency, len(names), deadline, put)
    if run.done != len(names):
        raise BenchError(
            f"{side.name}: {run.done} of {len(names)} containers created in "
            f"{run.seconds:.0f} s ({run.errors} failed: {run.error or 'out of time'})"
        )
    return run


async def list_account(side: Side, expected: int) -> tuple[Run, str | None]:
    """The whole account listing, page after page; (the run, what went wrong)."""
    connection = await HttpConnection.open(side.host, side.port)
    listed = 0
    marker = ""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(LIST_TIMEOUT):
            for _ in range(expected + 2):  # pages of one entry at the very least
                query = f"?format=json&limit={LISTING_LIMIT}"
                if marker:
                    query += f"&marker={quote(marker, safe='')}"
                answer = await connection.request(
                    "GET", side.account + query, side.headers, keep_body=True
                )
                if answer.status == 204:
                    break
                if answer.status != 200:
                    body = answer.body[:200].decode(errors="replace")
                    return Run(listed, 0.0), f"account GET answered {answer.status}: {body}"
                entries = json.loads(answer.body)
                if not entries:
                    break
                listed += len(entries)
                marker = entries[-1]["name"]
                if not connection.usable:
                    connection.close()
                    connection = await HttpConnection.open(side.host, side.port)
    except (HttpFailure, OSError, TimeoutError, ValueError, KeyError, TypeError) as exc:
        return Run(listed, 0.0), f"account listing failed: {type(exc).__name__}: {exc}"
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    if listed != expected:
        return Run(listed, seconds), f"listed {listed} containers, {expected} expected"
    return Run(listed, seconds), None


# -- the zone's memory ------------------------------------------------------------------


def status_kib(pid: int, field: str) -> int | None:
    """A `/proc/PID/status` figure in KiB (VmRSS, VmHWM), None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak(pid: int) -> bool:
    """Set the process's VmHWM back to its VmRSS (Linux 4.0+, a process of ours)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def upload_rss(side: Side, pid: int, source: memoryview, size: int) -> dict[str, Any]:
    """The zone's resident set before an upload of `size` bytes through it, and its peak."""
    before = status_kib(pid, "VmRSS")
    if before is None:
        raise BenchError(f"cannot read /proc/{pid}/status")
    hwm_reset = reset_peak(pid)
    peak = before
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, status_kib(pid, "VmRSS") or 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RSS_SAMPLE_EVERY)

    sampler = asyncio.create_task(sample())
    try:
        run = await put_large(side, OBJECTS, "upload", source, size)
    finally:
        stop.set()
        await sampler
    hwm = status_kib(pid, "VmHWM") if hwm_reset else None
    peak = max(peak, hwm or 0)
    expect(await exchange(side, "DELETE", side.target(OBJECTS, "upload")), (204,), "DELETE")
    return {
        "rss_before_mb": round(before / 1024, 1),
        "rss_peak_mb": round(peak / 1024, 1),
        "upload_rss_growth_mb": round((peak - before) / 1024, 1),
        "peak_from": "VmHWM" if hwm_reset else "VmRSS samples",
        "upload_mb_s": round(run.rate(MB), 1),
    }


# -- the bench ---------------------------------------------------------------------------


class Turns:
    """Rounds of a measurement, bounded by count and (after the first) by `budget_s`."""

    def __init__(self, repeat: int, budget_s: float) -> None:
        self.repeat = repeat
        self.budget_s = budget_s

    def __iter__(self) -> Iterator[int]:
        started = time.monotonic()
        for round_ in range(self.repeat):
            if round_ and time.monotonic() - started > self.budget_s:
                return
            yield round_


def sides_in_turn(round_: int, *sides: Side) -> tuple[Side, ...]:
    """Who goes first alternates, so neither side always finds the machine warmer."""
    return sides if round_ % 2 == 0 else tuple(reversed(sides))


def median_rate(runs: Sequence[Run], per: float = 1.0) -> float | None:
    return round(statistics.median(r.rate(per) for r in runs), 1) if runs else None


def ratio(figure: float | None, baseline: float | None) -> float | None:
    if figure is None or baseline is None or baseline <= 0:
        return None
    return round(figure / baseline, 3)


async def measure(opts: Options, root: Path, say: Callable[[str], None]) -> dict[str, Any]:
    stack = Stack(root)
    result: dict[str, Any] = {}
    runs: dict[str, list[Run]] = {}
    source = memoryview(os.urandom(SOURCE_BYTES))
    say(f"starting {len(CLUSTERS)} Swift clusters and a zone process")
    started = time.monotonic()
    try:
        await stack.start()
        assert stack.zone.pid is not None
        say(f"ready in {time.monotonic() - started:.1f} s")
        sky = await stack.member("bench", "bench-user")
        expect(await exchange(sky, "PUT", sky.target(OBJECTS)), (201,), "skyfed: container PUT")
        holder = await stack.holder(sky, OBJECTS)
        direct = await stack.direct(holder, sky.account.rsplit("/", 1)[1])
        expect(await exchange(direct, "PUT", direct.target(DIRECT_OBJECTS)), (201,), "direct")
        result["cluster"] = holder.name
        containers = {sky.name: OBJECTS, direct.name: DIRECT_OBJECTS}
        for side in (sky, direct):  # a first request each way: pools, caches, tokens
            small = source[: opts.small_kib * KiB].tobytes()
            target = side.target(containers[side.name], "warm")
            expect(await exchange(side, "PUT", target, body=small), (201,), "warm-up PUT")
            expect(await exchange(side, "GET", target), (200,), "warm-up GET")

        if opts.upload_mib:
            say(f"{opts.upload_mib} MiB upload through skyfed, the zone's memory watched")
            result |= await upload_rss(sky, stack.zone.pid, source, opts.upload_mib * MiB)

        size = opts.large_mib * MiB
        say(f"{opts.large_mib} MiB PUT and GET, {opts.large_repeat} rounds")
        for round_ in Turns(opts.large_repeat, opts.budget_s):
            for side in sides_in_turn(round_, sky, direct):
                run = await put_large(side, containers[side.name], "large", source, size)
                runs.setdefault(f"large_put_{side.name}", []).append(run)
            for side in sides_in_turn(round_, sky, direct):
                run = await get_large(side, containers[side.name], "large", size)
                runs.setdefault(f"large_get_{side.name}", []).append(run)

        body = source[: opts.small_kib * KiB].tobytes()
        say(
            f"{opts.small_kib} KiB PUT and GET, {opts.concurrency} clients, "
            f"{opts.small_seconds:g} s each, {opts.small_repeat} rounds"
        )
        written: dict[str, list[str]] = {sky.name: [], direct.name: []}
        for round_ in Turns(opts.small_repeat, opts.budget_s):
            for side in sides_in_turn(round_, sky, direct):
                run = await put_small(
                    side, containers[side.name], f"s{round_}-", body, opts, written[side.name]
                )
                runs.setdefault(f"small_put_{side.name}", []).append(run)
            for side in sides_in_turn(round_, sky, direct):
                run = await get_small(
                    side, containers[side.name], written[side.name], len(body), opts
                )
                runs.setdefault(f"small_get_{side.name}", []).append(run)

        if opts.containers:
            result |= await measure_listing(stack, opts, runs, say)
    finally:
        say("stopping")
        await stack.stop()

    for kind, per in (("large_put", MB), ("large_get", MB), ("small_put", 1), ("small_get", 1)):
        figure = median_rate(runs.get(f"{kind}_skyfed", []), per)
        baseline = median_rate(runs.get(f"{kind}_direct", []), per)
        unit = "mb_s" if kind.startswith("large") else "ops_s"
        result[f"{kind}_{unit}"] = figure
        result[f"baseline_{kind}_{unit}"] = baseline
        result[f"{kind}_ratio"] = ratio(figure, baseline)
        # Each round's two runs were back to back: their ratio moves less with the
        # machine's load than the medians' ratio does (shown for reading, not judged).
        pairs = zip(runs.get(f"{kind}_skyfed", []), runs.get(f"{kind}_direct", []), strict=False)
        result[f"{kind}_round_ratios"] = [ratio(s.rate(), d.rate()) for s, d in pairs]
    result["runs"] = {
        key: [round(r.rate(MB if key.startswith("large") else 1), 1) for r in values]
        for key, values in runs.items()
    }
    result["errors"] = {
        key: sum(r.errors for r in values)
        for key, values in runs.items()
        if any(r.errors for r in values)
    }
    result["error_sample"] = next(
        (r.error for values in runs.values() for r in values if r.error), ""
    )
    return result


async def measure_listing(
    stack: Stack, opts: Options, runs: dict[str, list[Run]], say: Callable[[str], None]
) -> dict[str, Any]:
    n = opts.containers
    names = [f"c{i:06d}" for i in range(n)]
    deadline = max(600.0, n / 5)
    lister = await stack.member("bench-list", "bench-lister")
    say(f"creating {n} containers through skyfed, a third on each cluster")
    created = Run(0, 0.0)
    thirds = [names[i * n // 3 : (i + 1) * n // 3] for i in range(3)]
    for swift, batch in zip(stack.swifts, thirds, strict=True):
        await stack.favour(swift)
        if batch:
            run = await create_containers(lister, batch, opts.concurrency, deadline)
            created = Run(created.done + run.done, created.seconds + run.seconds)
    spread: dict[str, int] = {}
    for swift in stack.swifts:
        direct_there = await stack.direct(swift, lister.account.rsplit("/", 1)[1])
        head = await exchange(direct_there, "GET", direct_there.account + "?limit=0")
        spread[swift.name] = int(head.headers.get("x-account-container-count", "0"))
    first = stack.swifts.clusters[0]
    say(f"creating {n} containers on {first.name} directly")
    direct = await stack.direct(first, DIRECT_LIST_ACCOUNT)
    created_direct = await create_containers(direct, names, opts.concurrency, deadline)
    say(f"listing {n} containers, {opts.list_repeat} rounds")
    error: str | None = None
    for round_ in Turns(opts.list_repeat, opts.budget_s):
        for side in sides_in_turn(round_, lister, direct):
            run, problem = await list_account(side, n)
            if problem is not None:
                if side is direct:
                    raise BenchError(f"direct listing: {problem}")
                error = error or problem
            else:
                runs.setdefault(f"list_{side.name}", []).append(run)
    figure = None if error else median_rate(runs.get("list_skyfed", []))
    baseline = median_rate(runs.get("list_direct", []))
    return {
        "containers": n,
        "containers_spread": spread,
        "container_creates_per_s": round(created.rate(), 1),
        "baseline_container_creates_per_s": round(created_direct.rate(), 1),
        "list_containers_per_s": figure,
        "baseline_list_containers_per_s": baseline,
        "list_ratio": ratio(figure, baseline),
        "list_error": error,
    }


def goals_met(result: dict[str, Any]) -> dict[str, bool | None]:
    met: dict[str, bool | None] = {}
    for key, (how, goal) in GOALS.items():
        value = result.get(key)
        if value is None:
            met[key] = None
        else:
            met[key] = value >= goal if how == ">=" else value <= goal
    return met


def table(result: dict[str, Any], opts: Options) -> Table:
    out = Table(title="skyfed bench objects (skyfed against the same cluster directly)")
    for column in ("figure", "through skyfed", "direct (baseline)", "ratio", "goal", "met"):
        out.add_column(column)
    met = goals_met(result)

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    rows = [
        (f"{opts.large_mib} MiB PUT, MB/s", "large_put_mb_s", "large_put_ratio"),
        (f"{opts.large_mib} MiB GET, MB/s", "large_get_mb_s", "large_get_ratio"),
        (f"{opts.small_kib} KiB PUT x{opts.concurrency}, ops/s", "small_put_ops_s",
         "small_put_ratio"),
        (f"{opts.small_kib} KiB GET x{opts.concurrency}, ops/s", "small_get_ops_s",
         "small_get_ratio"),
        (f"listing {opts.containers} containers, per s", "list_containers_per_s", "list_ratio"),
    ]  # fmt: skip
    for label, key, ratio_key in rows:
        how, goal = GOALS[ratio_key]
        out.add_row(
            label,
            cell(result.get(key)),
            cell(result.get(f"baseline_{key}")),
            cell(result.get(ratio_key)),
            f"{how} {goal:g}",
            cell(met[ratio_key]),
        )
    if opts.containers:
        out.add_row(
            "container creates per s",
            cell(result.get("container_creates_per_s")),
            cell(result.get("baseline_container_creates_per_s")),
            "",
            "",
            "",
        )
    if opts.upload_mib:
        out.add_row(
            f"{opts.upload_mib} MiB upload: zone RSS growth, MiB",
            cell(result.get("upload_rss_growth_mb")),
            "",
            "",
            "<= 50",
            cell(met["upload_rss_growth_mb"]),
        )
        out.add_row(
            f"{opts.upload_mib} MiB upload, MB/s", cell(result.get("upload_mb_s")), "", "", "", ""
        )
    return out


def run_objects_bench(opts: Options) -> dict[str, Any]:
    opts.check()
    result, machine, say = run_measured("objects", lambda root, say: measure(opts, root, say))
    summary: dict[str, Any] = {"bench": "objects", **result}
    if opts.containers and result.get("list_error"):
        say(f"list_ratio: null ({result['list_error']})")
    summary["goals"] = {key: {how: goal} for key, (how, goal) in GOALS.items()}
    summary["met"] = goals_met(result)
    summary["options"] = dataclasses.asdict(opts)
    summary |= machine
    Console().print(table(result, opts))
    return summary


Say = Callable[[str], None]


def run_measured(
    kind: str, measure: Callable[[Path, Say], Awaitable[dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, Any], Say]:
    """A bench's figures, measured in a temporary directory; the machine's state beside
    them (load before and after, CPUs, Python, wall time); and how it tells progress."""
    console = Console(stderr=True)

    def say(message: str) -> None:
        console.print(f"[dim]{message}[/]")

    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"skyfed-bench-{kind}-") as tmp:
        result = run_loop(measure(Path(tmp), say))
    machine = {
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    return result, machine, say


def run_loop(coroutine: Any) -> Any:
    """Run on uvloop when it is there (as the zone's uvicorn does): a lighter client."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)
