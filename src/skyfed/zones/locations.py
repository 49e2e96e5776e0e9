"""The location index, for one kind of resource: where each one is (a child zone or a
local host), recorded when it is placed and followed by every later request.

Owned by zones/ and written once; a feature keeps one `LocationIndex` per resource
kind it places (compute: servers; objects: containers; dr: volumes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from skyfed.errors import NotFound
from skyfed.zones.models import ChildZone, Location

ZONE = "zone"  # the resource is in a child zone (target: the child's id)
HOST = "host"  # on one of this zone's own hosts (target: the host's name)


@dataclass(frozen=True, slots=True)
class LocationIndex:
    resource_type: str  # "server", "container", "volume"...

    async def find(self, session: AsyncSession, resource_id: str) -> Location | None:
        return await session.get(Location, (self.resource_type, resource_id))

    def entry(self, resource_id: str, project_id: str, kind: str, target: str) -> Location:
        """The entry that records a resource placed in `target` (add it to a session)."""
        return Location(
            resource_type=self.resource_type,
            resource_id=resource_id,
            project_id=project_id,
            kind=kind,
            target=target,
        )

    async def forget(self, session: AsyncSession, resource_id: str) -> None:
        await session.execute(
            delete(Location).where(
                Location.resource_type == self.resource_type, Location.resource_id == resource_id
            )
        )

    def joined(self, resource_id: InstrumentedAttribute[str]) -> ColumnElement[bool]:
        """The condition that joins the feature's table (by its id column) to its entries."""
        return and_(
            Location.resource_type == self.resource_type, Location.resource_id == resource_id
        )

    def in_child(self, child_id: str) -> Select[tuple[str]]:
        """The ids of this kind of resource that the index places in a child."""
        return select(Location.resource_id).where(
            Location.resource_type == self.resource_type,
            Location.kind == ZONE,
            Location.target == child_id,
        )

    async def targets(
        self, session: AsyncSession, project_id: str
    ) -> Sequence[tuple[str, str, int]]:
        """Where a project's resources of this kind are: (kind, target, how many)."""
        rows = await session.execute(
            select(Location.kind, Location.target, func.count())
            .where(Location.resource_type == self.resource_type, Location.project_id == project_id)
            .group_by(Location.kind, Location.target)
        )
        return [(kind, target, count) for kind, target, count in rows]


async def child_of(session: AsyncSession, location: Location) -> ChildZone:
    """The child zone an entry points to; 404 once that child was removed."""
    child = await session.get(ChildZone, location.target)
    if child is None:
        raise NotFound(
            f"the zone that held this {location.resource_type} is no longer registered here"
        )
    return child
