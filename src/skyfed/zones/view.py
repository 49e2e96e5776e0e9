"""This zone's picture of its subtree: its own hosts merged with its active children.

Kept in memory and rebuilt at most every `max_age` seconds (sooner when the set
of hosts, an admin's choice or a child's state changes), so a parent's poll or a
placement decision costs a dictionary lookup, not a pass over every host.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from skyfed.compute.hosts.registry import HostRegistry
from skyfed.zones.models import ChildZone
from skyfed.zones.summary import FlavorLike, Summary, SummaryError, summarize_hosts


@dataclass(slots=True)
class ChildSnapshot:
    id: str
    name: str
    state: str
    summary: Summary
    capabilities: dict[str, Any] = field(default_factory=dict)
    weight_offset: float = 0.0
    weight_scale: float = 1.0
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state == "active"


def snapshot_of(child: ChildZone, summary: Summary | None = None) -> ChildSnapshot:
    """A child row as the view keeps it (`summary` spares re-reading the row's JSON)."""
    if summary is None:
        try:
            summary = Summary.from_dict(child.summary or {})
        except SummaryError:
            summary = Summary()
    return ChildSnapshot(
        id=child.id,
        name=child.name,
        state=child.state,
        summary=summary,
        capabilities=dict(child.capabilities or {}),
        weight_offset=child.weight_offset,
        weight_scale=child.weight_scale,
        labels=dict(child.labels or {}),
    )


class ZoneView:
    def __init__(
        self,
        hosts: HostRegistry,
        flavors: Sequence[FlavorLike],
        max_age: float = 1.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.hosts = hosts
        self.flavors = list(flavors)
        self.max_age = max_age
        self.clock = clock
        self.children: dict[str, ChildSnapshot] = {}
        self._put_at: dict[str, float] = {}
        self._children_version = 0
        self._cached: tuple[tuple[int, int], float, Summary, datetime] | None = None

    @property
    def children_version(self) -> int:
        """Changes whenever a child is put (each poll's answer) or dropped."""
        return self._children_version

    def put_child(self, child: ChildSnapshot) -> None:
        self.children[child.id] = child
        self._put_at[child.id] = self.clock()
        self._children_version += 1

    def drop_child(self, child_id: str) -> None:
        self._put_at.pop(child_id, None)
        if self.children.pop(child_id, None) is not None:
            self._children_version += 1

    def retain(self, child_ids: set[str], read_at: float) -> None:
        """Drop children the database no longer holds, as read at `read_at` (clock time).

        A child put after that read (just added here) is kept: the read predates it.
        """
        for child_id in list(self.children):
            if child_id not in child_ids and self._put_at.get(child_id, 0.0) <= read_at:
                self.drop_child(child_id)

    def local_summary(self) -> Summary:
        summary = summarize_hosts(self.hosts.online(), self.flavors)
        summary.zones = 1
        return summary

    def summary(self) -> tuple[Summary, datetime]:
        """The subtree summary and when it was built."""
        key = (self.hosts.version, self._children_version)
        now = self.clock()
        cached = self._cached
        if cached is not None and cached[0] == key and now - cached[1] < self.max_age:
            return cached[2], cached[3]
        summary = self.local_summary()
        for child in self.children.values():
            if child.active:
                summary = summary.merge(child.summary)
        built_at = datetime.now(UTC)
        self._cached = (key, now, summary, built_at)
        return summary, built_at
