"""Where containers are, remembered for a moment: the object data path's lookup.

Every object request needs its container's place (a row of `containers`, then its
cluster's): two queries that cost a small request as much CPU as the rest of
skyfed's work on it. The routes record here what they looked up; the fast path
(swift_fast) serves a container's objects from it while the entry is fresh.

This process forgets an entry as soon as it changes the container (a create,
a POST, a DELETE, a write naming objects elsewhere) or its cluster. What another
process of the same zone changes is seen here once the entry is `TTL` seconds
old, the longest that a container deleted and made again elsewhere by that
process can still be looked for where it was (its cluster answers 404 for it).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from skyfed.objects.swift_forward import Upstream

TTL = 2.0
MAX_ENTRIES = 100_000
# Accounts of at most this many containers have their names kept with their holders
# (a listing's page is then cut from memory); larger ones read each page's range.
INDEX_MAX = 50_000
_STATS = ("x-account-", "x-skyfed-")  # a place's counts, and who did not answer below it
K = TypeVar("K")
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """Values kept for `ttl` seconds; all dropped at once should `max_entries` fill."""

    def __init__(self, ttl: float = TTL, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._entries[key]
            return None
        return hit[1]

    def put(self, key: K, value: V, read_at: float | None = None) -> V:
        """`read_at`: when what `value` says was read (its life starts then)."""
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        born = time.monotonic() if read_at is None else read_at
        self._entries[key] = (born + self.ttl, value)
        return value

    def swap(self, key: K, old: V, new: V) -> None:
        """`new` in place of `old` (until the same moment), unless `old` went meanwhile."""
        hit = self._entries.get(key)
        if hit is not None and hit[1] is old:
            self._entries[key] = (hit[0], new)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def forget_where(self, gone: Callable[[V], bool]) -> None:
        self._entries = {k: v for k, v in self._entries.items() if not gone(v[1])}


@dataclass(frozen=True)
class Location:
    # A storage cluster's, or a child zone's (without a caller's headers: the data
    # path adds the caller's identity to each request itself).
    upstream: Upstream
    place_id: str  # the cluster's or the child's id
    foreign_refs: bool  # its objects may name objects elsewhere (swift_refs)


class Locations:
    def __init__(self) -> None:
        self._kept: Expiring[tuple[str, str], Location] = Expiring()

    def get(self, project_id: str, name: str) -> Location | None:
        return self._kept.get((project_id, name))

    def remember(
        self,
        project_id: str,
        name: str,
        upstream: Upstream,
        place_id: str,
        foreign_refs: bool,
        read_at: float | None = None,
    ) -> Location:
        """`read_at`: when the container's row was read: a move begun since is heeded
        within `TTL` of it, however long the request took (objects/move_runner)."""
        location = Location(upstream, place_id, foreign_refs)
        return self._kept.put((project_id, name), location, read_at)

    def forget(self, project_id: str, name: str) -> None:
        self._kept.forget((project_id, name))

    def forget_place(self, place_id: str) -> None:
        """A cluster or a child changed or went: nothing is looked for there from memory."""
        self._kept.forget_where(lambda location: location.place_id == place_id)


# (name, cluster id, child id, tier): a container of an account, as placed.
Placed = tuple[str, str | None, str | None, str]


@dataclass(frozen=True)
class Index:
    """An account's containers in Swift's order (their names' UTF-8 bytes)."""

    names: list[bytes]
    rows: list[Placed]

    @classmethod
    def of(cls, rows: list[Placed]) -> Index:
        ordered = sorted(rows, key=lambda row: row[0].encode("utf-8"))
        return cls([row[0].encode("utf-8") for row in ordered], ordered)

    def between(self, after: str, before: str) -> list[Placed]:
        """Those past `after` and before `before` (both exclusive, "" for no bound)."""
        low = bisect.bisect_right(self.names, after.encode("utf-8")) if after else 0
        high = bisect.bisect_left(self.names, before.encode("utf-8")) if before else None
        return self.rows[low:high]


@dataclass(frozen=True)
class Holders:
    """An account's containers by tier, the places holding them and, for an account
    of at most `INDEX_MAX` containers, their names."""

    tiers: dict[str, int]
    keys: frozenset[str]  # cluster or child ids
    index: Index | None = None

    @property
    def count(self) -> int:
        return sum(self.tiers.values())


class AccountHolders:
    """Which places hold an account's containers, for its listing and HEAD (a
    GROUP BY over all of them otherwise, twice per listing of one page). Forgotten
    here when this process makes or deletes one of the account's containers; the
    zone's other processes' changes show after `TTL` seconds (Swift's own account
    counts lag by its updaters' interval)."""

    def __init__(self) -> None:
        self._kept: Expiring[str, Holders] = Expiring(max_entries=10_000)

    def get(self, project_id: str) -> Holders | None:
        return self._kept.get(project_id)

    def remember(self, project_id: str, tiers: dict[str, int], keys: frozenset[str]) -> Holders:
        return self._kept.put(project_id, Holders(dict(tiers), keys))

    def indexed(self, project_id: str, holders: Holders, index: Index) -> None:
        """`holders` with the account's names, kept unless forgotten meanwhile."""
        self._kept.swap(project_id, holders, replace(holders, index=index))

    def forget(self, project_id: str) -> None:
        self._kept.forget(project_id)


class HolderStats:
    """What each place last said of an account's objects and bytes (its account
    headers), for `TTL` seconds: a listing's page that holds none of a place's
    containers takes them from here instead of asking it again."""

    def __init__(self) -> None:
        self._kept: Expiring[tuple[str, str], dict[str, str]] = Expiring()

    def get(self, project_id: str, key: str) -> dict[str, str] | None:
        return self._kept.get((project_id, key))

    def remember(self, project_id: str, key: str, headers: Mapping[str, str]) -> None:
        kept = {k.lower(): v for k, v in headers.items() if k.lower().startswith(_STATS)}
        self._kept.put((project_id, key), kept)
