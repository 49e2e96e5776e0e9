"""The planner: filter the candidates, weigh the survivors, rank them (pure).

A zone decides among its own hosts and its child zones (by their summaries). With
many candidates it does not look at all of them: it scans them in a random order
and stops once `sample_size` have passed the filters, then ranks those (the best
of a random sample, as Nomad and Sparrow do). When fewer pass, the scan goes on to
the end, so a request that fits anywhere is never refused: only a scan that saw
every candidate can come back empty.

The random order is a rotation with a stride coprime to the number of candidates,
taken in chunks as list slices; the start and the stride come from `rng`, or,
without one, from a hash of the server id (reproducible, yet different requests
start at different places).
"""

from __future__ import annotations

import heapq
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache, partial
from itertools import compress
from math import gcd
from operator import attrgetter, itemgetter, not_
from typing import Any

from skyfed.scheduling.candidates import Candidate, HostCandidate, ZoneCandidate
from skyfed.scheduling.columns import ZoneSet, columnar
from skyfed.scheduling.config import PlannerConfig
from skyfed.scheduling.decision import Decision
from skyfed.scheduling.filters import (
    FILTERS,
    NO_ROOM,
    SCREENED,
    FilterContext,
    host_screen,
    zone_screen,
)
from skyfed.scheduling.request import PlacementRequest
from skyfed.scheduling.weighers import (
    host_scale,
    host_weights,
    zone_weights,
    zone_weights_at,
)

DEFAULT_CONFIG = PlannerConfig()

_STRIDES = (1, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31)


@lru_cache(maxsize=4096)
def _strides(n: int) -> tuple[int, ...]:
    return tuple(s for s in _STRIDES if s < n and gcd(s, n) == 1) or (1,)


# Up to this many candidates, a scan takes its chunks through a table of the
# order's indices (one C call a chunk); beyond, as slices with the stride.
_TABLE_MAX = 1024


@lru_cache(maxsize=128)
def _table(n: int, stride: int) -> tuple[tuple[int, ...], int]:
    """(k * stride mod n for k = 0 .. n-1, twice over; the inverse of stride mod n)."""
    lane = tuple(k * stride % n for k in range(n))
    return lane + lane, pow(stride, -1, n)


class ScanOrder:
    """The items of `seq` in the order (start + k * stride) mod n, k = 0 .. n-1, taken
    in chunks. With the stride coprime to n every item comes exactly once."""

    __slots__ = ("_lane", "_offset", "_table", "left", "n", "seq", "stride")

    def __init__(self, seq: Sequence[Any], start: int, stride: int) -> None:
        n = len(seq)
        if n and not (0 <= start < n and stride >= 1 and gcd(stride, n) == 1):
            raise ValueError(f"bad scan order: start {start}, stride {stride}, {n} items")
        self._begin(seq, n, start, stride)

    def _begin(self, seq: Sequence[Any], n: int, start: int, stride: int) -> None:
        self.seq = seq
        self.n = n
        self.stride = stride
        self.left = n
        self._offset = 0  # items already taken in this pass (slices), or in all (table)
        if 1 < n <= _TABLE_MAX:
            table, inverse = _table(n, stride)
            self._table: tuple[int, ...] | None = table
            # table[j] == start: (start * inverse) * stride == start (mod n)
            self._lane = start * inverse % n
        else:
            self._table = None
            self._lane = start  # the first index of the current pass (a slice with the stride)

    def positions(self, count: int) -> list[int]:
        """As `take` over `range(n)`: the positions of the next items, not the items."""
        table = self._table
        left = self.left
        if table is None or count >= left or count <= 1:
            return self.take(count)  # (seq is a range: its items are the positions)
        at = self._lane + self._offset
        self._offset += count
        self.left = left - count
        return list(table[at : at + count])

    def take(self, count: int) -> list[Any]:
        left = self.left
        if count > left:
            count = left
        if count <= 0:
            return []
        table = self._table
        if table is not None:
            at = self._lane + self._offset
            self._offset += count
            self.left = left - count
            if count == 1:
                return [self.seq[table[at]]]
            return list(itemgetter(*table[at : at + count])(self.seq))
        seq, n, stride = self.seq, self.n, self.stride
        out: list[Any] = []
        while count > 0:
            begin = self._lane + self._offset * stride
            part = seq[begin : begin + count * stride : stride]
            got = len(part)
            if not got:  # cannot happen with a coprime stride; never loop forever
                break
            out += part
            count -= got
            self.left -= got
            self._offset += got
            following = self._lane + self._offset * stride
            if following >= n:  # this pass is over: the next starts where the stride wraps
                self._lane = following % n
                self._offset = 0
        return out


def scan_order(
    seq: Sequence[Any], request: PlacementRequest, rng: random.Random | None
) -> ScanOrder:
    n = len(seq)
    strides = _strides(n)
    if rng is not None:  # one draw: its whole part picks the start, the rest the stride
        x = rng.random() * n
        whole = int(x)
        stride = strides[int((x - whole) * len(strides))]
        start = whole if whole < n else n - 1  # x rounds up to n once in 2**53 draws
    else:
        h = zlib.crc32(request.server_id.encode())
        start, stride = h % n, strides[(h >> 16) % len(strides)]
    order = ScanOrder.__new__(ScanOrder)  # start and stride are valid by construction
    order._begin(seq, n, start, stride)
    return order


Step = tuple[str, Callable[[Any, FilterContext], tuple[list[Any], list[Any]]]]
Steps = tuple[list[Step], list[Step], list[Step], list[Step]]
_STEPS: dict[tuple[bool, bool, bool, bool], Steps] = {}


def _steps(request: PlacementRequest) -> Steps:
    """The filters that apply to the request as (name, bound method): for hosts, the
    same without the screened ones, for zones, the same without the screened ones."""
    # What each filter's applies() says, spelled out (a test keeps the two the same).
    signature = (
        bool(request.within) or (bool(request.avoid) and any(len(p) == 1 for p in request.avoid)),
        bool(request.exclude),
        request.group_policy is not None,
        bool(request.constraints),
    )
    steps = _STEPS.get(signature)
    if steps is None:
        active = [f for f in FILTERS if f.applies(request)]
        rest = [f for f in active if f.name not in SCREENED]
        steps = (
            [(f.name, f.hosts) for f in active],
            [(f.name, f.hosts) for f in rest],
            [(f.name, f.zones) for f in active],
            [(f.name, f.zones) for f in rest],
        )
        _STEPS[signature] = steps
    return steps


class _Compiled:
    """What plan() needs of a request beyond its candidates: the filter steps and the
    screens, compiled for its shape."""

    __slots__ = (
        "host_rest",
        "host_screen",
        "host_steps",
        "zone_columns",
        "zone_rest",
        "zone_screen",
        "zone_steps",
    )

    def __init__(self, request: PlacementRequest) -> None:
        self.host_steps, self.host_rest, self.zone_steps, self.zone_rest = _steps(request)
        v, m, d, constraints = request.vcpus, request.ram_mb, request.disk_gb, request.constraints
        self.host_screen = host_screen(v, m, d, constraints)
        self.zone_screen = zone_screen(v, m, d, request.flavor, constraints)
        # Whether a ZoneSet's columns can screen child zones for this shape: a flavor
        # (its units are a column) and constraints that reservations do not change.
        self.zone_columns = request.flavor is not None and columnar(constraints)


# The last request compiled: a descent asks every level about the same request object.
_last: tuple[PlacementRequest | None, _Compiled | None] = (None, None)

# Compiled forms by request shape. Requests of one shape usually share their
# constraints tuple, so it is keyed by identity (hashing Constraints is slow) and
# kept in the entry, which makes a reused id harmless.
_SHAPES: dict[tuple[Any, ...], tuple[tuple[Any, ...], _Compiled]] = {}
_SHAPES_MAX = 4096


def _compiled(request: PlacementRequest) -> _Compiled:
    global _last
    last_request, compiled = _last
    if last_request is request and compiled is not None:
        return compiled
    constraints = request.constraints
    key = (
        id(constraints),
        request.vcpus,
        request.ram_mb,
        request.disk_gb,
        request.flavor,
        bool(request.within),
        request.avoid,
        bool(request.exclude),
        request.group_policy is not None,
    )
    entry = _SHAPES.get(key)
    if entry is not None and entry[0] is constraints:
        compiled = entry[1]
    else:
        compiled = _Compiled(request)
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        _SHAPES[key] = (constraints, compiled)
    _last = (request, compiled)
    return compiled


def _chain(
    candidates: list[Any], steps: list[Step], ctx: FilterContext, dropped: dict[str, list[Any]]
) -> list[Any]:
    """Run the filters in order, recording who drops what; return what passes."""
    for name, step in steps:
        candidates, out = step(candidates, ctx)
        if out:
            if name in dropped:
                dropped[name] += out
            else:
                dropped[name] = out
        if not candidates:
            break
    return candidates


def _chain_dropped(
    chunk: Sequence[Any],
    flags: list[bool],
    steps: list[Step],
    ctx: FilterContext,
    dropped: dict[str, list[Any]],
) -> list[Any]:
    """The candidates of `chunk` the screen dropped (flag false) through the whole
    chain: which filter drops each is worked out only when someone asks."""
    return _chain(list(compress(chunk, map(not_, flags))), steps, ctx, dropped)


def _chain_dropped_at(
    items: Sequence[Any],
    at: list[int],
    flags: list[bool],
    steps: list[Step],
    ctx: FilterContext,
    dropped: dict[str, list[Any]],
) -> list[Any]:
    """As `_chain_dropped`, for the candidates of `items` at the positions `at`."""
    return _chain(
        [items[i] for i, ok in zip(at, flags, strict=True) if not ok], steps, ctx, dropped
    )


class _Picked(Sequence[Any]):
    """The candidates of `items` at the positions `at`, looked up when read (a
    decision's `passed`: the planner itself only reads the few it ranks)."""

    __slots__ = ("at", "items")

    def __init__(self, items: Sequence[Any], at: list[int]) -> None:
        self.items = items
        self.at = at

    def __len__(self) -> int:
        return len(self.at)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.items[i] for i in self.at[index]]
        return self.items[self.at[index]]

    def __iter__(self) -> Any:
        items = self.items
        return (items[i] for i in self.at)

    def __repr__(self) -> str:
        return repr(list(self))


def _chain_unscreened(
    chunk: Sequence[Any],
    ok: list[Any],
    steps: list[Step],
    ctx: FilterContext,
    dropped: dict[str, list[Any]],
) -> list[Any]:
    """As `_chain_dropped`, for the candidates of `chunk` not in `ok` (what the host
    screen let through)."""
    through = set(map(id, ok))
    return _chain([c for c in chunk if id(c) not in through], steps, ctx, dropped)


def plan(
    request: PlacementRequest,
    hosts: Sequence[HostCandidate],
    zones: Sequence[ZoneCandidate],
    *,
    zone_name: str,
    config: PlannerConfig = DEFAULT_CONFIG,
    rng: random.Random | None = None,
    explain: bool = False,
    group_members: Mapping[str, int] | None = None,
) -> Decision:
    """Rank this zone's hosts and child zones for `request`, best first.

    `explain` scans every candidate (no sampling) and records each one's fate.
    `rng` randomises the scan order and breaks ties between equal scores (without
    it, ties go to the smaller key). `group_members`, when given, counts the
    request's group members per candidate key and replaces the candidates' own
    `group_members` (so long-lived candidates can serve requests of many groups).
    """
    zone_set = None
    if type(zones) is ZoneSet:
        zone_set = zones
        zones = zone_set.items
    ctx = FilterContext(request, hosts, zones, group_members)
    compiled = _compiled(request)
    n_hosts, n_zones = len(hosts), len(zones)
    offered = n_hosts + n_zones
    want = offered if explain else config.sample_size
    dropped: dict[str, list[Candidate]] = {}
    pending: list[Callable[[dict[str, list[Candidate]]], object]] = []
    passed_hosts: list[HostCandidate] = []
    passed_zones: list[ZoneCandidate] = []
    zone_rooms = None
    zones_at = None  # the positions in zone_set of the zones that passed (columns)
    if not n_zones:
        passed_hosts, scanned = _scan_hosts(
            hosts,
            compiled.host_screen,
            compiled.host_rest,
            compiled.host_steps,
            ctx,
            dropped,
            pending,
            want,
            rng,
        )
    elif not n_hosts and zone_set is not None and compiled.zone_columns and not explain:
        zones_at, passed_zones, zone_rooms, scanned = _scan_zone_columns(
            zone_set, compiled, ctx, dropped, pending, want, rng
        )
    elif not n_hosts:
        passed_zones, zone_rooms, scanned = _scan_zones(
            zones,
            compiled.zone_screen,
            compiled.zone_rest,
            compiled.zone_steps,
            ctx,
            dropped,
            pending,
            want,
            rng,
        )
    else:
        scanned = _scan_both(
            hosts, zones, compiled, ctx, dropped, pending, want, rng, passed_hosts, passed_zones
        )

    if zones_at is not None:
        ranked, kept, passed, weights = _rank_columns(zone_set, zones_at, zone_rooms, config, rng)  # type: ignore[arg-type]
    else:
        ranked, kept, passed, weights = _rank(
            passed_hosts, passed_zones, zone_rooms, ctx, config, rng, explain
        )
    decision = Decision(
        ranked=ranked,
        scanned=scanned,
        zone_name=zone_name,
        offered=offered,
        request=request,
        passed=passed,
        drops=dropped,
        zones=zones,
        scored=passed if explain else ranked,
        weights=weights if explain else kept,
        pending=pending,
    )
    if explain:
        fate = {id(c): name for name, out in decision.dropped_candidates.items() for c in out}
        decision.records = [(c, fate.get(id(c))) for c in (*hosts, *zones)]
    return decision


def _next_size(want: int, got: int, scanned: int, size: int) -> int:
    """Enough for what is missing at the pass rate seen so far, a quarter more;
    doubling while nothing passes, so a fruitless scan takes few chunks."""
    return ((want - got) * scanned * 5) // (got * 4) + 2 if got else size * 2


def _first_chunk(
    candidates: Sequence[Any], ctx: FilterContext, want: int, rng: random.Random | None
) -> tuple[ScanOrder | None, list[Any]]:
    """(the scan order, None when all are scanned at once; the first chunk)."""
    if len(candidates) > want:
        order = scan_order(candidates, ctx.request, rng)
        return order, order.take(want)
    if type(candidates) is list:
        return None, candidates  # type: ignore[return-value]
    return None, list(candidates)


def _scan_hosts(
    candidates: Sequence[HostCandidate],
    screen: Callable[[Sequence[HostCandidate]], list[HostCandidate]],
    rest: list[Step],
    steps: list[Step],
    ctx: FilterContext,
    dropped: dict[str, list[Candidate]],
    pending: list[Callable[[dict[str, list[Candidate]]], object]],
    want: int,
    rng: random.Random | None,
) -> tuple[list[HostCandidate], int]:
    """Hosts: (those that passed, how many were scanned)."""
    offered = len(candidates)
    order, chunk = _first_chunk(candidates, ctx, want, rng)
    passed: list[HostCandidate] = []
    scanned = 0
    size = want
    while chunk:
        scanned += len(chunk)
        ok = screen(chunk)
        if len(ok) != len(chunk):  # the whole chain says which filter drops those, if asked
            # (the caller's own list is copied: it may change before anyone asks)
            pending.append(
                partial(_chain_unscreened, chunk if order else list(chunk), ok, steps, ctx)
            )
        if not rest:
            passed += ok
        elif ok:
            passed += _chain(ok, rest, ctx, dropped)
        got = len(passed)
        if order is None or got >= want or scanned >= offered:
            break
        size = _next_size(want, got, scanned, size)
        chunk = order.take(size)
    return passed, scanned


def _scan_zones(
    candidates: Sequence[ZoneCandidate],
    screen: Callable[[Sequence[ZoneCandidate]], list[float]],
    rest: list[Step],
    steps: list[Step],
    ctx: FilterContext,
    dropped: dict[str, list[Candidate]],
    pending: list[Callable[[dict[str, list[Candidate]]], object]],
    want: int,
    rng: random.Random | None,
) -> tuple[list[ZoneCandidate], list[float] | None, int]:
    """Child zones: (those that passed, their rooms as the screen read them, or None
    when other filters ran after it, how many were scanned)."""
    offered = len(candidates)
    order, chunk = _first_chunk(candidates, ctx, want, rng)
    passed: list[ZoneCandidate] = []
    rooms: list[float] | None = None if rest else []
    scanned = 0
    size = want
    while chunk:
        scanned += len(chunk)
        got_rooms = screen(chunk)
        if min(got_rooms) == NO_ROOM:  # the whole chain says which filter drops those, if asked
            flags = [room != NO_ROOM for room in got_rooms]
            pending.append(
                partial(_chain_dropped, chunk if order else list(chunk), flags, steps, ctx)
            )
            chunk = list(compress(chunk, flags))
            if rooms is not None:
                got_rooms = list(compress(got_rooms, flags))
        if rooms is not None:
            passed += chunk
            rooms += got_rooms
        elif chunk:
            passed += _chain(chunk, rest, ctx, dropped)
        got = len(passed)
        if order is None or got >= want or scanned >= offered:
            break
        size = _next_size(want, got, scanned, size)
        chunk = order.take(size)
    return passed, rooms, scanned


def _scan_zone_columns(
    zone_set: ZoneSet,
    compiled: _Compiled,
    ctx: FilterContext,
    dropped: dict[str, list[Candidate]],
    pending: list[Callable[[dict[str, list[Candidate]]], object]],
    want: int,
    rng: random.Random | None,
) -> tuple[list[int] | None, list[ZoneCandidate], list[float] | None, int]:
    """`_scan_zones` reading the set's columns instead of each zone's summary, in the
    same order with the same outcome: (the positions of the zones that passed, or
    None when other filters ran after the screen and the zones themselves are
    returned; those zones; their rooms, or None; how many were scanned)."""
    items = zone_set.items
    request = ctx.request
    fits = zone_set.fits(request.flavor)  # type: ignore[arg-type]  # (a flavor: zone_columns)
    met = zone_set.met(request.constraints) if request.constraints else None
    screen = compiled.zone_screen  # for a zone the column cannot answer for (UNKNOWN)
    rest = compiled.zone_rest
    offered = len(items)
    order = None
    if offered > want:
        order = scan_order(range(offered), request, rng)
        at = order.positions(want)
    else:
        at = list(range(offered))
    passed_at: list[int] = []
    rooms: list[float] = []
    passed: list[ZoneCandidate] = []  # with rest only
    scanned = 0
    size = want
    while at:
        scanned += len(at)
        # The screen's room for each: units > 0 pass, 0 is NO_ROOM, UNKNOWN asks the zone.
        if met is None:
            got: list[float] = [fits[i] for i in at] if order is not None else fits.tolist()
            if min(got) <= 0:  # (mostly all pass: their units are their rooms)
                got = [
                    u if u > 0 else NO_ROOM if u == 0 else screen([items[i]])[0]
                    for i, u in zip(at, got, strict=True)
                ]
        else:
            got = [
                (u if (u := fits[i]) > 0 else NO_ROOM if u == 0 else screen([items[i]])[0])
                if met[i]
                else NO_ROOM
                for i in at
            ]
        if min(got) == NO_ROOM:  # the whole chain says which filter drops those, if asked
            flags = [room != NO_ROOM for room in got]
            pending.append(partial(_chain_dropped_at, items, at, flags, compiled.zone_steps, ctx))
            at = list(compress(at, flags))
            got = list(compress(got, flags))
        if rest:
            if at:
                passed += _chain([items[i] for i in at], rest, ctx, dropped)
            count = len(passed)
        else:
            passed_at += at
            rooms += got
            count = len(passed_at)
        if order is None or count >= want or scanned >= offered:
            break
        size = _next_size(want, count, scanned, size)
        at = order.positions(size)
    if rest:
        return None, passed, None, scanned
    return passed_at, passed, rooms, scanned


def _scan_both(
    hosts: Sequence[HostCandidate],
    zones: Sequence[ZoneCandidate],
    compiled: _Compiled,
    ctx: FilterContext,
    dropped: dict[str, list[Candidate]],
    pending: list[Callable[[dict[str, list[Candidate]]], object]],
    want: int,
    rng: random.Random | None,
    passed_hosts: list[HostCandidate],
    passed_zones: list[ZoneCandidate],
) -> int:
    """Hosts and child zones in one scan (they compete for the same sample);
    return how many were scanned."""
    seq: list[Candidate] = [*hosts, *zones]
    offered = len(seq)
    order = scan_order(seq, ctx.request, rng) if offered > want else None
    scanned = 0
    size = want
    while scanned < offered:
        chunk = order.take(size) if order is not None else seq
        if not chunk:
            break
        scanned += len(chunk)
        some_hosts = [c for c in chunk if isinstance(c, HostCandidate)]
        if some_hosts:
            ok = compiled.host_screen(some_hosts)
            if len(ok) != len(some_hosts):
                pending.append(partial(_chain_unscreened, some_hosts, ok, compiled.host_steps, ctx))
            rest = compiled.host_rest
            passed_hosts += _chain(ok, rest, ctx, dropped) if rest and ok else ok
        some_zones = [c for c in chunk if isinstance(c, ZoneCandidate)]
        if some_zones:
            flags = [room != NO_ROOM for room in compiled.zone_screen(some_zones)]
            if not all(flags):
                pending.append(partial(_chain_dropped, some_zones, flags, compiled.zone_steps, ctx))
                some_zones = list(compress(some_zones, flags))
            rest = compiled.zone_rest
            passed_zones += _chain(some_zones, rest, ctx, dropped) if rest else some_zones
        got = len(passed_hosts) + len(passed_zones)
        if got >= want:
            break
        size = _next_size(want, got, scanned, size)
    return scanned


_FREE_RAM = attrgetter("free_ram_mb")


def _rank(
    hosts: list[HostCandidate],
    zones: list[ZoneCandidate],
    zone_rooms: list[float] | None,
    ctx: FilterContext,
    config: PlannerConfig,
    rng: random.Random | None,
    every: bool,
) -> tuple[list[Candidate], list[float], list[Candidate], list[float]]:
    """(the best `max_ranked` candidates, their scores, all the candidates that
    passed, all their scores when `every`, else nothing). The zones' rooms, when
    given, are what the screen read of each zone that passed (`filters.NO_ROOM`)."""
    top = config.max_ranked
    if hosts and not zones:
        # Hosts alone have one weigher, monotonic in free RAM: rank by free RAM and
        # score only the ranked (all of them with `every`).
        free_ram = list(map(_FREE_RAM, hosts))
        base, k = host_scale(free_ram, config)
        values: Sequence[float] = free_ram if k else [0.0] * len(free_ram)
        head = _top(values, k >= 0, top, hosts, rng)
        return (
            list(map(hosts.__getitem__, head)),
            [(free_ram[i] - base) * k for i in head],
            hosts,  # type: ignore[return-value]
            [(v - base) * k for v in free_ram] if every else [],
        )
    candidates: list[Candidate]
    if hosts and zones:
        candidates = [*hosts, *zones]
        weights = host_weights(hosts, config) + zone_weights(zones, ctx, config)
    elif zones:
        candidates = zones  # type: ignore[assignment]
        weights = zone_weights(zones, ctx, config, zone_rooms)
    else:
        return [], [], [], []
    head = _top(weights, True, top, candidates, rng)
    return [candidates[i] for i in head], [weights[i] for i in head], candidates, weights


def _rank_columns(
    zone_set: ZoneSet,
    at: list[int],
    rooms: list[float],
    config: PlannerConfig,
    rng: random.Random | None,
) -> tuple[list[Candidate], list[float], Sequence[Candidate], list[float]]:
    """`_rank` of the zones of `zone_set` at the positions `at` (no hosts, no
    anti-affinity), their weights read from the set's columns."""
    if not at:
        return [], [], [], []
    items = zone_set.items
    scale, offset = zone_set.scale, zone_set.offset
    picked = _Picked(items, at)
    if zone_set.plain:
        # Every weight is (room - base) * k (times 1.0, plus 0.0): it grows with the
        # room (k > 0) or falls with it, one weight per room. Rank the rooms as
        # the hosts' free RAM is ranked, and weigh only the ranked.
        base, k = host_scale(rooms, config)
        values: Sequence[float] = rooms if k else [0.0] * len(rooms)
        head = _top(values, k >= 0, config.max_ranked, picked, rng)
        return (
            [items[at[i]] for i in head],
            [(rooms[i] - base) * k * scale[at[i]] + offset[at[i]] for i in head],
            picked,
            [],
        )
    weights = zone_weights_at(rooms, at, scale, offset, config)
    head = _top(weights, True, config.max_ranked, picked, rng)
    return [items[at[i]] for i in head], [weights[i] for i in head], picked, weights


def _top(
    values: Sequence[float],
    descending: bool,
    top: int,
    candidates: Sequence[Candidate],
    rng: random.Random | None,
) -> list[int]:
    """Indices of the `top` best values (largest, or smallest). Equal values go by
    candidate key, or at random with an rng."""
    n = len(values)
    get = values.__getitem__
    if n > 256:  # nlargest/nsmallest are sorted()[:k], stable too
        pick = heapq.nlargest if descending else heapq.nsmallest
        order = pick(top + 1, range(n), key=get)
    else:
        order = sorted(range(n), key=get, reverse=descending)  # stable: ties keep scan order
    # A tie among the first top + 1 (sorted) is one within the head or across its end.
    if n > top + 1:
        kept = list(map(get, order[: top + 1]))
        if len(set(kept)) == top + 1:
            return order[:top]
    elif len(set(values)) == n:  # (all of them are kept)
        return order[:top]
    kept = list(map(get, order[: top + 1]))
    # Ties: sort the whole run of candidates equal to the last one kept, and any
    # before it, by key (or at random).
    last = kept[min(top, len(kept)) - 1]
    if n > 256:
        order = sorted(range(n), key=get, reverse=descending)
    end = top
    while end < n and values[order[end]] == last:
        end += 1
    head = order[:end]
    sign = -1 if descending else 1
    if rng is None:
        head.sort(key=lambda i: (sign * values[i], candidates[i].key))
    else:  # the key is called once per index, in order: one draw each
        draw = rng.random
        head.sort(key=lambda i: (sign * values[i], draw()))
    head = head[:top]
    return head
