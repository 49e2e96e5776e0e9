"""Compute tables: flavors, servers, host allocations and host commands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from skyfed.db.base import Base, UTCDateTime, new_id, utcnow
from skyfed.zones.locations import LocationIndex

# Where each server is: a child zone or one of this zone's hosts.
SERVERS = LocationIndex("server")


class Flavor(Base):
    __tablename__ = "flavors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Server(Base):
    """A server as this zone knows it; every zone on its path down the tree keeps a row.

    The row of the zone that holds the host is the truth about the server's state;
    a zone above it keeps the request and where it sent it (see `Location`).
    """

    __tablename__ = "servers"
    __table_args__ = (
        Index("ix_servers_project_created", "project_id", "created_at"),
        Index("ix_servers_created", "created_at", "id"),
        Index("ix_servers_group", "project_id", "group_name"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    reservation_id: Mapped[str] = mapped_column(String(36))
    flavor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    constraints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    group_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    group_policy: Mapped[str | None] = mapped_column(String(16), nullable=True)
    within: Mapped[list[str]] = mapped_column(JSON, default=list)
    avoid: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)

    status: Mapped[str] = mapped_column(String(16))
    task_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    fault: Mapped[str] = mapped_column(String(1024), default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)

    # Placement at this zone: pending, placed or failed; what was tried; what is being tried.
    placement: Mapped[str] = mapped_column(String(16), default="pending")
    tried: Mapped[list[str]] = mapped_column(JSON, default=list)
    trying: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # Sent here by a parent zone: a failed placement is the parent's to retry elsewhere.
    delegated: Mapped[bool] = mapped_column(Boolean, default=False)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class HostAllocation(Base):
    """What this zone has placed on a host; claims change it with one conditional UPDATE."""

    __tablename__ = "host_allocations"

    host: Mapped[str] = mapped_column(String(64), primary_key=True)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    ram_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_gb: Mapped[int] = mapped_column(BigInteger, default=0)
    servers: Mapped[int] = mapped_column(Integer, default=0)


class ServerAllocation(Base):
    """One server's claim on one host, so releasing it is exact and happens once."""

    __tablename__ = "server_allocations"

    server_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(64), index=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HostCommand(Base):
    """Work for a host's agent (boot, stop, start, reboot, delete), pending until it answers."""

    __tablename__ = "host_commands"
    __table_args__ = (
        Index("ix_host_commands_agent", "agent", "state", "seq"),
        # A host taken over by another agent takes its pending commands along.
        Index("ix_host_commands_host", "host", "state"),
        UniqueConstraint("origin", name="uq_host_commands_origin"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # A sentinel: inserts of many rows return their seqs in one statement per batch.
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id, insert_sentinel=True)
    # What made it (a task id, say): the same origin never makes two commands.
    origin: Mapped[str] = mapped_column(String(80))
    agent: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(64))
    server_id: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The trace of the task that made it: the agent's run of it joins that trace.
    traceparent: Mapped[str | None] = mapped_column(String(55), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
