"""Weighers: how good each candidate that passed the filters is (pure).

Each weigher maps the passing candidates to raw figures, normalised to 0..1 across
them (so weighers with different units can be added), times a multiplier:

- room: free RAM for hosts; for zones the units of the request's flavor that fit
  (fragmentation-aware), else the summary's sum of free RAM. `spread` prefers
  more room, `fill` less. Hosts and zones are normalised separately: a host's
  free RAM and a subtree's are not comparable.
- anti-affinity: a zone holding members of the request's group is weighed down
  by how many (hosts holding members never get here: the filter dropped them).

A zone's total is then `total * weight_scale + weight_offset`, as in Nova's zones,
so an operator can prefer or drain a child.
"""

from __future__ import annotations

from collections.abc import Sequence

from skyfed.scheduling.candidates import HostCandidate, ZoneCandidate
from skyfed.scheduling.config import FILL, PlannerConfig
from skyfed.scheduling.filters import FilterContext
from skyfed.scheduling.request import ANTI_AFFINITY, PlacementRequest


def normalize(values: Sequence[float], *, reverse: bool = False) -> list[float]:
    """Values mapped onto 0..1 (the largest to 1; with `reverse`, the smallest). All
    equal: all 0, no preference."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi == lo:
        return [0.0] * len(values)
    span = float(hi - lo)
    if reverse:
        return [(hi - v) / span for v in values]
    return [(v - lo) / span for v in values]


def zone_room(zone: ZoneCandidate, request: PlacementRequest) -> float:
    summary = zone.summary
    if request.flavor is not None:
        units = summary.fits.get(request.flavor)
        if units is not None:
            return units
    stats = summary.numeric.get("free_ram_mb")
    return stats.sum if stats is not None else 0.0


def host_scale(free_ram: Sequence[float], config: PlannerConfig) -> tuple[float, float]:
    """(base, k) such that a host's weight is (free_ram_mb - base) * k: free RAM
    normalised to 0..1 across the hosts (reversed for fill), times the multiplier.
    A child zone's weight scales its room the same way, before its own scale and
    offset."""
    lo, hi = min(free_ram), max(free_ram)
    if hi == lo:
        return lo, 0.0
    k = config.ram_weight_multiplier / (hi - lo)
    if config.strategy == FILL:
        return hi, -k
    return lo, k


def host_weights(hosts: Sequence[HostCandidate], config: PlannerConfig) -> list[float]:
    if not hosts:
        return []
    free_ram = [h.free_ram_mb for h in hosts]
    base, k = host_scale(free_ram, config)
    return [(v - base) * k for v in free_ram]


def zone_weights(
    zones: Sequence[ZoneCandidate],
    ctx: FilterContext,
    config: PlannerConfig,
    room: Sequence[float] | None = None,
) -> list[float]:
    """The zones' scores; `room`, when given, holds `zone_room` of each zone."""
    request = ctx.request
    flavor = request.flavor
    if room is not None:
        pass
    elif flavor is None:
        room = [zone_room(z, request) for z in zones]
    else:
        room = [
            units if (units := z.summary.fits.get(flavor)) is not None else zone_room(z, request)
            for z in zones
        ]
    # normalize(room) * multiplier, then * weight_scale + weight_offset, in one pass
    # when no anti-affinity penalty comes between.
    base, k = host_scale(room, config)
    penalties = None
    if request.group_policy == ANTI_AFFINITY and config.anti_affinity_multiplier:
        members = ctx.zone_members(zones)
        top = max(members, default=0)
        if top > 0:
            per_member = config.anti_affinity_multiplier / top
            penalties = [m * per_member for m in members]
    if penalties is None:
        return [
            (v - base) * k * z.weight_scale + z.weight_offset
            for v, z in zip(room, zones, strict=True)
        ]
    return [
        ((v - base) * k - p) * z.weight_scale + z.weight_offset
        for v, z, p in zip(room, zones, penalties, strict=True)
    ]


def zone_weights_at(
    room: Sequence[float],
    at: Sequence[int],
    scale: Sequence[float],
    offset: Sequence[float],
    config: PlannerConfig,
) -> list[float]:
    """`zone_weights` without anti-affinity, of the zones whose rooms are `room`, the
    weight scale and offset of each read at its position in `at` (a ZoneSet's
    columns): the same figures, computed the same way."""
    base, k = host_scale(room, config)
    return [(v - base) * k * scale[i] + offset[i] for v, i in zip(room, at, strict=True)]
