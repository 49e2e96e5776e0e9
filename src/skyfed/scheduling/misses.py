"""Negative caching: child zones that found no host for a request of some shape (pure).

A parent sends a request down to a child zone, and the child (its subtree) finds
no host for it: nothing there meets the request, or nothing its bounded retries
reached did. `Misses` remembers that answer per (child, request shape), with the
child's summary as it was then. While the child's summary is the same object and
shows no more room than it did (reservations only ever take room away), the
same shape is not sent down that child again: the next identical request skips
it at once and can be told why the first one failed. The answer is forgotten as
soon as the child's summary is replaced (the next poll) or shows more room of
any kind (more enabled hosts, more units of the request's flavor, a larger free
amount), so capacity that appears is never hidden for longer than the summary
that does not show it.

It is meant for requests that fit nowhere although every summary on the way
says "maybe" (arch = arm64 and gpu >= 1 where no arm64 host has a GPU: each
summary knows both exist, none knows they never meet on one host). Without it,
each such request walks down and back up the tree again. Requests whose answer
can change while the child's summary does not are never remembered: those of a
server group (where its members are changes the answer) and retries (`exclude`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from skyfed.scheduling.candidates import ZoneCandidate
from skyfed.scheduling.request import PlacementRequest
from skyfed.zones.summary import FREE_KEYS, Summary

T = TypeVar("T")

Shape = tuple[Hashable, ...]

_NONE = float("-inf")  # "no such figure": any figure that appears later is more room


def request_shape(request: PlacementRequest) -> Shape | None:
    """What a child's answer to `request` depends on besides the child's own state
    (everything but the server id), or None when the answer may change while the
    child's summary does not: a server group, or a retry with candidates excluded."""
    if request.group is not None or request.exclude:
        return None
    return (
        request.flavor,
        request.vcpus,
        request.ram_mb,
        request.disk_gb,
        request.constraints,
        request.within,
        request.avoid,
    )


def room(summary: Summary, flavor: str | None) -> tuple[float, ...]:
    """The figures of a summary that grow when a subtree gains room for a request:
    enabled hosts, units of the flavor that fit, the largest free amount of each
    resource. A miss holds only while none of them is larger than it was."""
    numeric = summary.numeric
    units = _NONE
    if flavor is not None:
        units = summary.fits.get(flavor, _NONE)
    return (
        summary.hosts - summary.disabled,
        units,
        *((stats.max if (stats := numeric.get(key)) is not None else _NONE) for key in FREE_KEYS),
    )


@dataclass(slots=True, kw_only=True)
class Miss(Generic[T]):
    summary: Summary  # the child's summary when it found nothing (kept to compare identity)
    room: tuple[float, ...]
    why: T  # what the caller wants back (the plan that found nothing, a reason...)


class Misses(Generic[T]):
    """Per (child zone, request shape): the child found nothing, and why (`why`, any
    value the caller gives: the plan that found nothing, a reason text...).

    Keys are the child's id and the shape of the request *as the child sees it*
    (`child_request`), so within/avoid paths count. At most `limit` misses are kept
    (the oldest are forgotten first).
    """

    __slots__ = ("_entries", "_last", "_zones", "limit")

    def __init__(self, limit: int = 100_000) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._entries: dict[tuple[str, Shape], Miss[T]] = {}
        self._zones: dict[str, int] = {}  # zone id -> misses kept for it
        # The last request asked about and its shape: a descent asks about one
        # request at every level.
        self._last: tuple[PlacementRequest | None, Shape | None] = (None, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _shape(self, request: PlacementRequest) -> Shape | None:
        last, shape = self._last
        if last is not request:
            shape = request_shape(request)
            self._last = (request, shape)
        return shape

    def get(self, zone: ZoneCandidate, request: PlacementRequest) -> Miss[T] | None:
        """The miss remembered for `request` (as `zone` sees it) in `zone`, if it still
        holds: same summary object, no figure of `room` larger. One that no longer
        holds is forgotten."""
        if zone.id not in self._zones:
            return None
        shape = self._shape(request)
        if shape is None:
            return None
        key = (zone.id, shape)
        miss = self._entries.get(key)
        if miss is None:
            return None
        summary = zone.summary
        if miss.summary is summary:
            now = room(summary, request.flavor)
            if all(a <= b for a, b in zip(now, miss.room, strict=True)):
                return miss
        self._drop(key)
        return None

    def add(self, zone: ZoneCandidate, request: PlacementRequest, why: T) -> bool:
        """Remember that `zone` found no host for `request` (as the zone sees it), as
        its summary shows now; False when such a request is never remembered."""
        shape = self._shape(request)
        if shape is None:
            return False
        entries = self._entries
        key = (zone.id, shape)
        if key in entries:
            self._drop(key)
        while len(entries) >= self.limit:
            self._drop(next(iter(entries)))
        summary = zone.summary
        entries[key] = Miss(summary=summary, room=room(summary, request.flavor), why=why)
        self._zones[zone.id] = self._zones.get(zone.id, 0) + 1
        return True

    def forget(self, zone: ZoneCandidate | None = None) -> None:
        """Forget every miss of `zone` (all of them without one)."""
        if zone is None:
            self._entries.clear()
            self._zones.clear()
            return
        for key in [k for k in self._entries if k[0] == zone.id]:
            self._drop(key)

    def _drop(self, key: tuple[str, Shape]) -> None:
        del self._entries[key]
        zone_id = key[0]
        left = self._zones[zone_id] - 1
        if left:
            self._zones[zone_id] = left
        else:
            del self._zones[zone_id]
