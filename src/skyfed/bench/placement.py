"""`skyfed bench placement`: hierarchical placement over a seed-001-sized zone tree.

In one process, a tree like seed 001's: global > 5 regions > 5 data centres each
> 200 huddles each > 200 hosts each (1,000,000 hosts), the hosts already holding
60,000,000 instances between them (their used resources reflect them). Each level
keeps a real `Summary` of its subtree: `summarize_hosts` over a huddle's online
hosts, `Summary.merge` upward. A decision descends the tree calling `plan()` at
each level (global among regions, region among data centres, data centre among
huddles, huddle among its hosts), going to the next ranked candidate when a
subtree cannot take the request (bounded), and reserving along the path (assume
and deduct), as the zones of a real tree would.

Baseline, measured in the same run and in turns with the tree: a flat scheduler
(Nova's filter scheduler, no zones) that filters and weighs all the hosts for
each decision: the same `plan()`, the same filters and weighers, over the flat
list of every host, with sampling off.

Every decision is checked after it is timed (the host really matches the request
and its zone path; no host goes below zero free), so the figures are of correct
decisions. Loops are bounded in count and time (BUDGET, BASELINE_BUDGET).
"""

from __future__ import annotations

import gc
import itertools
import os
import platform
import random
import re
import statistics
import sys
import time
from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from skyfed.bench.sim_hosts import POOLS
from skyfed.scheduling.candidates import HostCandidate, ZoneCandidate, reserve_host, reserve_zone
from skyfed.scheduling.columns import ZoneSet
from skyfed.scheduling.config import PlannerConfig
from skyfed.scheduling.decision import Decision
from skyfed.scheduling.filters import host_meets
from skyfed.scheduling.misses import Misses
from skyfed.scheduling.planner import plan
from skyfed.scheduling.request import AFFINITY, ANTI_AFFINITY, PlacementRequest, child_request
from skyfed.settings import DEFAULT_FLAVORS, FlavorSpec
from skyfed.zones.capabilities import Value, parse_constraints
from skyfed.zones.summary import FREE_KEYS, Summary, summarize_hosts

BUDGET = 300.0  # seconds at most for the tree's decisions
BASELINE_BUDGET = 120.0  # seconds at most for the flat baseline's decisions (after the first)
GOAL_DECISIONS_PER_S = 10_000
GOAL_P99_MS = 5.0
MEAN_INSTANCES = 60  # per host: 60,000,000 over 1,000,000 hosts
TRIES_PER_LEVEL = 3  # ranked candidates tried at each level before giving up on a subtree
MAX_PLANS = 64  # plan() calls at most per decision, whatever happens below
DISABLED_EVERY = 500  # every 500th host is disabled by an admin
OFFLINE_EVERY = 997  # and every 997th has stopped beating
LOADS = {"std": 0.8, "gpu": 0.5, "arm": 0.6, "hdd": 0.9, "mem": 0.7, "arm-small": 0.4}


_REASON_NOTES = re.compile(r" in [\w.-]+( \(.*\))?$")


def _reason_kind(reason: str) -> str:
    """A failure's reason without the zone and the counts, so alike failures add up."""
    kind = _REASON_NOTES.sub("", reason)
    return kind + " (server group affinity)" if "affinity of group" in reason else kind


class BenchError(RuntimeError):
    """A decision that is wrong, or a setup that went wrong: the figures mean nothing."""


# -- the tree ------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Profile:
    """One kind of host: a pool with one choice of each listed option. Hosts of a
    profile share one `values` dict (capabilities and resource totals)."""

    pool: str
    weight: float
    vcpus: int
    ram_mb: int
    disk_gb: int
    load: float
    values: dict[str, Value]


def profiles() -> list[Profile]:
    out = []
    for pool, share, resources, caps in POOLS:
        options = {**resources, **caps}
        keys = list(options)
        choices = [v if isinstance(v, list) else [v] for v in options.values()]
        combos = list(itertools.product(*choices))
        for combo in combos:
            values: dict[str, Value] = {
                sys.intern(k): sys.intern(v) if isinstance(v, str) else v
                for k, v in zip(keys, combo, strict=True)
            }
            out.append(
                Profile(
                    pool=pool,
                    weight=share / len(combos),
                    vcpus=int(values["vcpus"]),
                    ram_mb=int(values["ram_mb"]),
                    disk_gb=int(values["disk_gb"]),
                    load=LOADS[pool],
                    values=values,
                )
            )
    return out


class _SummaryHost:
    """What `summarize_hosts` reads of a host: the values of its heartbeat, with the
    free amounts, as a host registry record holds them."""

    __slots__ = ("disabled", "free", "values")

    def __init__(self, host: HostCandidate) -> None:
        self.disabled = not host.enabled
        self.free = (host.free_vcpus, host.free_ram_mb, host.free_disk_gb)
        self.values = {**host.values, **dict(zip(FREE_KEYS, self.free, strict=True))}


@dataclass(slots=True, kw_only=True)
class Node:
    """One zone of the tree: its own hosts, its children as candidates, their nodes."""

    name: str
    hosts: list[HostCandidate] = field(default_factory=list)
    # Its children as candidates: a ZoneSet once the node is built (`_close`).
    zones: list[ZoneCandidate] | ZoneSet = field(default_factory=list)
    children: dict[str, Node] = field(default_factory=dict)  # by child id
    summary: Summary = field(default_factory=Summary)


@dataclass(slots=True, kw_only=True)
class Tree:
    root: Node
    hosts: list[HostCandidate]  # every host, for the flat baseline
    instances: int
    huddles: int


def build_tree(
    regions: int,
    dcs: int,
    huddles: int,
    hosts_per_huddle: int,
    flavors: Sequence[FlavorSpec],
    seed: int,
    say: Callable[[str], None],
) -> Tree:
    rng = random.Random(seed)
    rnd = rng.random
    kinds = profiles()
    cumulative = list(itertools.accumulate(p.weight for p in kinds))
    total_weight = cumulative[-1]
    everyone: list[HostCandidate] = []
    instances = 0
    index = 0
    root = Node(name="global")
    ints: dict[int, int] = {}
    no_caps: dict[str, Value] = {}  # huddles have no capabilities of their own: one empty dict
    no_labels: dict[str, str] = {}
    offsets = {0: 0.2}  # region 0 is preferred a little (weight_offset) ...
    scales = {regions - 1: 0.5}  # ... and the last one half drained (weight_scale)
    started = time.monotonic()
    for r in range(regions):
        region = Node(name=f"r{r}")
        for d in range(dcs):
            dc = Node(name=f"{region.name}-dc{d}")
            for h in range(huddles):
                huddle = Node(name=f"{dc.name}-h{h:03d}")
                hosts = huddle.hosts
                for j in range(hosts_per_huddle):
                    p = kinds[bisect(cumulative, rnd() * total_weight)]
                    k = int(MEAN_INSTANCES * (0.3 + 1.4 * rnd()))  # 18..101, mean 60
                    instances += k
                    fill = p.load * k / MEAN_INSTANCES
                    if fill > 0.98:
                        fill = 0.98
                    a = fill * (0.8 + 0.4 * rnd())
                    b = fill * (0.8 + 0.4 * rnd())
                    # RAM is used in 512 MiB steps (every flavor's size is a multiple);
                    # equal free amounts share one int object, as values share dicts.
                    ram = p.ram_mb - min(int(p.ram_mb * b) // 512 * 512, p.ram_mb)
                    disk = p.disk_gb - min(int(p.disk_gb * fill), p.disk_gb)
                    hosts.append(
                        HostCandidate(
                            name=f"{huddle.name}-{j:03d}",
                            values=p.values,
                            free_vcpus=p.vcpus - min(int(p.vcpus * a), p.vcpus),
                            free_ram_mb=ints.setdefault(ram, ram),
                            free_disk_gb=ints.setdefault(disk, disk),
                            enabled=index % DISABLED_EVERY != DISABLED_EVERY - 1,
                            online=index % OFFLINE_EVERY != OFFLINE_EVERY // 2,
                        )
                    )
                    index += 1
                everyone += hosts
                huddle.summary = summarize_hosts(
                    (_SummaryHost(x) for x in hosts if x.online), flavors
                )
                huddle.summary.zones = 1
                dc.children[huddle.name] = huddle
                dc.zones.append(
                    ZoneCandidate(
                        id=huddle.name,
                        name=huddle.name,
                        active=True,
                        summary=huddle.summary,
                        capabilities=no_caps,
                        labels=no_labels,
                    )
                )
            _close(dc)
            region.children[dc.name] = dc
            region.zones.append(
                ZoneCandidate(
                    id=dc.name,
                    name=dc.name,
                    active=True,
                    summary=dc.summary,
                    capabilities={"region": region.name, "dc": dc.name},
                )
            )
        _close(region)
        seconds = time.monotonic() - started
        say(f"built {region.name}: {len(everyone):,} hosts so far, {seconds:.1f} s")
        root.children[region.name] = region
        root.zones.append(
            ZoneCandidate(
                id=region.name,
                name=region.name,
                active=True,
                summary=region.summary,
                capabilities={"region": region.name},
                weight_offset=offsets.get(r, 0.0),
                weight_scale=scales.get(r, 1.0),
            )
        )
    _close(root)
    return Tree(root=root, hosts=everyone, instances=instances, huddles=regions * dcs * huddles)


def _close(node: Node) -> None:
    """A zone's summary: its own (no hosts of its own here) merged with its children's."""
    node.summary = Summary.merge_all(node.children[z.id].summary for z in node.zones)
    node.summary.zones += 1
    # Kept with its columns, as a long-lived zone would keep its children.
    node.zones = ZoneSet(node.zones)


# -- requests ------------------------------------------------------------------------


def make_requests(count: int, regions: int, dcs: int, seed: int) -> list[PlacementRequest]:
    """A mix: flavors mostly, some with constraints, explicit shapes, server groups,
    zone paths, and a few that fit nowhere (one by size, one by combination)."""
    rng = random.Random(seed + 1)
    flavors = {f.name: f for f in DEFAULT_FLAVORS}
    names = list(flavors)
    flavor_weights = [15, 30, 30, 15, 10][: len(names)]
    arch = {a: tuple(parse_constraints({"arch": a})) for a in ("arm64", "x86_64")}
    fast = tuple(parse_constraints({"ssd": ">= 1", "nic_gbps": ">= 25"}))
    gpu = tuple(parse_constraints({"gpu": ">= 1"}))
    arm_gpu = tuple(parse_constraints({"arch": "arm64", "gpu": ">= 1"}))
    region_names = [f"r{r}" for r in range(regions)]
    out: list[PlacementRequest] = []
    group_seq = 0
    group_left = 0
    group: tuple[str, str] | None = None
    for i in range(count):
        sid = f"s{i:08d}"
        f = flavors[rng.choices(names, flavor_weights)[0]]
        shape = {"vcpus": f.vcpus, "ram_mb": f.ram_mb, "disk_gb": f.disk_gb, "flavor": f.name}
        u = rng.random() * 100
        kwargs: dict[str, Any] = {}
        if group_left > 0 and group is not None:  # the rest of a server group
            group_left -= 1
            kwargs = {"group": group[0], "group_policy": group[1]}
        elif u < 62:
            pass
        elif u < 77:
            kwargs = {"constraints": arch[rng.choice(("arm64", "x86_64"))]}
        elif u < 85:
            kwargs = {"constraints": fast}
        elif u < 88:  # an explicit shape, no flavor: pruned by free maxima, not fits
            shape = {"vcpus": 16, "ram_mb": 65536, "disk_gb": 200, "flavor": None}
            kwargs = {"constraints": gpu}
        elif u < 90.5:  # a server group of 2 to 5, anti-affinity mostly
            group_seq += 1
            policy = AFFINITY if rng.random() < 0.3 else ANTI_AFFINITY
            group = (f"g{group_seq}", policy)
            group_left = rng.randint(1, 4)
            kwargs = {"group": group[0], "group_policy": policy}
        elif u < 94.5:
            r = rng.choice(region_names)
            kwargs = {"within": (r,) if rng.random() < 0.5 else (r, f"{r}-dc{rng.randrange(dcs)}")}
        elif u < 98.5:
            r = rng.choice(region_names)
            kwargs = {"avoid": ((r,), (rng.choice(region_names), f"{r}-dc0"))}
        elif u < 99.5:  # fits nowhere: 4 TiB of RAM (pruned at the root by the summaries)
            shape = {"vcpus": 8, "ram_mb": 4 * 2**20, "disk_gb": 100, "flavor": None}
        else:  # fits nowhere: no arm64 host has a GPU (summaries cannot tell)
            kwargs = {"constraints": arm_gpu}
        out.append(PlacementRequest(server_id=sid, **shape, **kwargs))
    return out


def kind_of(request: PlacementRequest) -> str:
    """The part of the mix a request belongs to (the table breaks latencies down by it)."""
    if request.group_policy:
        return f"server group, {request.group_policy}"
    if request.within:
        return "within a zone path"
    if request.avoid:
        return "avoiding zone paths"
    if request.ram_mb > 2**20:
        return "fits nowhere: 4 TiB of RAM"
    if request.constraints:
        keys = " and ".join(str(c) for c in request.constraints)
        return f"{'flavor' if request.flavor else 'explicit shape'}, {keys}"
    return "flavor only"


# -- deciding ------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Outcome:
    host: HostCandidate | None
    path: list[str]  # zone names from the root's child down, then the host's name
    plans: int
    reason: str = ""
    failure: Decision | None = None  # the first plan that found nothing
    skipped: int = 0  # child zones not descended into: a remembered miss (Misses)


class Descent:
    """Decisions down the tree: plan() at each level, the next ranked candidate when
    a subtree fails, reservations along the path of the one that succeeds.

    A child zone whose subtree found no host for a request is remembered (`Misses`,
    with the plan that found nothing) until its summary shows more room: the next
    request of the same shape skips it without counting it as one of the tries.
    """

    def __init__(
        self, root: Node, config: PlannerConfig, rng: random.Random, *, remember: bool = True
    ) -> None:
        self.root = root
        self.config = config
        self.rng = rng
        self.members: dict[str, dict[str, int]] = {}  # group -> candidate key -> servers
        self.misses: Misses[Decision | None] | None = Misses() if remember else None

    def place(self, request: PlacementRequest) -> Outcome:
        members = self.members.get(request.group) if request.group else None
        outcome = Outcome(host=None, path=[], plans=0)
        host, _ = self._descend(self.root, request, members, outcome)
        outcome.host = host
        if host is None and outcome.failure is not None:
            outcome.reason = outcome.failure.reason()
        if host is not None and request.group:
            counts = self.members.setdefault(request.group, {})
            for key in [*(f"zone:{name}" for name in outcome.path[:-1]), host.key]:
                counts[key] = counts.get(key, 0) + 1
        return outcome

    def _descend(
        self,
        node: Node,
        request: PlacementRequest,
        members: dict[str, int] | None,
        outcome: Outcome,
    ) -> tuple[HostCandidate | None, Decision | None]:
        """(the host chosen, or None and the first plan in this subtree that found
        nothing, if one did)."""
        if outcome.plans >= MAX_PLANS:
            return None, None
        outcome.plans += 1
        decision = plan(
            request,
            node.hosts,
            node.zones,
            zone_name=node.name,
            config=self.config,
            rng=self.rng,
            group_members=members,
        )
        failure = None if decision.ranked else decision
        if failure is not None and outcome.failure is None:
            outcome.failure = failure
        misses = self.misses
        tries = 0
        for candidate in decision.ranked:
            if isinstance(candidate, HostCandidate):
                reserve_host(candidate, request)
                outcome.path.append(candidate.name)
                return candidate, None
            down = (
                child_request(request, candidate.name)
                if request.within or request.avoid or request.exclude
                else request
            )
            if misses is not None and (miss := misses.get(candidate, down)) is not None:
                outcome.skipped += 1
                if failure is None:
                    failure = miss.why
                if outcome.failure is None:
                    outcome.failure = miss.why
                continue
            host, below = self._descend(node.children[candidate.id], down, members, outcome)
            if host is not None:
                reserve_zone(candidate, request)
                outcome.path.insert(0, candidate.name)
                return host, None
            if failure is None:
                failure = below
            if misses is not None and outcome.plans < MAX_PLANS:  # not cut short
                misses.add(candidate, down, below)
            tries += 1
            if tries == TRIES_PER_LEVEL:
                break
        return None, failure


class Flat:
    """The baseline: one scheduler over every host, no zones, no sampling."""

    def __init__(self, hosts: list[HostCandidate], rng: random.Random) -> None:
        self.hosts = hosts
        self.config = PlannerConfig(sample_size=max(len(hosts), 1))
        self.rng = rng
        self.members: dict[str, dict[str, int]] = {}

    def place(self, request: PlacementRequest) -> Outcome:
        """`request` must not name zone paths (there are no zones here)."""
        members = self.members.get(request.group) if request.group else None
        decision = plan(
            request,
            self.hosts,
            (),
            zone_name="flat",
            config=self.config,
            rng=self.rng,
            group_members=members,
        )
        host = decision.best
        if not isinstance(host, HostCandidate):  # (its reason would walk every host again)
            return Outcome(host=None, path=[], plans=1, failure=decision)
        reserve_host(host, request)
        if request.group:
            counts = self.members.setdefault(request.group, {})
            counts[host.key] = counts.get(host.key, 0) + 1
        return Outcome(host=host, path=[host.name], plans=1)


def check(request: PlacementRequest, outcome: Outcome) -> None:
    """A placed request: the host matches it, the path respects within and avoid."""
    host = outcome.host
    if host is None:
        return
    if host.free_vcpus < 0 or host.free_ram_mb < 0 or host.free_disk_gb < 0:
        raise BenchError(f"{request.server_id}: host {host.name} overcommitted: {host.free}")
    if not (host.enabled and host.online):
        raise BenchError(f"{request.server_id}: host {host.name} is disabled or offline")
    for constraint in request.constraints:
        if not host_meets(host, constraint):
            raise BenchError(f"{request.server_id}: host {host.name} fails {constraint}")
    path = tuple(outcome.path)
    if request.within and path[: len(request.within)] != request.within:
        raise BenchError(f"{request.server_id}: placed at {path}, not within {request.within}")
    for avoided in request.avoid:
        if path[: len(avoided)] == avoided:
            raise BenchError(f"{request.server_id}: placed at {path}, inside avoided {avoided}")


# -- the measurement -----------------------------------------------------------------


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_placement_bench(
    regions: int = 5,
    dcs: int = 5,
    huddles: int = 200,
    hosts_per_huddle: int = 200,
    decisions: int = 20_000,
    baseline_decisions: int = 20,
    sample_size: int = 32,
    strategy: str = "spread",
    seed: int = 1,
) -> dict[str, Any]:
    """Build the tree, time `decisions` descents against `baseline_decisions` flat
    decisions (in turns), print a table and return the figures (the JSON line)."""
    for name, value, top in (
        ("regions", regions, 100),
        ("dcs", dcs, 100),
        ("huddles", huddles, 10_000),
        ("hosts_per_huddle", hosts_per_huddle, 10_000),
        ("decisions", decisions, 10_000_000),
        ("sample_size", sample_size, 100_000),
    ):
        if not 1 <= value <= top:
            raise ValueError(f"{name} must be 1..{top}")
    if regions * dcs * huddles * hosts_per_huddle > 4_000_000:
        raise ValueError("at most 4,000,000 hosts")
    if not 0 <= baseline_decisions <= 1000:
        raise ValueError("baseline_decisions must be 0..1000")
    config = PlannerConfig(strategy=strategy, sample_size=sample_size)
    progress = Console(stderr=True)

    def say(message: str) -> None:
        progress.print(f"[dim]bench placement:[/dim] {message}", highlight=False, soft_wrap=True)

    gc.collect()
    rss_before = _rss_mb()
    started = time.perf_counter()
    tree = build_tree(regions, dcs, huddles, hosts_per_huddle, DEFAULT_FLAVORS, seed, say)
    build_s = time.perf_counter() - started
    gc.collect()
    tree_mb = _rss_mb() - rss_before
    # A long-lived tree: keep the collector from walking a million objects again and
    # again (what a zone process would do once its hosts are loaded).
    gc.freeze()
    hosts = len(tree.hosts)
    root_summary = tree.root.summary
    say(
        f"tree: {hosts:,} hosts in {tree.huddles:,} huddles, {tree.instances:,} instances, "
        f"{root_summary.enabled_hosts:,} enabled online; built in {build_s:.1f} s, "
        f"{tree_mb:,.0f} MiB"
    )

    requests = make_requests(decisions, regions, dcs, seed)
    flat_requests = [r for r in requests if not r.within and not r.avoid]
    descent = Descent(tree.root, config, random.Random(seed + 2))
    flat = Flat(tree.hosts, random.Random(seed + 3))
    rounds = max(baseline_decisions, 1)
    per_round = -(-decisions // rounds)
    latencies: list[float] = []
    cpu = 0.0  # CPU time of this thread in the decisions: what one core spent on them
    baseline: list[float] = []
    placed = failed = plans = 0
    reasons: dict[str, int] = {}
    kinds: dict[str, list[float]] = {}  # kind -> [decisions, seconds]
    base_failed = 0
    deadline = time.monotonic() + BUDGET
    base_deadline: float | None = None
    clock = time.perf_counter
    cpu_clock = time.thread_time
    say(
        f"deciding: {decisions:,} descents, {baseline_decisions} flat decisions over "
        f"{hosts:,} hosts, in {rounds} turns"
    )
    rss_decide = _rss_mb()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    for turn in range(rounds):
        batch = requests[turn * per_round : (turn + 1) * per_round]
        for request in batch:
            c0 = cpu_clock()
            t0 = clock()
            outcome = descent.place(request)
            took = clock() - t0
            cpu += cpu_clock() - c0
            latencies.append(took)
            plans += outcome.plans
            part = kinds.setdefault(kind_of(request), [0, 0.0])
            part[0] += 1
            part[1] += took
            check(request, outcome)
            if outcome.host is None:
                failed += 1
                reasons[_reason_kind(outcome.reason)] = (
                    reasons.get(_reason_kind(outcome.reason), 0) + 1
                )
            else:
                placed += 1
        if turn < baseline_decisions and (
            base_deadline is None or time.monotonic() < base_deadline
        ):
            request = flat_requests[(turn * per_round) % len(flat_requests)]
            t0 = clock()
            outcome = flat.place(request)
            baseline.append(clock() - t0)
            if outcome.host is None:
                base_failed += 1
            check(request, outcome)
            if base_deadline is None:
                base_deadline = time.monotonic() + BASELINE_BUDGET
        if time.monotonic() > deadline:
            say(f"stopping after {len(latencies):,} decisions: {BUDGET:g} s budget")
            break
    decide_mb = _rss_mb() - rss_decide
    gc.unfreeze()

    over = [
        h.name for h in tree.hosts if h.free_vcpus < 0 or h.free_ram_mb < 0 or h.free_disk_gb < 0
    ]
    if over:
        raise BenchError(f"{len(over)} hosts overcommitted, e.g. {over[:3]}")
    latencies.sort()
    total = sum(latencies)
    base_mean = statistics.mean(baseline) if baseline else 0.0
    result = {
        "bench": "placement",
        "hosts": hosts,
        "huddles": tree.huddles,
        "instances": tree.instances,
        "decisions": len(latencies),
        "placed": placed,
        "failed": failed,
        "decisions_per_s": round(len(latencies) / total) if total else 0,
        "decisions_per_cpu_s": round(len(latencies) / cpu) if cpu else 0,
        "p50_ms": round(_percentile(latencies, 0.50) * 1e3, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 3),
        "max_ms": round(latencies[-1] * 1e3, 3) if latencies else 0.0,
        "plans_per_decision": round(plans / max(len(latencies), 1), 2),
        "baseline_decisions": len(baseline),
        "baseline_failed": base_failed,
        "baseline_decisions_per_s": round(1 / base_mean, 3) if base_mean else 0.0,
        "baseline_p50_ms": round(statistics.median(baseline) * 1e3, 1) if baseline else 0.0,
        "speedup": round(base_mean / (total / len(latencies))) if baseline and total else 0,
        "goal_decisions_per_s": GOAL_DECISIONS_PER_S,
        "goal_p99_ms": GOAL_P99_MS,
        "build_s": round(build_s, 1),
        "tree_mb": round(tree_mb, 1),
        "tree_bytes_per_host": round(tree_mb * 2**20 / hosts),
        "decide_mb": round(decide_mb, 1),
        "sample_size": sample_size,
        "strategy": strategy,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": round(load, 2),
    }
    plain = kinds.get("flavor only", [0, 0.0])
    result["flavor_only_decisions_per_s"] = round(plain[0] / plain[1]) if plain[1] else 0
    _print_table(result, reasons, kinds, regions, dcs, hosts_per_huddle)
    return result


def _print_table(
    r: dict[str, Any],
    reasons: dict[str, int],
    kinds: dict[str, list[float]],
    regions: int,
    dcs: int,
    hosts_per_huddle: int,
) -> None:
    table = Table(
        title=(
            f"skyfed bench placement: {r['hosts']:,} hosts ({regions} regions x {dcs} DCs x "
            f"{r['huddles'] // (regions * dcs)} huddles x {hosts_per_huddle} hosts), "
            f"{r['instances']:,} instances"
        )
    )
    table.add_column("measurement")
    table.add_column("figure", justify="right")
    table.add_column("goal / baseline", justify="right")
    table.add_column("ratio", justify="right")
    ok = r["decisions_per_s"] >= r["goal_decisions_per_s"]
    table.add_row(
        f"decisions per second, one core ({r['decisions']:,} descents, wall clock)",
        f"{r['decisions_per_s']:,}",
        f"goal {r['goal_decisions_per_s']:,}",
        "met" if ok else "NOT met",
    )
    table.add_row(
        f"  per second of CPU time (load average {r['load_average']:.2f})",
        f"{r['decisions_per_cpu_s']:,}",
        "",
        "",
    )
    table.add_row(
        "p99 decision latency (full descent)",
        f"{r['p99_ms']:.3f} ms",
        f"goal < {r['goal_p99_ms']:g} ms",
        "met" if r["p99_ms"] < r["goal_p99_ms"] else "NOT met",
    )
    table.add_row("p50 / max decision latency", f"{r['p50_ms']:.3f} / {r['max_ms']:.2f} ms", "", "")
    table.add_row(
        "flat scheduler over every host (baseline)",
        f"{r['baseline_decisions_per_s']:.2f} /s",
        f"p50 {r['baseline_p50_ms']:,.0f} ms, {r['baseline_decisions']} decisions",
        f"{r['speedup']:,}x",
    )
    table.add_row("plan() calls per decision", f"{r['plans_per_decision']:.2f}", "", "")
    spent = sum(seconds for _, seconds in kinds.values()) or 1.0
    for name, (n, seconds) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        table.add_row(
            f"  {name} ({n / r['decisions']:.1%} of requests)",
            f"{seconds / n * 1e6:,.0f} us mean",
            f"{n / seconds:,.0f} /s",
            f"{seconds / spent:.0%} of time",
        )
    fails = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda x: -x[1])[:4])
    table.add_row(
        "placed / failed (by design: 1.5% fit nowhere)",
        f"{r['placed']:,} / {r['failed']:,}",
        "",
        "",
    )
    if fails:
        table.add_row(f"  failures: {fails}", "", "", "")
    table.add_row(
        "tree memory (RSS), build time",
        f"{r['tree_mb']:,.0f} MiB, {r['build_s']:.1f} s",
        f"{r['tree_bytes_per_host']:,} B/host",
        "",
    )
    table.add_row("memory grown while deciding (RSS)", f"{r['decide_mb']:.1f} MiB", "", "")
    Console(width=130).print(table)
