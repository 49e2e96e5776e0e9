"""Claims on local hosts: atomic in the database, so concurrent workers never overcommit.

A claim is one conditional UPDATE of the host's allocation row (it locks the row
on PostgreSQL; SQLite serialises writers): it succeeds only if the server still
fits in what the host offers. Anti-affinity is checked under that same lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.compute.models import HostAllocation, Server, ServerAllocation


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a host offers skyfed's servers: its total minus what other workloads use."""

    vcpus: int
    ram_mb: int
    disk_gb: int


_alloc = HostAllocation.__table__
# Built once: building these per claim cost more CPU than running them.
_ENSURE_ROW = {
    postgres: (pg_insert if postgres else sqlite_insert)(_alloc)
    .values(host=bindparam("b_host"))
    .on_conflict_do_nothing()
    for postgres in (False, True)
}
_GROW = (
    update(_alloc)
    .where(
        _alloc.c.host == bindparam("b_host"),
        _alloc.c.vcpus + bindparam("b_vcpus") <= bindparam("b_cap_vcpus"),
        _alloc.c.ram_mb + bindparam("b_ram_mb") <= bindparam("b_cap_ram_mb"),
        _alloc.c.disk_gb + bindparam("b_disk_gb") <= bindparam("b_cap_disk_gb"),
    )
    .values(
        vcpus=_alloc.c.vcpus + bindparam("b_vcpus"),
        ram_mb=_alloc.c.ram_mb + bindparam("b_ram_mb"),
        disk_gb=_alloc.c.disk_gb + bindparam("b_disk_gb"),
        servers=_alloc.c.servers + 1,
    )
)


@dataclass(frozen=True, slots=True)
class Claim:
    ok: bool
    reason: str = ""


async def claim(session: AsyncSession, server: Server, host: str, capacity: Capacity) -> Claim:
    """Claim `server`'s resources on `host` inside the caller's transaction.

    Idempotent: a server that already holds a claim on this host keeps it. On a
    refusal nothing was changed (the work happens in a savepoint).
    """
    existing = await session.get(ServerAllocation, server.id)
    if existing is not None:
        if existing.host == host:
            return Claim(True)
        return Claim(False, f"server already holds resources on {existing.host}")
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    need = {
        "b_host": host,
        "b_vcpus": server.vcpus,
        "b_ram_mb": server.ram_mb,
        "b_disk_gb": server.disk_gb,
        "b_cap_vcpus": capacity.vcpus,
        "b_cap_ram_mb": capacity.ram_mb,
        "b_cap_disk_gb": capacity.disk_gb,
    }
    async with session.begin_nested() as savepoint:
        await session.execute(_ENSURE_ROW[dialect == "postgresql"], {"b_host": host})
        result = await session.execute(_GROW, need)
        if int(getattr(result, "rowcount", 0) or 0) != 1:
            await savepoint.rollback()
            return Claim(
                False,
                f"{host} has no room left for {server.vcpus} vcpus, "
                f"{server.ram_mb} MB RAM, {server.disk_gb} GB disk",
            )
        if server.group_policy == "anti-affinity" and server.group_name:
            neighbours = await session.scalar(
                select(func.count())
                .select_from(ServerAllocation)
                .join(Server, Server.id == ServerAllocation.server_id)
                .where(
                    ServerAllocation.host == host,
                    Server.project_id == server.project_id,
                    Server.group_name == server.group_name,
                    Server.id != server.id,
                )
            )
            if neighbours:
                await savepoint.rollback()
                return Claim(False, f"{host} already runs a member of group '{server.group_name}'")
        session.add(
            ServerAllocation(
                server_id=server.id,
                host=host,
                vcpus=server.vcpus,
                ram_mb=server.ram_mb,
                disk_gb=server.disk_gb,
            )
        )
    return Claim(True)


async def release(session: AsyncSession, server_id: str) -> str | None:
    """Give back a server's claim (once); returns the host it was on."""
    allocation = await session.get(ServerAllocation, server_id)
    if allocation is None:
        return None
    await session.execute(
        update(HostAllocation)
        .where(HostAllocation.host == allocation.host)
        .values(
            vcpus=HostAllocation.vcpus - allocation.vcpus,
            ram_mb=HostAllocation.ram_mb - allocation.ram_mb,
            disk_gb=HostAllocation.disk_gb - allocation.disk_gb,
            servers=HostAllocation.servers - 1,
        )
    )
    await session.delete(allocation)
    return allocation.host


async def load(session: AsyncSession) -> dict[str, tuple[int, int, int]]:
    rows = (await session.scalars(select(HostAllocation))).all()
    return {row.host: (row.vcpus, row.ram_mb, row.disk_gb) for row in rows}
