"""This zone's picture of its subtree: its own hosts merged with its active children.

Kept in memory and rebuilt at most every `max_age` seconds (sooner when the set
of hosts, an admin's choice or a child's state changes), so a parent's poll or a
placement decision costs a dictionary lookup, not a pass over every host.

Beside it, what lies below out of reach for now (`Unreachable`): offline children
with their last known summaries, and what each active child reports out of reach
below itself. A zone publishes it with its summary, so any zone above can tell a
request no host could ever take ("never", 400) from one only offline zones could
take ("not now", 503), however deep those zones are.
"""

from __future__ import annotations

import re
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from skyfed.schema_types import PATH_PATTERN
from skyfed.zones.models import ChildZone
from skyfed.zones.summary import Summary, SummaryError

# Paths of unreachable zones a zone reports at most: enough to name them, bounded.
MAX_UNREACHABLE_PATHS = 32


@dataclass(frozen=True, slots=True)
class Unreachable:
    """Zones below out of reach now, as paths from the zone reporting them, and what
    their subtrees held when last seen (merged)."""

    paths: tuple[str, ...] = ()
    summary: Summary = field(default_factory=Summary)

    def to_dict(self) -> dict[str, Any]:
        return {"zones": list(self.paths), "summary": self.summary.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> Unreachable:
        """From a child's report (untrusted); SummaryError unless well formed."""
        if data is None:
            return NOTHING_UNREACHABLE
        if not isinstance(data, dict):
            raise SummaryError("unreachable must be an object")
        paths = data.get("zones", [])
        if (
            not isinstance(paths, list)
            or len(paths) > MAX_UNREACHABLE_PATHS
            or not all(isinstance(p, str) and _PATH.fullmatch(p) for p in paths)
        ):
            raise SummaryError("unreachable.zones must be a short list of zone paths")
        return cls(tuple(paths), Summary.from_dict(data.get("summary", {})))


NOTHING_UNREACHABLE = Unreachable()
_PATH = re.compile(PATH_PATTERN)


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
    # What the child last reported out of reach below itself (in memory only: a
    # restarted zone learns it again at the next poll).
    unreachable: Unreachable = NOTHING_UNREACHABLE

    @property
    def active(self) -> bool:
        return self.state == "active"


def snapshot_of(
    child: ChildZone,
    summary: Summary | None = None,
    unreachable: Unreachable = NOTHING_UNREACHABLE,
) -> ChildSnapshot:
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
        unreachable=unreachable,
    )


class LocalSection(Protocol):
    """What a feature adds to the summary of this zone's own resources (compute: its
    hosts)."""

    @property
    def version(self) -> Hashable:
        """Changes whenever `summary()` may have changed."""
        ...

    def summary(self) -> Summary: ...


class ZoneView:
    def __init__(self, max_age: float = 1.0, clock: Any = time.monotonic) -> None:
        self.sections: list[LocalSection] = []
        self.max_age = max_age
        self.clock = clock
        self.children: dict[str, ChildSnapshot] = {}
        self._put_at: dict[str, float] = {}
        self._children_version = 0
        self._cached: tuple[tuple[Hashable, ...], float, Summary, datetime] | None = None

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

    def add_section(self, section: LocalSection) -> None:
        self.sections.append(section)
        self._cached = None

    def local_summary(self) -> Summary:
        summary = Summary.merge_all([section.summary() for section in self.sections])
        summary.zones = 1
        return summary

    def summary(self) -> tuple[Summary, datetime]:
        """The subtree summary and when it was built."""
        key = (*(section.version for section in self.sections), self._children_version)
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

    def unreachable(self) -> Unreachable:
        """The zones below out of reach now (offline children, and what active ones
        report), with the summary of what they held when last seen."""
        paths: list[str] = []
        parts: list[Summary] = []
        for child in sorted(self.children.values(), key=lambda c: c.name):
            below = child.unreachable
            if not child.active:
                paths.append(child.name)
                parts.append(child.summary)
            paths += (f"{child.name}/{p}" for p in below.paths)
            if below.paths:
                parts.append(below.summary)
        if not parts:
            return NOTHING_UNREACHABLE
        return Unreachable(tuple(paths[:MAX_UNREACHABLE_PATHS]), Summary.merge_all(parts))
