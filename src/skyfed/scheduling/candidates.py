"""What the planner chooses among: this zone's own hosts and its child zones (pure).

Both kinds carry what the filters and weighers read, nothing more, and both can
take a reservation ("assume and deduct"): a burst of decisions made against the
same candidates, before fresh heartbeats or polls arrive, then spreads instead
of piling onto the host or child that looked best first. These deductions are
estimates kept in memory; the authoritative claim of a host's resources happens
in the database (a conditional update), and a child claims its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from skyfed.scheduling.request import PlacementRequest
from skyfed.zones.capabilities import Value
from skyfed.zones.summary import FREE_KEYS, NumericStats, Summary

if TYPE_CHECKING:
    from skyfed.compute.hosts.registry import HostRecord
    from skyfed.zones.view import ChildSnapshot


@dataclass(slots=True, kw_only=True)
class HostCandidate:
    """A host of the deciding zone. `values` are its capabilities and resource totals.

    The free amounts live in their own fields (reservations change them); a constraint
    on `free_vcpus`, `free_ram_mb` or `free_disk_gb` reads those fields, not `values`.
    """

    kind: ClassVar[str] = "host"

    name: str
    values: Mapping[str, Value]
    free_vcpus: int
    free_ram_mb: int
    free_disk_gb: int
    enabled: bool = True
    online: bool = True
    group_members: int = 0  # servers of the request's group on this host

    @property
    def key(self) -> str:
        return "host:" + self.name

    # The HostLike protocol of summaries, so a zone can summarize its candidates.
    @property
    def disabled(self) -> bool:
        return not self.enabled

    @property
    def free(self) -> tuple[int, int, int]:
        return (self.free_vcpus, self.free_ram_mb, self.free_disk_gb)

    @classmethod
    def from_record(
        cls, record: HostRecord, *, online: bool = True, group_members: int = 0
    ) -> HostCandidate:
        """A candidate from the host registry (`online` from `registry.is_online`).

        `values` is the record's own dict, shared, not copied.
        """
        free_vcpus, free_ram_mb, free_disk_gb = record.free
        return cls(
            name=record.name,
            values=record.values,
            free_vcpus=free_vcpus,
            free_ram_mb=free_ram_mb,
            free_disk_gb=free_disk_gb,
            enabled=not record.disabled,
            online=online,
            group_members=group_members,
        )


# What reserve_zone needs of a candidate's ZoneSet; a Protocol, as columns imports this module.
class FitColumns(Protocol):
    def fit_changed(self, zone: ZoneCandidate, flavor: str) -> None: ...


@dataclass(slots=True, kw_only=True)
class ZoneCandidate:
    """A child zone: its summary of its subtree and its own capabilities (region=eu)."""

    kind: ClassVar[str] = "zone"

    id: str
    name: str
    active: bool
    summary: Summary
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    weight_offset: float = 0.0
    weight_scale: float = 1.0
    labels: Mapping[str, str] = field(default_factory=dict)
    group_members: int = 0  # servers of the request's group in this subtree
    # The ZoneSet holding this candidate, and its position there (`columns.ZoneSet`).
    columns: FitColumns | None = field(default=None, repr=False, compare=False)
    column: int = field(default=-1, repr=False, compare=False)

    @property
    def key(self) -> str:
        return "zone:" + self.id

    @classmethod
    def from_snapshot(cls, child: ChildSnapshot, *, group_members: int = 0) -> ZoneCandidate:
        """A candidate from the zone view. It shares the snapshot's Summary, so
        `reserve_zone` deducts from the view's copy until the next poll replaces it."""
        return cls(
            id=child.id,
            name=child.name,
            active=child.active,
            summary=child.summary,
            capabilities=child.capabilities,
            weight_offset=child.weight_offset,
            weight_scale=child.weight_scale,
            labels=child.labels,
            group_members=group_members,
        )


Candidate = HostCandidate | ZoneCandidate


def reserve_host(host: HostCandidate, request: PlacementRequest) -> None:
    """Deduct the request from the host's free resources (assume and deduct).

    Raises ValueError when the host does not have that much free: reserve only what
    the planner chose. The authoritative claim happens in the database.
    """
    v, r, d = request.vcpus, request.ram_mb, request.disk_gb
    if host.free_vcpus < v or host.free_ram_mb < r or host.free_disk_gb < d:
        raise ValueError(
            f"host {host.name} has {host.free} free, the request needs ({v}, {r}, {d})"
        )
    host.free_vcpus -= v
    host.free_ram_mb -= r
    host.free_disk_gb -= d


def reserve_zone(zone: ZoneCandidate, request: PlacementRequest) -> None:
    """Deduct the request from the child's summary (assume and deduct), an estimate:
    one unit less of the request's flavor, and the resources off the free sums (a
    free maximum above the new sum is lowered to it). The child claims the real
    resources itself when the request reaches it; its next poll replaces the summary.

    The summary's NumericStats are replaced, never changed in place: merged summaries
    may share them.
    """
    summary = zone.summary
    flavor = request.flavor
    if flavor is not None:
        fits = summary.fits
        left = fits.get(flavor)
        if left:
            fits[flavor] = left - 1
            if zone.columns is not None:  # keep the set's column of that flavor
                zone.columns.fit_changed(zone, flavor)
    numeric = summary.numeric
    # Unrolled over FREE_KEYS (asserted below): this runs at every level of every placement.
    if request.vcpus:
        _deduct(numeric, "free_vcpus", request.vcpus)
    if request.ram_mb:
        _deduct(numeric, "free_ram_mb", request.ram_mb)
    if request.disk_gb:
        _deduct(numeric, "free_disk_gb", request.disk_gb)


assert FREE_KEYS == ("free_vcpus", "free_ram_mb", "free_disk_gb")


def _deduct(numeric: dict[str, NumericStats], key: str, need: int) -> None:
    """Take `need` off the free sum of `key` (not below 0), its max and min down to it."""
    stats = numeric.get(key)
    if stats is None:
        return
    total = stats.sum - need
    if total < 0:
        total = 0
    top = stats.max if stats.max <= total else total
    low = stats.min if stats.min <= top else top
    # (min, max, sum, count), positional: keywords cost 2.5% of a placement's CPU time
    # here on Python 3.11 (a class call turns them into a dict and back).
    numeric[key] = NumericStats(low, top, total, stats.count)
