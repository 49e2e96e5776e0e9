"""Filters: which candidates may take a request at all (pure).

Each filter has a `name` (what `Decision.dropped` and `explain` call it) and splits
a batch of candidates into those that pass and those it drops, hosts and child
zones each in their own way. Filters work on batches, not one candidate at a time:
the planner runs the few that apply to a request over a chunk of candidates, which
costs far fewer Python calls than a chain of per-candidate predicates (the
constraints are compiled once per decision into comprehensions over a batch).

The order in FILTERS is the order the planner applies them; a candidate is dropped
by the first filter it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import compress
from operator import not_
from typing import Any, ClassVar, TypeVar

from skyfed.scheduling.candidates import HostCandidate, ZoneCandidate
from skyfed.scheduling.request import AFFINITY, ANTI_AFFINITY, PlacementRequest
from skyfed.zones.capabilities import Constraint, Value
from skyfed.zones.summary import FREE_KEYS, Summary

C = TypeVar("C")
Split = tuple[list[C], list[C]]
Predicate = Callable[[Mapping[str, Value]], bool]
HostFlags = Callable[[Sequence[HostCandidate]], list[bool]]
ZoneFlags = Callable[[Sequence[ZoneCandidate]], list[bool]]


class FilterContext:
    """What filters know beyond one candidate: the request, all the candidates
    offered (affinity looks at all of them, not only a sample) and, optionally, the
    request's group members per candidate key. Compiled constraints are kept here,
    so they are compiled once per decision."""

    __slots__ = (
        "_any_members",
        "_host_flags",
        "_members",
        "_zone_flags",
        "group_members",
        "hosts",
        "request",
        "zones",
    )

    def __init__(
        self,
        request: PlacementRequest,
        hosts: Sequence[HostCandidate] = (),
        zones: Sequence[ZoneCandidate] = (),
        group_members: Mapping[str, int] | None = None,
    ) -> None:
        self.request = request
        self.hosts = hosts
        self.zones = zones
        self.group_members = group_members
        self._any_members: bool | None = None
        self._members: dict[str, dict[str, int]] = {}
        self._host_flags: list[HostFlags] | None = None
        self._zone_flags: list[ZoneFlags] | None = None

    def host_members(self, hosts: Sequence[HostCandidate]) -> list[int]:
        """Servers of the request's group on each host."""
        if self.group_members is None:
            return [h.group_members for h in hosts]
        by_name = self._by_name("host:")
        if not by_name:
            return [0] * len(hosts)
        return [by_name.get(h.name, 0) for h in hosts]

    def zone_members(self, zones: Sequence[ZoneCandidate]) -> list[int]:
        """Servers of the request's group in each child zone's subtree."""
        if self.group_members is None:
            return [z.group_members for z in zones]
        by_id = self._by_name("zone:")
        if not by_id:
            return [0] * len(zones)
        return [by_id.get(z.id, 0) for z in zones]

    def _by_name(self, prefix: str) -> dict[str, int]:
        """group_members of one kind, by host name or zone id (no key built per candidate)."""
        cached = self._members.get(prefix)
        if cached is None:
            cut = len(prefix)
            counts = self.group_members or {}
            cached = {k[cut:]: n for k, n in counts.items() if k.startswith(prefix)}
            self._members[prefix] = cached
        return cached

    def any_members(self) -> bool:
        """Whether any candidate offered holds a member of the request's group."""
        if self._any_members is None:
            self._any_members = any(n > 0 for n in self.host_members(self.hosts)) or any(
                n > 0 for n in self.zone_members(self.zones)
            )
        return self._any_members

    def host_flags(self) -> list[HostFlags]:
        if self._host_flags is None:
            self._host_flags = [host_flags(c) for c in self.request.constraints]
        return self._host_flags

    def zone_flags(self) -> list[ZoneFlags]:
        if self._zone_flags is None:
            self._zone_flags = [zone_flags(c) for c in self.request.constraints]
        return self._zone_flags


def split(candidates: list[C], flags: list[bool]) -> Split[C]:
    """(those whose flag is true, the others), in order."""
    if all(flags):
        return candidates, []
    return list(compress(candidates, flags)), list(compress(candidates, map(not_, flags)))


class Filter:
    name: ClassVar[str]

    def applies(self, request: PlacementRequest) -> bool:
        """False when the filter would pass every candidate (so the planner skips it)."""
        return True

    def hosts(self, hosts: list[HostCandidate], ctx: FilterContext) -> Split[HostCandidate]:
        raise NotImplementedError

    def zones(self, zones: list[ZoneCandidate], ctx: FilterContext) -> Split[ZoneCandidate]:
        raise NotImplementedError


class ZonePathFilter(Filter):
    """`within`: only the child it names (and no local host); `avoid`: not a child
    whose name is a one-element avoid path (longer paths are for the children)."""

    name = "zone_path"

    def applies(self, request: PlacementRequest) -> bool:
        return bool(request.within) or any(len(p) == 1 for p in request.avoid)

    def hosts(self, hosts: list[HostCandidate], ctx: FilterContext) -> Split[HostCandidate]:
        if ctx.request.within:
            return [], list(hosts)
        return hosts, []

    def zones(self, zones: list[ZoneCandidate], ctx: FilterContext) -> Split[ZoneCandidate]:
        request = ctx.request
        avoided = {p[0] for p in request.avoid if len(p) == 1}
        if request.within:
            inside = request.within[0]
            return split(zones, [z.name == inside and z.name not in avoided for z in zones])
        return split(zones, [z.name not in avoided for z in zones])


class ExcludeFilter(Filter):
    """Candidates already tried for this request (retries)."""

    name = "exclude"

    def applies(self, request: PlacementRequest) -> bool:
        return bool(request.exclude)

    def hosts(self, hosts: list[HostCandidate], ctx: FilterContext) -> Split[HostCandidate]:
        exclude = ctx.request.exclude
        return split(hosts, ["host:" + h.name not in exclude for h in hosts])

    def zones(self, zones: list[ZoneCandidate], ctx: FilterContext) -> Split[ZoneCandidate]:
        exclude = ctx.request.exclude
        return split(zones, ["zone:" + z.id not in exclude for z in zones])


class EnabledFilter(Filter):
    """Hosts enabled by the admin and heard from recently; child zones that are active."""

    name = "enabled"

    def hosts(self, hosts: list[HostCandidate], ctx: FilterContext) -> Split[HostCandidate]:
        return split(hosts, [h.enabled and h.online for h in hosts])

    def zones(self, zones: list[ZoneCandidate], ctx: FilterContext) -> Split[ZoneCandidate]:
        return split(zones, [z.active for z in zones])


class AffinityFilter(Filter):
    """affinity: when any candidate holds a member of the group, only those pass.
    anti-affinity: a host holding a member is dropped; a zone is not (it is weighed
    down instead, since its subtree may have other hosts)."""

    name = "affinity"

    def applies(self, request: PlacementRequest) -> bool:
        return request.group_policy is not None

    def hosts(self, hosts: list[HostCandidate], ctx: FilterContext) -> Split[HostCandidate]:
        policy = ctx.request.group_policy
        if policy == ANTI_AFFINITY:
            return split(hosts, [n == 0 for n in ctx.host_members(hosts)])
        if policy == AFFINITY and ctx.any_members():
            return split(hosts, [n > 0 for n in ctx.host_members(hosts)])
        return hosts, []

    def zones(self, zones: list[ZoneCandidate], ctx: FilterContext) -> Split[ZoneCandidate]:
        if ctx.request.group_policy == AFFINITY and ctx.any_members():
            return split(zones, [n > 0 for n in ctx.zone_members(zones)])
        return zones, []


class ResourcesFilter(Filter):
    """Hosts: enough free vCPUs, RAM and disk. Zones: at least one unit of the
    request's flavor fits (when the summary counts that flavor), else one host
    might have that much of each resource free (`Summary.may_fit`)."""

    name = "resources"

    def hosts(self, hosts: list[HostCandidate], ctx: FilterContext) -> Split[HostCandidate]:
        r = ctx.request
        v, m, d = r.vcpus, r.ram_mb, r.disk_gb
        return split(
            hosts,
            [h.free_vcpus >= v and h.free_ram_mb >= m and h.free_disk_gb >= d for h in hosts],
        )

    def zones(self, zones: list[ZoneCandidate], ctx: FilterContext) -> Split[ZoneCandidate]:
        r = ctx.request
        flavor = r.flavor
        if flavor is None:
            v, m, d = r.vcpus, r.ram_mb, r.disk_gb
            return split(zones, [z.summary.may_fit(v, m, d) for z in zones])
        return split(
            zones,
            [
                units > 0
                if (units := z.summary.fits.get(flavor)) is not None
                else z.summary.may_fit(r.vcpus, r.ram_mb, r.disk_gb)
                for z in zones
            ],
        )


def zone_has_room(zone: ZoneCandidate, request: PlacementRequest) -> bool:
    """The resources filter for one zone."""
    summary = zone.summary
    if request.flavor is not None:
        units = summary.fits.get(request.flavor)
        if units is not None:
            return units > 0
    return summary.may_fit(request.vcpus, request.ram_mb, request.disk_gb)


class CapabilitiesFilter(Filter):
    """Hosts: every constraint matches the host's values. Zones: a constraint on a
    key of the child's own capabilities (region=eu) is matched against those; any
    other must be possible under the child's summary (`Summary.may_satisfy`)."""

    name = "capabilities"

    def applies(self, request: PlacementRequest) -> bool:
        return bool(request.constraints)

    def hosts(self, hosts: list[HostCandidate], ctx: FilterContext) -> Split[HostCandidate]:
        passed = hosts
        dropped: list[HostCandidate] = []
        for flags in ctx.host_flags():
            passed, out = split(passed, flags(passed))
            dropped += out
            if not passed:
                break
        return passed, dropped

    def zones(self, zones: list[ZoneCandidate], ctx: FilterContext) -> Split[ZoneCandidate]:
        passed = zones
        dropped: list[ZoneCandidate] = []
        for flags in ctx.zone_flags():
            passed, out = split(passed, flags(passed))
            dropped += out
            if not passed:
                break
        return passed, dropped


FILTERS: tuple[Filter, ...] = (
    ZonePathFilter(),
    ExcludeFilter(),
    EnabledFilter(),
    AffinityFilter(),
    ResourcesFilter(),
    CapabilitiesFilter(),
)
FILTER_NAMES = tuple(f.name for f in FILTERS)

# The planner's fast path: the filters that look at one candidate alone (enabled,
# resources, capabilities), in one pass compiled for the request's shape (see
# `host_screen`, `zone_screen` below). A candidate this screen fails goes through
# the whole chain to learn which filter drops it, when someone asks; one it passes
# goes through the other filters only (zone path, exclude, affinity).
SCREENED = frozenset({EnabledFilter.name, ResourcesFilter.name, CapabilitiesFilter.name})


def screen_hosts(hosts: Sequence[HostCandidate], request: PlacementRequest) -> list[bool]:
    """The screen over hosts: EnabledFilter, ResourcesFilter and CapabilitiesFilter."""
    screen = host_screen(request.vcpus, request.ram_mb, request.disk_gb, request.constraints)
    passed = set(map(id, screen(hosts)))
    return [id(h) in passed for h in hosts]


def screen_zones(zones: Sequence[ZoneCandidate], request: PlacementRequest) -> list[bool]:
    """The screen over child zones: EnabledFilter, ResourcesFilter and CapabilitiesFilter."""
    screen = zone_screen(
        request.vcpus, request.ram_mb, request.disk_gb, request.flavor, request.constraints
    )
    return [room != NO_ROOM for room in screen(zones)]


# -- one constraint, one candidate (the reference; used for reasons) ---------------


def host_meets(host: HostCandidate, constraint: Constraint) -> bool:
    """One constraint over one host: its values, or its live free amounts."""
    key = constraint.key
    if key in FREE_KEYS:
        return constraint.matches({key: getattr(host, key)})
    return constraint.matches(host.values)


def zone_may_satisfy(zone: ZoneCandidate, constraint: Constraint) -> bool:
    """One constraint over one child: its own capabilities, else its summary."""
    own = zone.capabilities
    if constraint.key in own:
        return constraint.matches(own)
    return zone.summary.may_satisfy(constraint)


# -- constraints compiled for batches ----------------------------------------------
#
# Each answers exactly what the reference above answers (tests check it with
# hypothesis), in fewer steps: the planner runs them over every scanned candidate.


def compile_constraint(constraint: Constraint) -> Predicate:
    """A predicate over a capability mapping equal to `constraint.matches`."""
    key, op = constraint.key, constraint.op
    if op == "exists":
        return lambda caps: caps.get(key) is not None
    if op in ("=", "in", "!="):
        texts = frozenset(o.text for o in constraint.operands)
        numbers = frozenset(o.number for o in constraint.operands if o.number is not None)
        if op == "!=":

            def differs(caps: Mapping[str, Value]) -> bool:
                v = caps.get(key)
                if v is None:
                    return True
                if isinstance(v, str):
                    return v not in texts
                return float(v) not in numbers

            return differs

        def equals(caps: Mapping[str, Value]) -> bool:
            v = caps.get(key)
            if v is None:
                return False
            if isinstance(v, str):
                return v in texts
            return float(v) in numbers

        return equals
    number = constraint.operands[0].number
    assert number is not None  # parse() guarantees a number for range operators
    return _RANGES[op](key, number)


def _ge(key: str, n: float) -> Predicate:
    return lambda caps: (
        (v := caps.get(key)) is not None and not isinstance(v, str) and float(v) >= n
    )


def _gt(key: str, n: float) -> Predicate:
    return lambda caps: (v := caps.get(key)) is not None and not isinstance(v, str) and float(v) > n


def _le(key: str, n: float) -> Predicate:
    return lambda caps: (
        (v := caps.get(key)) is not None and not isinstance(v, str) and float(v) <= n
    )


def _lt(key: str, n: float) -> Predicate:
    return lambda caps: (v := caps.get(key)) is not None and not isinstance(v, str) and float(v) < n


_RANGES: dict[str, Callable[[str, float], Predicate]] = {
    ">=": _ge,
    ">": _gt,
    "<=": _le,
    "<": _lt,
}


@lru_cache(maxsize=1024)
def host_flags(constraint: Constraint) -> HostFlags:
    """The constraint over a batch of hosts: one flag per host."""
    key, op = constraint.key, constraint.op
    if key in FREE_KEYS:  # the live free amounts, not the values of the last heartbeat
        predicate = compile_constraint(constraint)
        return lambda hosts: [predicate({key: getattr(h, key)}) for h in hosts]
    operands = constraint.operands
    if op == "=" and operands[0].number is None:
        # A text that is not a number equals only that string: a plain comparison.
        text = operands[0].text
        return lambda hosts: [h.values.get(key) == text for h in hosts]
    if op == ">=":
        n = operands[0].number
        return lambda hosts: [
            (v := h.values.get(key)) is not None and not isinstance(v, str) and float(v) >= n
            for h in hosts
        ]
    predicate = compile_constraint(constraint)
    return lambda hosts: [predicate(h.values) for h in hosts]


def compile_summary_constraint(constraint: Constraint) -> Callable[[Summary], bool]:
    """A predicate over a summary equal to `summary.may_satisfy(constraint)`."""
    key, op = constraint.key, constraint.op
    operands = constraint.operands
    if op in ("=", "in") and operands:
        texts = tuple(o.text for o in operands)
        numbers = tuple(o.number for o in operands if o.number is not None)

        def may_equal(s: Summary) -> bool:
            if key in s.strings_overflow:
                return True
            counts = s.strings.get(key)
            if counts is not None:
                for text in texts:
                    if text in counts:
                        return True
            if numbers:
                stats = s.numeric.get(key)
                if stats is not None:
                    lo, hi = stats.min, stats.max
                    for n in numbers:
                        if lo <= n <= hi:
                            return True
            return False

        return may_equal
    if op in (">=", ">", "<=", "<"):
        n = operands[0].number
        assert n is not None
        if op == ">=":
            return lambda s: (stats := s.numeric.get(key)) is not None and stats.max >= n
        if op == ">":
            return lambda s: (stats := s.numeric.get(key)) is not None and stats.max > n
        if op == "<=":
            return lambda s: (stats := s.numeric.get(key)) is not None and stats.min <= n
        return lambda s: (stats := s.numeric.get(key)) is not None and stats.min < n
    return lambda s: s.may_satisfy(constraint)


@lru_cache(maxsize=1024)
def zone_flags(constraint: Constraint) -> ZoneFlags:
    """The constraint over a batch of child zones: one flag per zone."""
    key = constraint.key
    on_summary = compile_summary_constraint(constraint)
    on_own = compile_constraint(constraint)
    return lambda zones: [
        on_own(own) if key in (own := z.capabilities) else on_summary(z.summary) for z in zones
    ]


# -- the screen: enabled, resources and capabilities in one pass --------------------
#
# Compiled once per request shape (the planner keeps the last request's). Each
# answers what the filters answer in turn (a hypothesis test checks it against the
# plain definitions), in one comprehension over a batch, with the common
# constraints inlined.

HostPredicate = Callable[[HostCandidate], bool]
ZonePredicate = Callable[[ZoneCandidate], bool]


@lru_cache(maxsize=1024)
def host_predicate(constraint: Constraint) -> HostPredicate:
    """One constraint over one host (`host_meets`), compiled."""
    key, op = constraint.key, constraint.op
    if key in FREE_KEYS:
        predicate = compile_constraint(constraint)
        return lambda h: predicate({key: getattr(h, key)})
    operands = constraint.operands
    if op == "=" and operands[0].number is None:
        text = operands[0].text
        return lambda h: h.values.get(key) == text
    if op == ">=":
        n = operands[0].number
        return lambda h: (
            (v := h.values.get(key)) is not None and not isinstance(v, str) and float(v) >= n
        )
    predicate = compile_constraint(constraint)
    return lambda h: predicate(h.values)


@lru_cache(maxsize=1024)
def zone_predicate(constraint: Constraint) -> ZonePredicate:
    """One constraint over one child zone (`zone_may_satisfy`), compiled."""
    key = constraint.key
    on_summary = compile_summary_constraint(constraint)
    on_own = compile_constraint(constraint)
    return lambda z: on_own(own) if key in (own := z.capabilities) else on_summary(z.summary)


def summary_may_fit(vcpus: int, ram_mb: int, disk_gb: int) -> Callable[[Summary], bool]:
    """`Summary.may_fit(vcpus, ram_mb, disk_gb)`, compiled for one shape."""
    needs = tuple(
        (key, need)
        for key, need in zip(FREE_KEYS, (vcpus, ram_mb, disk_gb), strict=True)
        if need > 0
    )
    if len(needs) == 3:
        (kv, nv), (km, nm), (kd, nd) = needs
        return lambda s: (
            (a := (numeric := s.numeric).get(kv)) is not None
            and not a.max < nv
            and (b := numeric.get(km)) is not None
            and not b.max < nm
            and (c := numeric.get(kd)) is not None
            and not c.max < nd
            and s.hosts - s.disabled > 0
        )

    def may_fit(s: Summary) -> bool:
        numeric = s.numeric
        for key, need in needs:
            stats = numeric.get(key)
            if stats is None or stats.max < need:
                return False
        return s.hosts - s.disabled > 0

    return may_fit


# What the zone screen gives a child it drops; any other figure is the child's room
# (units of the flavor that fit, or free RAM: `weighers.zone_room`).
NO_ROOM = float("-inf")

HostScreen = Callable[[Sequence[HostCandidate]], list[HostCandidate]]
ZoneScreen = Callable[[Sequence[ZoneCandidate]], list[float]]


def _free_ram(s: Summary) -> float:
    stats = s.numeric.get("free_ram_mb")
    return stats.sum if stats is not None else 0.0


# The screens are generated as one comprehension per request shape, with the common
# constraints written out inline (a function call per candidate and constraint
# costs more than the test itself). The source holds only names chosen here; keys,
# texts and numbers of the request are bound as values in the namespace, never
# written into the source.
#
# Kept over plain closures (the same comprehension calling `host_predicate` and
# `zone_predicate` per constraint) on measurement: those took 4 to 6% more CPU time
# per placement in `bench placement` (1.2x to 1.5x for requests with constraints).
# `test_generated_screens_are_the_plain_definitions` holds both screens to the plain
# definitions (`Constraint.matches`, `Summary.may_satisfy`, `Summary.may_fit`) for
# every operator.


def _inline_text(c: Constraint) -> str | None:
    """The text a constraint `key = text` compares with, when it is only that: one
    operand that is not a number equals only the same string."""
    if c.op == "=" and len(c.operands) == 1 and c.operands[0].number is None:
        return c.operands[0].text
    return None


def _inline_at_least(c: Constraint) -> float | None:
    """The number of a constraint `key >= number`."""
    if c.op == ">=" and len(c.operands) == 1:
        return c.operands[0].number
    return None


def _generate(source: str, namespace: dict[str, object]) -> Callable[..., list[Any]]:
    code = compile(source, "<skyfed screen>", "exec")
    exec(code, namespace)  # the source is built from fixed fragments only
    return namespace["screen"]  # type: ignore[return-value]


@lru_cache(maxsize=4096)
def host_screen(
    vcpus: int, ram_mb: int, disk_gb: int, constraints: tuple[Constraint, ...]
) -> HostScreen:
    """EnabledFilter, CapabilitiesFilter and ResourcesFilter over a batch of hosts:
    the hosts that pass them all, in order. (All three must pass, so the order of
    the tests is free: the constraints come before the free amounts, which are
    often in memory of their own.)"""
    namespace: dict[str, object] = {
        "v": vcpus,
        "m": ram_mb,
        "d": disk_gb,
        "isinstance": isinstance,
        "float": float,
    }
    tests = ["h.enabled", "h.online"]
    values = "(values := h.values)"  # bound at its first use, reused after
    for i, c in enumerate(constraints):
        key, text, least = c.key, _inline_text(c), _inline_at_least(c)
        namespace[f"k{i}"] = key
        if key in FREE_KEYS or (text is None and least is None):
            namespace[f"p{i}"] = host_predicate(c)
            tests.append(f"p{i}(h)")
        elif text is not None:
            namespace[f"t{i}"] = text
            tests.append(f"{values}.get(k{i}) == t{i}")
            values = "values"
        else:
            namespace[f"n{i}"] = least
            tests.append(
                f"(x := {values}.get(k{i})) is not None and not isinstance(x, str)"
                f" and float(x) >= n{i}"
            )
            values = "values"
    tests += ["h.free_vcpus >= v", "h.free_ram_mb >= m", "h.free_disk_gb >= d"]
    source = "def screen(hosts):\n    return [h for h in hosts if " + " and ".join(tests) + "]\n"
    return _generate(source, namespace)


@lru_cache(maxsize=4096)
def zone_screen(
    vcpus: int, ram_mb: int, disk_gb: int, flavor: str | None, constraints: tuple[Constraint, ...]
) -> ZoneScreen:
    """EnabledFilter, ResourcesFilter and CapabilitiesFilter over a batch of child
    zones: per zone its room (`weighers.zone_room`) when it passes them all, else
    NO_ROOM."""
    namespace: dict[str, object] = {
        "flavor": flavor,
        "fit": summary_may_fit(vcpus, ram_mb, disk_gb),
        "NO_ROOM": NO_ROOM,
        "free_ram": _free_ram,
        "isinstance": isinstance,
        "float": float,
    }
    tests = []
    own = "(own := z.capabilities)"  # bound at its first use, reused after
    for i, c in enumerate(constraints):
        key, text, least = c.key, _inline_text(c), _inline_at_least(c)
        namespace[f"k{i}"] = key
        if text is not None:  # `own` as compile_constraint, else as may_equal
            namespace[f"t{i}"] = text
            tests.append(
                f"(own[k{i}] == t{i} if k{i} in {own} else (k{i} in s.strings_overflow"
                f" or ((cs := s.strings.get(k{i})) is not None and t{i} in cs)))"
            )
        elif least is not None:  # `own` as compile_constraint, else as the summary's
            namespace[f"n{i}"] = least
            tests.append(
                f"((x := own[k{i}]) is not None and not isinstance(x, str) and float(x) >= n{i}"
                f" if k{i} in {own} else"
                f" ((st := s.numeric.get(k{i})) is not None and st.max >= n{i}))"
            )
        else:
            namespace[f"p{i}"] = zone_predicate(c)
            tests.append(f"p{i}(z)")
            continue
        own = "own"
    met = "".join(" and " + t for t in tests)
    if flavor is None:
        room = f"(free_ram(s) if fit(s := z.summary){met} else NO_ROOM)"
    else:
        # The units of the flavor that fit, when the summary counts them; else free RAM.
        room = (
            f"((units if units > 0{met} else NO_ROOM)"
            f" if (units := (s := z.summary).fits.get(flavor)) is not None"
            f" else (free_ram(s) if fit(s){met} else NO_ROOM))"
        )
    source = f"def screen(zones):\n    return [{room} if z.active else NO_ROOM for z in zones]\n"
    return _generate(source, namespace)
