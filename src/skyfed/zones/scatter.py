"""Scatter-gather listing over the subtree, for any feature's resources.

A list at a zone asks every child for one page at once (each child does the same
below it), then merges the pages with this zone's own (`listing.merge`). A child
that cannot answer is not an error: the list names it, with why, as a path below
this zone (`Silent`), and its resources are missing from this page: offline (the
poller has marked it so; it is not asked), timed out (asked, no answer in time:
it may be slow rather than gone) or failed (it answered with an error, or with
something that is not a page). What children say of their own silent zones is
passed up, under their names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from skyfed.client import SkyfedError, ZoneUnreachable
from skyfed.db.engine import Database
from skyfed.identity.principal import Principal
from skyfed.transport.base import ZoneRequest
from skyfed.zones.links import ChildLinks
from skyfed.zones.models import ChildZone
from skyfed.zones.view import ChildSnapshot

Reason = Literal["offline", "timed_out", "failed"]
REASONS: tuple[Reason, ...] = ("offline", "timed_out", "failed")


@dataclass(frozen=True, slots=True)
class Silent:
    zone: str  # path below the listing zone
    reason: Reason

    def to_dict(self) -> dict[str, str]:
        return {"zone": self.zone, "reason": self.reason}


@dataclass(slots=True)
class Page:
    items: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False  # the zone had items beyond this page
    silent: list[Silent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """The same list asked of every child: `GET path?params`, the answer's items under
    `items`, as `principal`, within `timeout` seconds."""

    path: str
    items: str
    params: dict[str, Any]
    principal: Principal
    timeout: float


class Scatter:
    def __init__(self, links: ChildLinks, db: Database) -> None:
        self.links = links
        self.db = db

    async def pages(self, children: Sequence[ChildSnapshot], ask: PageRequest) -> list[Page]:
        """One page from each child, in the order given."""
        return list(await asyncio.gather(*(self._page(c, ask) for c in children)))

    async def _page(self, child: ChildSnapshot, ask: PageRequest) -> Page:
        if not child.active:
            return Page(silent=[Silent(child.name, "offline")])
        async with self.db.session() as session:
            row = await session.get(ChildZone, child.id)
        if row is None:  # removed meanwhile: it holds nothing of this zone's any more
            return Page()
        link = await self.links.link_for(row)
        try:
            answer = await link.call(
                ZoneRequest(
                    "GET", ask.path, params=ask.params, principal=ask.principal, timeout=ask.timeout
                )
            )
            return read_page(child.name, answer, ask.items)
        except (SkyfedError, KeyError, TypeError, ValueError) as exc:
            return Page(silent=[Silent(child.name, why_silent(exc))])


def why_silent(exc: Exception) -> Reason:
    """A child asked and not answering with a page: out of time, or failed."""
    return "timed_out" if isinstance(exc, ZoneUnreachable) and exc.timed_out else "failed"


def read_page(name: str, answer: Any, key: str) -> Page:
    """A child's page, its items' paths starting at the child (KeyError/TypeError/
    ValueError when it is not a page)."""
    items = list(answer[key])
    for item in items:
        item["location"]["path"] = [name, *item["location"]["path"]]
    silent = [Silent(f"{name}/{s.zone}", s.reason) for s in _silent_below(answer)]
    return Page(items, answer.get("next_marker") is not None, silent)


def _silent_below(answer: dict[str, Any]) -> list[Silent]:
    detailed = answer.get("unavailable")
    if isinstance(detailed, list):
        return [
            Silent(str(s["zone"]), s["reason"] if s.get("reason") in REASONS else "failed")
            for s in detailed
        ]
    # A zone of an older release names its silent zones without saying why.
    return [Silent(str(zone), "failed") for zone in answer.get("unavailable_zones", [])]
