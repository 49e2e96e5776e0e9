"""Claims on local hosts: atomic in the database, so concurrent workers never overcommit.

A claim is one conditional UPDATE of the host's allocation row (it locks the row
on PostgreSQL; SQLite serialises writers): it succeeds only if the server still
fits in what the host offers. Anti-affinity is checked under that same lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


async def claim_many(
    session: AsyncSession, wanted: Sequence[tuple[Server, str, Capacity]]
) -> list[Claim]:
    """Claim each server's resources on its host inside the caller's transaction, in
    the order given (the caller sorts by host, so two processes claiming on PostgreSQL
    lock rows in one order and never deadlock).

    Idempotent: a server that already holds a claim on its host keeps it. A refused
    claim changed nothing: the conditional UPDATE matched no row, or (anti-affinity)
    its savepoint was rolled back. Call it with autoflush off: what it adds is written
    with the rest of the transaction, in batches, not statement by statement.
    """
    if not wanted:
        return []
    ids = [server.id for server, _, _ in wanted]
    held = {
        allocation.server_id: allocation.host
        for allocation in await session.scalars(
            select(ServerAllocation).where(ServerAllocation.server_id.in_(ids))
        )
    }
    postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
    hosts = sorted({host for server, host, _ in wanted if server.id not in held})
    if hosts:
        await session.execute(_ENSURE_ROW[postgres], [{"b_host": host} for host in hosts])
    claims: list[Claim] = []
    for server, host, capacity in wanted:
        holder = held.get(server.id)
        if holder is not None:
            reason = "" if holder == host else f"server already holds resources on {holder}"
            claims.append(Claim(holder == host, reason))
            continue
        need = {
            "b_host": host,
            "b_vcpus": server.vcpus,
            "b_ram_mb": server.ram_mb,
            "b_disk_gb": server.disk_gb,
            "b_cap_vcpus": capacity.vcpus,
            "b_cap_ram_mb": capacity.ram_mb,
            "b_cap_disk_gb": capacity.disk_gb,
        }
        if server.group_policy == "anti-affinity" and server.group_name:
            claim = await _claim_apart(session, server, host, need)
        else:
            result = await session.execute(_GROW, need)
            claim = Claim(True) if _one_row(result) else _no_room(server, host)
        if claim.ok:
            session.add(
                ServerAllocation(
                    server_id=server.id,
                    host=host,
                    vcpus=server.vcpus,
                    ram_mb=server.ram_mb,
                    disk_gb=server.disk_gb,
                )
            )
            held[server.id] = host
        claims.append(claim)
    return claims


async def _claim_apart(
    session: AsyncSession, server: Server, host: str, need: dict[str, Any]
) -> Claim:
    """An anti-affinity member's claim: grow the host's row (locking it on PostgreSQL),
    then count the group's members there under that lock; undo the growth if any."""
    await session.flush()  # members claimed earlier in this transaction must count
    async with session.begin_nested() as savepoint:
        if not _one_row(await session.execute(_GROW, need)):
            await savepoint.rollback()
            return _no_room(server, host)
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
    return Claim(True)


def _one_row(result: Any) -> bool:
    return int(getattr(result, "rowcount", 0) or 0) == 1


def _no_room(server: Server, host: str) -> Claim:
    return Claim(
        False,
        f"{host} has no room left for {server.vcpus} vcpus, "
        f"{server.ram_mb} MB RAM, {server.disk_gb} GB disk",
    )


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


async def load(
    session: AsyncSession, hosts: Sequence[str] | None = None
) -> dict[str, tuple[int, int, int]]:
    """What the zone's servers hold on each host (or on the hosts named)."""
    query = select(HostAllocation)
    if hosts is not None:
        query = query.where(HostAllocation.host.in_(hosts))
    rows = (await session.scalars(query)).all()
    return {row.host: (row.vcpus, row.ram_mb, row.disk_gb) for row in rows}
