"""`skyfed bench summary`: a zone summary over many hosts, and one poll cycle over many children.

Each figure stands beside a baseline measured in the same run, runs of the two
interleaved, so their ratio holds on a noisy machine:

- summary: `ZoneView.local_summary()` (one pass of `summarize_hosts` over the
  online hosts of a real HostRegistry) against building a one-host Summary per
  host and folding them with `Summary.merge_all`. Both must give the same
  `to_dict()`, or the bench fails.
- poll: `Poller.cycle()` with the default concurrency against concurrency 1,
  over children served on real loopback HTTP by `skyfed.bench.fake_children`
  in a separate process, with a real SQLite database, ChildLinks and Vault.

Every repetition loop is bounded in count (`repeat`) and in time (BUDGET).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from skyfed.bench.sim_hosts import BenchError, fill_registry, heartbeats, new_registry, zone_hosts
from skyfed.compute.hosts.registry import HostRecord, HostRegistry
from skyfed.compute.hosts.section import HostsSection
from skyfed.settings import DEFAULT_FLAVORS, FlavorSpec, Settings
from skyfed.zones.summary import FlavorLike, NumericStats, Summary
from skyfed.zones.view import ZoneView

BUDGET = 300.0  # seconds at most for the repetitions of one measurement (after the first)
READY_TIMEOUT = 120.0  # for the fake children to build their reports and listen
CYCLE_TIMEOUT = 120.0  # for one poll cycle, whatever the children do
CACHED_CALLS = 10_000  # calls per timed batch of cached summaries


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


# -- the summary -------------------------------------------------------------------


def one_host_summary(host: HostRecord, flavors: Sequence[FlavorLike]) -> Summary:
    """The straightforward summary of a single host (the baseline folds these)."""
    if host.disabled:
        return Summary(hosts=1, disabled=1, fits={f.name: 0 for f in flavors})
    numeric: dict[str, NumericStats] = {}
    strings: dict[str, dict[str, int]] = {}
    for key, value in host.values.items():
        if isinstance(value, str):
            strings[key] = {value: 1}
        else:
            numeric[key] = NumericStats(value, value, value, 1)
    free_vcpus, free_ram, free_disk = host.free
    fits = {}
    for f in flavors:
        n = min(free_vcpus // f.vcpus, free_ram // f.ram_mb)
        if f.disk_gb:
            n = min(n, free_disk // f.disk_gb)
        fits[f.name] = max(n, 0)
    return Summary(hosts=1, numeric=numeric, strings=strings, fits=fits)


def fold_summary(registry: HostRegistry, flavors: Sequence[FlavorLike]) -> Summary:
    summary = Summary.merge_all(one_host_summary(h, flavors) for h in registry.online())
    summary.zones = 1
    return summary


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _check_same(what: str, got: Summary, want: Summary) -> None:
    a, b = got.to_dict(), want.to_dict()
    if a != b:
        wrong = [k for k in a if a[k] != b.get(k)]
        raise BenchError(f"{what}: summaries differ in {wrong}:\n  got  {a}\n  want {b}")


def _rounds(repeat: int) -> Iterable[int]:
    """Up to `repeat` rounds; after the first, stop once BUDGET seconds have gone."""
    deadline = time.monotonic() + BUDGET
    for i in range(repeat):
        if i > 0 and time.monotonic() > deadline:
            return
        yield i


def bench_summary(hosts: int, repeat: int, say: Callable[[str], None]) -> dict[str, Any]:
    flavors: list[FlavorSpec] = list(DEFAULT_FLAVORS)
    say(f"simulating {hosts:,} hosts")
    beats = heartbeats(zone_hosts(hosts, prefix="bench", seed=1))

    say("filling the host registry (under tracemalloc)")
    registry = new_registry()
    tracemalloc.start()
    try:
        fill_registry(registry, beats)
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del beats
    online = sum(1 for _ in registry.online())
    if len(registry) != hosts:
        raise BenchError(f"registry holds {len(registry)} hosts, expected {hosts}")

    view = ZoneView(max_age=3600.0)
    view.add_section(HostsSection(registry, flavors))
    say(f"timing summaries, {repeat} runs each")
    build_s: list[float] = []
    fold_s: list[float] = []
    built = folded = None
    for _ in _rounds(repeat):
        seconds, built = _timed(view.local_summary)
        build_s.append(seconds)
        seconds, folded = _timed(lambda: fold_summary(registry, flavors))
        fold_s.append(seconds)
        _check_same("local_summary() against the fold of one-host summaries", built, folded)
    assert built is not None
    if built.hosts != online or built.disabled != sum(r.disabled for r in registry.online()):
        raise BenchError(f"summary counts {built.hosts} hosts, {online} are online")

    cached_us, to_dict_us = _cached_costs(view, repeat)
    build, fold = statistics.median(build_s), statistics.median(fold_s)
    return {
        "online_hosts": online,
        "summary_build_ms": build * 1e3,
        "baseline_fold_ms": fold * 1e3,
        "speedup": fold / build,
        "hosts_per_s": hosts / build,
        "cached_summary_us": cached_us,
        "summary_to_dict_us": to_dict_us,
        "registry_mb": peak / 2**20,
        "registry_retained_mb": retained / 2**20,
        "summary_runs": len(build_s),
        "summary_json_kb": len(json.dumps(built.to_dict())) / 1024,
    }


def _cached_costs(view: ZoneView, repeat: int) -> tuple[float, float]:
    """Per call, in microseconds: `ZoneView.summary()` once built, and its `to_dict()`."""
    first, _ = view.summary()
    per_call: list[float] = []
    per_dict: list[float] = []
    for _ in _rounds(repeat):
        started = time.perf_counter()
        for _ in range(CACHED_CALLS):
            summary, _ = view.summary()
        per_call.append((time.perf_counter() - started) / CACHED_CALLS)
        if summary is not first:
            raise BenchError("ZoneView.summary() rebuilt instead of serving its cache")
        started = time.perf_counter()
        for _ in range(CACHED_CALLS // 10):
            summary.to_dict()
        per_dict.append((time.perf_counter() - started) / (CACHED_CALLS // 10))
    return statistics.median(per_call) * 1e6, statistics.median(per_dict) * 1e6


# -- the poll cycle ----------------------------------------------------------------

HOSTS_PER_CHILD = 1000


def bench_poll(
    children: int, repeat: int, say: Callable[[str], None], latency_ms: float = 0.0
) -> dict[str, Any]:
    from skyfed.bench import fake_children
    from skyfed.federation.process import ManagedProcess, free_port

    with tempfile.TemporaryDirectory(prefix="skyfed-bench-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = ManagedProcess(
            "fake-children",
            [
                sys.executable,
                "-m",
                "skyfed.bench.fake_children",
                "--port",
                str(port),
                "--children",
                str(children),
                "--hosts-per-child",
                str(HOSTS_PER_CHILD),
                "--latency-ms",
                str(latency_ms),
                "--max-seconds",
                str(BUDGET * 4),
            ],
            Path(tmp) / "fake-children.log",
        )
        say(
            f"starting {children} fake children ({HOSTS_PER_CHILD} hosts each, "
            f"{latency_ms:g} ms latency) on {base}"
        )
        server.start()
        try:
            _wait_ready(server, base)
            names = fake_children.child_names(children)
            return asyncio.run(_poll_cycles(Path(tmp), base, names, repeat, say))
        except BaseException:
            say(f"fake children log:\n{server.log_tail()}")
            raise
        finally:
            server.stop()


def _wait_ready(server: Any, base: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if not server.running:
                raise BenchError(f"fake children exited:\n{server.log_tail()}")
            try:
                if http.get(f"{base}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise BenchError(f"fake children not listening after {READY_TIMEOUT:g}s")


async def _poll_cycles(
    tmp: Path, base: str, names: list[str], repeat: int, say: Callable[[str], None]
) -> dict[str, Any]:
    from cryptography.fernet import Fernet
    from sqlalchemy import select

    from skyfed.bench.fake_children import SERVICE_PASSWORD, SERVICE_USERNAME, child_id
    from skyfed.db.engine import Database
    from skyfed.db.migrate import upgrade
    from skyfed.identity.vault import Vault
    from skyfed.zones.links import ChildLinks
    from skyfed.zones.models import ChildZone
    from skyfed.zones.poller import Poller

    db = Database(f"sqlite+aiosqlite:///{tmp / 'parent.db'}")
    vault = Vault(Fernet.generate_key())
    timeout = _default("poll_timeout")
    links = ChildLinks(vault, timeout)
    try:
        await upgrade(db)
        async with db.session() as session:
            for name in names:
                session.add(
                    ChildZone(
                        name=name,
                        api_url=f"{base}/{name}",
                        username=SERVICE_USERNAME,
                        password_secret=vault.encrypt(SERVICE_PASSWORD),
                    )
                )
            await session.commit()
        view = ZoneView(new_registry(), DEFAULT_FLAVORS)
        concurrency = _default("poll_concurrency")

        def poller(slots: int) -> Poller:
            return Poller(
                db,
                links,
                view,
                interval=_default("poll_interval"),
                timeout=timeout,
                failures=_default("poll_failures"),
                concurrency=slots,
            )

        concurrent, sequential = poller(concurrency), poller(1)
        await concurrent.load()
        say(f"polling {len(names)} children: concurrency {concurrency} against 1")
        first = await _cycle(concurrent, db, len(names))
        cycles: list[float] = []
        baseline: list[float] = []
        for _ in _rounds(repeat):
            cycles.append(await _cycle(concurrent, db, len(names)))
            baseline.append(await _cycle(sequential, db, len(names)))

        async with db.session() as session:
            rows = (await session.scalars(select(ChildZone))).all()
        if sorted(r.remote_id or "" for r in rows) != sorted(child_id(n) for n in names):
            raise BenchError("children were recorded with the wrong remote ids")
        summary, _ = view.summary()
        if summary.zones != len(names) + 1:
            raise BenchError(f"the parent's summary counts {summary.zones} zones")
    finally:
        await links.close()
        await db.dispose()
    cycle, sequential_s = statistics.median(cycles), statistics.median(baseline)
    return {
        "poll_concurrency": concurrency,
        "poll_cycle_ms": cycle * 1e3,
        "poll_cycle_first_ms": first * 1e3,
        "baseline_sequential_ms": sequential_s * 1e3,
        "poll_speedup": sequential_s / cycle,
        "poll_runs": len(cycles),
        "subtree_hosts": summary.hosts,
    }


async def _cycle(poller: Any, db: Any, children: int) -> float:
    from sqlalchemy import select

    from skyfed.zones.models import ChildZone

    gc.collect()
    started = time.perf_counter()
    async with asyncio.timeout(CYCLE_TIMEOUT):
        result = await poller.cycle()
    seconds = time.perf_counter() - started
    if result.polled != children or result.ok != children:
        async with db.session() as session:
            errors = sorted(
                {c.last_error for c in (await session.scalars(select(ChildZone))).all()} - {""}
            )
        raise BenchError(
            f"poll cycle reached {result.ok} of {result.polled} children "
            f"(expected {children}); errors: {errors[:5]}"
        )
    return seconds


# -- the command -------------------------------------------------------------------


def run_summary_bench(
    hosts: int = 100_000, children: int = 100, repeat: int = 5, child_latency_ms: float = 0.0
) -> dict[str, Any]:
    """Run both measurements, print a table, and return the figures (the JSON line).

    `child_latency_ms` delays each fake child's answers, like a WAN between zones; the
    CLI keeps the default 0 (plain loopback), where polling is bound by the parent's CPU.
    """
    if not 1 <= hosts <= 2_000_000:
        raise ValueError("hosts must be 1..2000000")
    if not 1 <= children <= 10_000:
        raise ValueError("children must be 1..10000")
    if not 1 <= repeat <= 1000:
        raise ValueError("repeat must be 1..1000")
    if not 0 <= child_latency_ms <= 500:
        raise ValueError("child_latency_ms must be 0..500")
    progress = Console(stderr=True)

    def say(message: str) -> None:
        progress.print(f"[dim]bench summary:[/dim] {message}", highlight=False, soft_wrap=True)

    s = bench_summary(hosts, repeat, say)
    p = bench_poll(children, repeat, say, child_latency_ms)
    result = {
        "bench": "summary",
        "hosts": hosts,
        "summary_build_ms": round(s["summary_build_ms"], 2),
        "baseline_fold_ms": round(s["baseline_fold_ms"], 2),
        "speedup": round(s["speedup"], 2),
        "hosts_per_s": round(s["hosts_per_s"]),
        "cached_summary_us": round(s["cached_summary_us"], 3),
        "summary_to_dict_us": round(s["summary_to_dict_us"], 1),
        "registry_mb": round(s["registry_mb"], 1),
        "registry_retained_mb": round(s["registry_retained_mb"], 1),
        "children": children,
        "child_latency_ms": child_latency_ms,
        "poll_concurrency": p["poll_concurrency"],
        "poll_cycle_ms": round(p["poll_cycle_ms"], 2),
        "poll_cycle_first_ms": round(p["poll_cycle_first_ms"], 2),
        "baseline_sequential_ms": round(p["baseline_sequential_ms"], 2),
        "poll_speedup": round(p["poll_speedup"], 2),
        "repeat": repeat,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    _print_table(result, s, p)
    return result


def _print_table(r: dict[str, Any], s: dict[str, Any], p: dict[str, Any]) -> None:
    table = Table(
        title=f"skyfed bench summary (median of {s['summary_runs']} / {p['poll_runs']} runs)"
    )
    table.add_column("measurement")
    table.add_column("figure", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row(
        f"zone summary, {r['hosts']:,} hosts ({s['online_hosts']:,} online)",
        f"{r['summary_build_ms']:,.1f} ms",
        f"{r['baseline_fold_ms']:,.1f} ms (fold)",
        f"{r['speedup']:.1f}x",
    )
    table.add_row("  hosts per second", f"{r['hosts_per_s']:,}", "", "")
    table.add_row("cached ZoneView.summary()", f"{r['cached_summary_us']:.2f} us", "", "")
    table.add_row(
        f"  its to_dict() ({s['summary_json_kb']:.1f} KiB of JSON)",
        f"{r['summary_to_dict_us']:.1f} us",
        "",
        "",
    )
    table.add_row(
        "host registry memory (peak / retained)",
        f"{r['registry_mb']:.1f} / {r['registry_retained_mb']:.1f} MiB",
        "",
        "",
    )
    latency = f", {r['child_latency_ms']:g} ms latency" if r["child_latency_ms"] else ""
    table.add_row(
        f"poll cycle, {r['children']} children{latency}, concurrency {r['poll_concurrency']}",
        f"{r['poll_cycle_ms']:,.1f} ms",
        f"{r['baseline_sequential_ms']:,.1f} ms (conc. 1)",
        f"{r['poll_speedup']:.1f}x",
    )
    table.add_row("  first cycle (with logins)", f"{r['poll_cycle_first_ms']:,.1f} ms", "", "")
    Console(width=110).print(table)
