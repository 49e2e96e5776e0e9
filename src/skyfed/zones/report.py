"""What a zone says of itself when its parent polls it (`GET /v1/zone`): one typed
report, built by the zone that answers and read back, checked, by its parent."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from skyfed.schema_types import NAME_PATTERN
from skyfed.zones.capabilities import CapabilityError, check_capabilities
from skyfed.zones.summary import Summary, SummaryError
from skyfed.zones.view import NOTHING_UNREACHABLE, Unreachable


@dataclass(frozen=True, slots=True)
class ChildState:
    """One child as its parent reports it (for people: the parent's own view of it)."""

    id: str
    name: str
    state: str
    hosts: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "state": self.state, "hosts": self.hosts}


@dataclass(frozen=True, slots=True)
class ZoneReport:
    id: str
    name: str
    capabilities: dict[str, Any]
    # This zone's own resources merged with every active child's subtree.
    summary: Summary
    # Zones below out of reach now (paths from here) and what they held when last seen.
    unreachable: Unreachable = NOTHING_UNREACHABLE
    children: tuple[ChildState, ...] = ()
    generated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "capabilities": self.capabilities,
            "summary": self.summary.to_dict(),
            "unreachable": self.unreachable.to_dict() if self.unreachable.paths else None,
            "children": [c.to_dict() for c in self.children],
            "generated_at": self.generated_at.isoformat() if self.generated_at else None,
        }

    @classmethod
    def from_dict(cls, body: Any) -> ZoneReport:
        """A child's report, checked (it may be broken or hostile); SummaryError unless it
        is well formed. What a parent does not route by (children, time) is not kept."""
        if not isinstance(body, dict):
            raise SummaryError("zone report is not an object")
        zone_id, name, caps = body.get("id"), body.get("name"), body.get("capabilities", {})
        try:
            zone_id = str(uuid.UUID(zone_id))
        except (TypeError, ValueError, AttributeError) as exc:
            raise SummaryError("zone report has no valid id") from exc
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            raise SummaryError("zone report has no valid name")
        if not isinstance(caps, dict):
            raise SummaryError("zone report capabilities are not an object")
        try:
            caps = check_capabilities(caps)
        except CapabilityError as exc:
            raise SummaryError(f"zone report capabilities: {exc}") from exc
        return cls(
            zone_id,
            name,
            caps,
            Summary.from_dict(body.get("summary")),
            Unreachable.from_dict(body.get("unreachable")),  # (absent from older zones)
        )
