"""`skyfed bench e2e`: servers created at the root of a real federation, timed to ACTIVE.

The federation is `examples/federation.toml` (six zone processes, three sim
agents with 900 hosts, loopback HTTP). N servers are created at the root at an
offered `rate` (open loop: create i is due at i / rate seconds, and its time to
ACTIVE counts from then, so a system that falls behind shows its queue rather
than slowing the load down), at most `concurrency` in flight; rate 0 sends them
as fast as `concurrency` clients can. A watcher asks the root every 0.5 s for a server still
BUILDING (a scatter-gather over the tree, one server per zone) to know when all
are done, and each server's time to ACTIVE comes from its `launched_at`. The baseline, in the same
run, is the same N creates against one flat zone holding the same 900 hosts, so
the ratio shows what the tree costs.

With `tracing`, the tree runs a second time with every zone and agent exporting
its spans over OTLP to an in-memory collector (bench/otlp_sink.py, a process of
its own whose CPU is not charged to skyfed): `tracing_overhead` is how much more
CPU per server that run took than the first, untraced one (goal: at most 10%).
Metrics are always on, in every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.federation.launcher import Federation
from skyfed.federation.topology import Topology, load_topology, parse_topology

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "federation.toml"
WATCH_EVERY = 0.5


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a live process has used; 0 when it cannot be read."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(federation: Federation) -> dict[str, float]:
    """CPU seconds so far of each zone process, of all agents together, and of this client."""
    used = {name: process_cpu_s(zone.pid) for name, zone in federation.zones.items()}
    used["agents"] = sum(process_cpu_s(agent.pid) for agent in federation.agents.values())
    used["client"] = time.process_time()
    return used


def flat_topology(tree: Topology) -> Topology:
    """One zone with every host of `tree` (the same groups, the same names)."""
    groups = [g for zone in tree.zones.values() for g in zone.host_groups]
    defaults = {**tree.defaults, "heartbeat_interval": tree.heartbeat_interval}
    return parse_topology({"defaults": defaults, "zones": [{"name": "flat", "hosts": groups}]})


def traced(tree: Topology, endpoint: str) -> Topology:
    """`tree` with every zone and agent exporting its spans to `endpoint`."""
    zones = {
        name: dataclasses.replace(spec, agent={**spec.agent, "otlp_endpoint": endpoint})
        for name, spec in tree.zones.items()
    }
    defaults = {**tree.defaults, "otlp_endpoint": endpoint}
    return dataclasses.replace(tree, zones=zones, defaults=defaults)


@dataclasses.dataclass
class Collector:
    url: str
    process: subprocess.Popen[str]
    counts: dict[str, Any] = dataclasses.field(default_factory=dict)
    cpu_s: float = 0.0


@contextlib.contextmanager
def otlp_collector() -> Iterator[Collector]:
    """The in-memory OTLP collector, running until the block ends; then its counts."""
    process = subprocess.Popen(
        [sys.executable, "-m", "skyfed.bench.otlp_sink"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = json.loads(process.stdout.readline())["listening"]
    collector = Collector(f"http://127.0.0.1:{port}", process)
    try:
        yield collector
    finally:
        collector.cpu_s = process_cpu_s(process.pid)
        process.terminate()
        out, _ = process.communicate(timeout=30)
        if out.strip():
            collector.counts = json.loads(out.strip().splitlines()[-1])


async def run_once(
    topology: Topology,
    root: str,
    servers: int,
    concurrency: int,
    rate: float,
    deadline: float,
    say: Any,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="skyfed-bench-") as state:
        federation = Federation(topology, Path(state), temporary=True)
        try:
            say(f"starting {len(topology.zones)} zones")
            await federation.start()
            await federation.wait_covered(timeout=180)
            say("all hosts covered; creating")
            async with federation.admin_client(root) as client:
                before = cpu_by_process(federation)
                result = await measure(client, servers, concurrency, rate, deadline, say)
                after = cpu_by_process(federation)
            # Where the work went: CPU milliseconds per accepted server, by process.
            per_server = {
                name: round((after[name] - before[name]) * 1000 / max(result["accepted"], 1), 1)
                for name in after
            }
            per_server["total"] = round(sum(per_server.values()), 1)
            result["cpu_ms_per_server"] = per_server
            return result
        finally:
            federation.stop()


async def measure(
    client: SkyfedClient, servers: int, concurrency: int, rate: float, deadline: float, say: Any
) -> dict[str, Any]:
    submitted: dict[str, float] = {}
    active: dict[str, float] = {}
    errors: dict[str, str] = {}
    refused = 0
    slots = asyncio.Semaphore(concurrency)
    all_sent = asyncio.Event()
    started = time.monotonic()
    started_wall = time.time()

    async def create(i: int) -> None:
        nonlocal refused
        due = started_wall
        if rate > 0:
            due = started_wall + i / rate
            await asyncio.sleep(max(0.0, due - time.time()))
        async with slots:
            sent = due if rate > 0 else time.time()
            try:
                answer = await client.create_servers(f"b{i}", flavor="m1.tiny")
            except SkyfedError:
                refused += 1
                return
            submitted[answer.servers[0].id] = sent

    async def watch() -> None:
        # Only to know when all are done: is any server still BUILDING under the root (a
        # server on its way down stays listed)? One server per zone answers that, so the
        # watcher costs the zones little; times to ACTIVE come from the servers' own
        # launched_at, so how often this polls does not blur them.
        while time.monotonic() - started < deadline:
            if all_sent.is_set():
                page = await client.list_servers(status="BUILDING", limit=1)
                if not page.servers and not page.unavailable_zones:
                    return
            await asyncio.sleep(WATCH_EVERY)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(create(i) for i in range(servers)))
    all_sent.set()
    accepted_at = time.monotonic()
    say(f"{len(submitted)} creates accepted in {accepted_at - started:.1f}s; waiting for ACTIVE")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watcher, timeout=deadline)
    watcher.cancel()
    listed, _ = await client.all_servers()
    for server in listed:
        sid = server.id
        if sid in submitted and server.status == "ACTIVE" and server.launched_at:
            # The leaf's own clock (this machine's) says when it went ACTIVE.
            active[sid] = server.launched_at.timestamp()
        elif server.status == "ERROR":
            errors[sid] = server.fault
    latencies = sorted(active[s] - submitted[s] for s in active if s in submitted)
    last_active = max(active.values()) if active else time.time()
    return {
        "servers": servers,
        "offered_per_s": rate or None,
        "accepted": len(submitted),
        "refused": refused,
        "active": len(latencies),
        "errors": len(errors),
        "error_sample": next(iter(errors.values()), ""),
        "creates_per_s": round(len(submitted) / (accepted_at - started), 1),
        "active_per_s": round(len(latencies) / max(last_active - started_wall, 1e-9), 1),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p99_s": round(latencies[int(len(latencies) * 0.99) - 1], 3) if latencies else None,
        "max_s": round(latencies[-1], 3) if latencies else None,
    }


def run_e2e_bench(
    servers: int = 1000,
    concurrency: int = 64,
    rate: float = 200.0,
    topology_file: Path = EXAMPLE,
    baseline: bool = True,
    tracing: bool = True,
) -> dict[str, Any]:
    console = Console(stderr=True)
    # Servers only: the topology's Swift clusters would share the cores and measure nothing.
    tree = load_topology(topology_file)
    tree = dataclasses.replace(
        tree, zones={n: dataclasses.replace(z, storage=[]) for n, z in tree.zones.items()}
    )
    [root] = tree.roots()
    deadline = max(120.0, servers / 5)

    def say(message: str) -> None:
        console.print(f"[dim]{message}[/]")

    offered = f"{rate:g}/s offered" if rate > 0 else "as fast as they go"
    say(f"tree: {topology_file.name}, {servers} servers, {offered}, {concurrency} in flight")
    result = asyncio.run(run_once(tree, root, servers, concurrency, rate, deadline, say))
    with_spans = None
    collector = None
    if tracing:
        say("the tree again, every zone and agent exporting spans to an in-memory collector")
        with otlp_collector() as collector:
            with_spans = asyncio.run(
                run_once(
                    traced(tree, collector.url), root, servers, concurrency, rate, deadline, say
                )
            )
    flat = None
    if baseline:
        say("baseline: one flat zone with the same hosts")
        flat = asyncio.run(
            run_once(flat_topology(tree), "flat", servers, concurrency, rate, deadline, say)
        )
    table = Table(title=f"skyfed bench e2e ({servers} servers, {offered})")
    for column in ("measurement", "tree", "tree, tracing", "flat zone (baseline)", "goal"):
        table.add_column(column)
    goals = {"creates_per_s": ">= 200", "p99_s": "< 2 s"}

    def cell(run: dict[str, Any] | None, key: str) -> str:
        return str(run[key]) if run else "-"

    def cpu(run: dict[str, Any] | None) -> str:
        return str(run["cpu_ms_per_server"]["total"]) if run else "-"

    for key in ("creates_per_s", "active_per_s", "p50_s", "p99_s", "max_s", "active", "errors"):
        table.add_row(
            key, cell(result, key), cell(with_spans, key), cell(flat, key), goals.get(key, "")
        )
    table.add_row("cpu_ms_per_server", cpu(result), cpu(with_spans), cpu(flat), "")
    summary: dict[str, Any] = {"bench": "e2e", "tree": result}
    summary["goals"] = {"creates_per_s": 200, "p99_s": 2.0, "at_offered_per_s": 200}
    if with_spans is not None and collector is not None:
        untraced = result["cpu_ms_per_server"]["total"]
        overhead = with_spans["cpu_ms_per_server"]["total"] / max(untraced, 1e-9) - 1
        with_spans["tracing_overhead"] = round(overhead, 3)
        with_spans["collector"] = {**collector.counts, "cpu_s": round(collector.cpu_s, 2)}
        with_spans["spans_per_server"] = round(
            collector.counts.get("spans", 0) / max(with_spans["accepted"], 1), 1
        )
        table.add_row("tracing_overhead", "", f"{overhead:+.1%}", "", "<= +10%")
        table.add_row("spans_per_server", "", str(with_spans["spans_per_server"]), "", "")
        summary["tree_tracing"] = with_spans
        summary["goals"]["tracing_overhead"] = 0.10
    if flat is not None:
        summary["baseline_flat"] = flat
    Console().print(table)
    return summary
