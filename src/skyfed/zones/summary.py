"""Capability summaries of a set of hosts, and how they merge up the zone tree (pure).

A summary keeps, over the enabled online hosts it covers: per numeric key
min/max/sum/count, per string key the count of each value, and per flavor the
number of instances that fit host by host (so 2,000 hosts with one free core
do not look like room for a two-core server). Merging is associative and
commutative, so a zone's summary is the merge of its own hosts' and its
children's, in any grouping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from skyfed.zones.capabilities import Constraint, Value, is_finite
from skyfed.zones.sections import Section, SectionError, merge_sections, sections_from_dict

# A string key with more distinct values than this keeps only its total: the
# values of a per-host key (a serial number, a rack) are no use for routing.
MAX_DISTINCT_VALUES = 512

RESOURCE_KEYS = ("vcpus", "ram_mb", "disk_gb")
FREE_KEYS = ("free_vcpus", "free_ram_mb", "free_disk_gb")
RESERVED_KEYS = frozenset(RESOURCE_KEYS + FREE_KEYS)


class SummaryError(ValueError):
    """A summary document that is not well formed (from a broken or hostile child)."""


class HostLike(Protocol):
    """What a summary needs to know of a host."""

    @property
    def disabled(self) -> bool: ...

    @property
    def values(self) -> Mapping[str, Value]: ...

    @property
    def free(self) -> tuple[int, int, int]: ...


class FlavorLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def vcpus(self) -> int: ...

    @property
    def ram_mb(self) -> int: ...

    @property
    def disk_gb(self) -> int: ...


@dataclass(slots=True)
class NumericStats:
    min: float
    max: float
    sum: float
    count: int

    def merged(self, other: NumericStats) -> NumericStats:
        return NumericStats(
            min(self.min, other.min),
            max(self.max, other.max),
            self.sum + other.sum,
            self.count + other.count,
        )


@dataclass(slots=True)
class Summary:
    hosts: int = 0  # online hosts, enabled or not
    disabled: int = 0  # online hosts an admin disabled; they add no capacity
    zones: int = 0  # zones in the subtree that answered
    numeric: dict[str, NumericStats] = field(default_factory=dict)
    strings: dict[str, dict[str, int]] = field(default_factory=dict)
    # Keys whose distinct values overflowed: only the number of hosts having them.
    strings_overflow: dict[str, int] = field(default_factory=dict)
    fits: dict[str, int] = field(default_factory=dict)
    # Capacity that is not hosts, by feature (zones/sections.py).
    sections: dict[str, Section] = field(default_factory=dict)

    # -- merging -----------------------------------------------------------------

    def merge(self, other: Summary) -> Summary:
        numeric = dict(self.numeric)
        for key, stats in other.numeric.items():
            mine = numeric.get(key)
            numeric[key] = stats if mine is None else mine.merged(stats)
        strings: dict[str, dict[str, int]] = {}
        overflow = dict(self.strings_overflow)
        for key, total in other.strings_overflow.items():
            overflow[key] = overflow.get(key, 0) + total
        for key in self.strings.keys() | other.strings.keys():
            a, b = self.strings.get(key, {}), other.strings.get(key, {})
            if key in overflow:
                overflow[key] += sum(a.values()) + sum(b.values())
                continue
            counts = dict(a)
            for value, n in b.items():
                counts[value] = counts.get(value, 0) + n
            if len(counts) > MAX_DISTINCT_VALUES:
                overflow[key] = sum(counts.values())
            else:
                strings[key] = counts
        fits = dict(self.fits)
        for name, n in other.fits.items():
            fits[name] = fits.get(name, 0) + n
        return Summary(
            hosts=self.hosts + other.hosts,
            disabled=self.disabled + other.disabled,
            zones=self.zones + other.zones,
            numeric=numeric,
            strings=strings,
            strings_overflow=overflow,
            fits=fits,
            sections=merge_sections(self.sections, other.sections),
        )

    @classmethod
    def merge_all(cls, summaries: Iterable[Summary]) -> Summary:
        result = cls()
        for summary in summaries:
            result = result.merge(summary)
        return result

    # -- routing questions -------------------------------------------------------

    @property
    def enabled_hosts(self) -> int:
        return self.hosts - self.disabled

    def hosts_with(self, key: str) -> int:
        stats = self.numeric.get(key)
        total = stats.count if stats else 0
        total += sum(self.strings.get(key, {}).values()) + self.strings_overflow.get(key, 0)
        return total

    def may_satisfy(self, constraint: Constraint) -> bool:
        """False only when no host under this summary can meet the constraint."""
        key, op = constraint.key, constraint.op
        stats = self.numeric.get(key)
        counts = self.strings.get(key, {})
        overflowed = key in self.strings_overflow
        if op == "exists":
            return self.hosts_with(key) > 0
        if op in ("=", "in"):
            return any(
                overflowed
                or o.text in counts
                or (
                    stats is not None
                    and o.number is not None
                    and stats.min <= o.number <= stats.max
                )
                for o in constraint.operands
            )
        if op == "!=":
            operand = constraint.operands[0]
            equal = counts.get(operand.text, 0)
            if stats is not None and stats.min == stats.max == operand.number:
                equal += stats.count
            return overflowed or equal < self.enabled_hosts
        if stats is None:
            return False
        number = constraint.operands[0].number
        assert number is not None
        return {
            "<": stats.min < number,
            "<=": stats.min <= number,
            ">": stats.max > number,
            ">=": stats.max >= number,
        }[op]

    def may_fit(self, vcpus: int, ram_mb: int, disk_gb: int) -> bool:
        """Whether one host might have this much free (the largest free amounts may differ)."""
        for key, need in zip(FREE_KEYS, (vcpus, ram_mb, disk_gb), strict=True):
            stats = self.numeric.get(key)
            if need > 0 and (stats is None or stats.max < need):
                return False
        return self.enabled_hosts > 0

    # -- wire format -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "hosts": self.hosts,
            "disabled": self.disabled,
            "zones": self.zones,
            "numeric": {
                k: {"min": s.min, "max": s.max, "sum": s.sum, "count": s.count}
                for k, s in sorted(self.numeric.items())
            },
            "strings": {k: dict(sorted(v.items())) for k, v in sorted(self.strings.items())},
            "strings_overflow": dict(sorted(self.strings_overflow.items())),
            "fits": dict(sorted(self.fits.items())),
        }
        if self.sections:  # (absent from zones whose features report none)
            document["sections"] = {n: s.to_dict() for n, s in sorted(self.sections.items())}
        return document

    @classmethod
    def from_dict(cls, data: Any) -> Summary:
        """Read a summary from an untrusted document; raise SummaryError when malformed."""
        try:
            if not isinstance(data, dict):
                raise SummaryError("summary must be an object")
            numeric = {}
            for key, s in _mapping(data.get("numeric", {})).items():
                stats = NumericStats(
                    _number(s["min"]), _number(s["max"]), _number(s["sum"]), _count(s["count"])
                )
                if stats.min > stats.max:
                    raise SummaryError(f"numeric {key!r}: min above max")
                numeric[str(key)] = stats
            strings = {
                str(key): {str(v): _count(n) for v, n in _mapping(values).items()}
                for key, values in _mapping(data.get("strings", {})).items()
            }
            overflow = {
                str(k): _count(n) for k, n in _mapping(data.get("strings_overflow", {})).items()
            }
            fits = {str(k): _count(n) for k, n in _mapping(data.get("fits", {})).items()}
            summary = cls(
                hosts=_count(data.get("hosts", 0)),
                disabled=_count(data.get("disabled", 0)),
                zones=_count(data.get("zones", 0)),
                numeric=numeric,
                strings=strings,
                strings_overflow=overflow,
                fits=fits,
                sections=sections_from_dict(data.get("sections")),
            )
        except (KeyError, TypeError, SectionError) as exc:
            raise SummaryError(f"malformed summary: {exc}") from exc
        if summary.disabled > summary.hosts:
            raise SummaryError("more disabled hosts than hosts")
        return summary


def _mapping(value: Any) -> Mapping[Any, Any]:
    if not isinstance(value, dict):
        raise SummaryError("expected an object")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not is_finite(value):
        raise SummaryError(f"expected a finite number, got {value!r}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SummaryError(f"expected a count, got {value!r}")
    return value


def summarize_hosts(hosts: Iterable[HostLike], flavors: Sequence[FlavorLike]) -> Summary:
    """The summary of one zone's own online hosts (the caller filters out offline ones)."""
    # The hot loop of a big zone (100,000 hosts: `skyfed bench summary`). It keeps one
    # [min, max, sum, count] list per numeric key (one dict lookup per value, not seven)
    # and spells out min() in the fits; the comparisons and additions, and their order,
    # are those of the obvious code, so the result is the same to the last bit.
    numeric: dict[str, list[Any]] = {}
    strings: dict[str, dict[str, int]] = {}
    shapes = [(i, f.vcpus, f.ram_mb, f.disk_gb) for i, f in enumerate(flavors)]
    fits = [0] * len(shapes)
    total = disabled = 0
    for host in hosts:
        total += 1
        if host.disabled:
            disabled += 1
            continue
        for key, value in host.values.items():
            if isinstance(value, str):
                counts = strings.get(key)
                if counts is None:
                    strings[key] = {value: 1}
                else:
                    counts[value] = counts.get(value, 0) + 1
                continue
            stats = numeric.get(key)
            if stats is None:
                numeric[key] = [value, value, value, 1]
                continue
            if value < stats[0]:
                stats[0] = value
            if value > stats[1]:
                stats[1] = value
            stats[2] += value
            stats[3] += 1
        free_vcpus, free_ram, free_disk = host.free
        for i, vcpus, ram, disk in shapes:
            # n = min(free_vcpus // vcpus, free_ram // ram[, free_disk // disk])
            n = free_vcpus // vcpus
            m = free_ram // ram
            if m < n:
                n = m
            if disk:
                m = free_disk // disk
                if m < n:
                    n = m
            if n > 0:
                fits[i] += n
    overflow = {k: sum(v.values()) for k, v in strings.items() if len(v) > MAX_DISTINCT_VALUES}
    return Summary(
        hosts=total,
        disabled=disabled,
        zones=0,
        numeric={k: NumericStats(*stats) for k, stats in numeric.items()},
        strings={k: v for k, v in strings.items() if k not in overflow},
        strings_overflow=overflow,
        fits={f.name: fits[i] for i, f in enumerate(flavors)},
    )
