"""Host beats shared through the database, so every process of a zone knows every host.

Each process writes the beats it received (in one batch a second) and reads the
ones the others wrote. A host still needs no registration: its row is only its
last beat, and a host silent past `host_forget_after` is deleted.

The row also says which agent carries the host, and that is the zone's truth: a
write naming another agent than the row does is refused (two processes took
beats of two agents for one new host within a second: the first written wins),
and this process then takes the row's agent for the host (carriers.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from skyfed.compute.hosts import carriers
from skyfed.compute.hosts.models import HostBeat
from skyfed.compute.hosts.registry import HostRegistry, Resources
from skyfed.db.base import utcnow
from skyfed.db.engine import Database


class HostSharing:
    def __init__(self, db: Database, registry: HostRegistry) -> None:
        self.db = db
        self.registry = registry
        self._read_until: datetime | None = None

    async def share(self) -> int:
        """Write the beats received here since last time; read the others' new ones."""
        written = await self._write()
        await self._read()
        return written

    async def _write(self) -> int:
        names, self.registry.unshared = self.registry.unshared, set()
        rows = []
        for name in names:
            record = self.registry.get(name)
            if record is None:
                continue
            r, u = record.resources, record.used
            rows.append(
                {
                    "name": name,
                    "agent": record.agent,
                    "capabilities": record.capabilities,
                    "vcpus": r.vcpus,
                    "ram_mb": r.ram_mb,
                    "disk_gb": r.disk_gb,
                    "used_vcpus": u.vcpus,
                    "used_ram_mb": u.ram_mb,
                    "used_disk_gb": u.disk_gb,
                    "seen_at": record.seen_at,
                }
            )
        if not rows:
            return 0
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        statement = insert(HostBeat)
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=["name"],
            set_={c: excluded[c] for c in rows[0] if c != "name"},
            where=or_(HostBeat.agent.is_(None), HostBeat.agent == excluded.agent),
        ).returning(HostBeat.name)
        try:
            async with self.db.session() as session:
                written = set((await session.scalars(statement, rows)).all())
                refused = sorted({row["name"] for row in rows} - written)
                holders = await carriers.holders(session, refused) if refused else {}
                await session.commit()
        except Exception:
            self.registry.unshared |= names  # try again next time
            raise
        for name, agent in holders.items():
            self.registry.set_carrier(name, agent)
        return len(written)

    async def _read(self) -> None:
        # A little overlap: a row committed late with an earlier seen_at is not missed.
        since = (
            self._read_until - timedelta(seconds=5)
            if self._read_until is not None
            else datetime(1970, 1, 1, tzinfo=UTC)
        )
        now = utcnow()
        async with self.db.session() as session:
            beats = (await session.scalars(select(HostBeat).where(HostBeat.seen_at > since))).all()
        for beat in beats:
            self.registry.heartbeat(
                beat.name,
                beat.capabilities,
                Resources(beat.vcpus, beat.ram_mb, beat.disk_gb),
                Resources(beat.used_vcpus, beat.used_ram_mb, beat.used_disk_gb),
                beat.agent,
                seen_at=beat.seen_at,
            )
        self._read_until = now

    async def forget(self, older_than: float) -> int:
        cutoff = utcnow() - timedelta(seconds=older_than)
        async with self.db.session() as session:
            result = await session.execute(delete(HostBeat).where(HostBeat.seen_at < cutoff))
            await session.commit()
        return int(getattr(result, "rowcount", 0) or 0)
