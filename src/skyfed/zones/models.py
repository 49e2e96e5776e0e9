"""Zone tables: this zone's own identity, the child zones it routes to, the location index."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from skyfed.db.base import Base, UTCDateTime, new_id, utcnow


class ZoneIdentity(Base):
    """One row: the id this zone keeps for life, so parents can tell zones apart."""

    __tablename__ = "zone_identity"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChildZone(Base):
    __tablename__ = "child_zones"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    api_url: Mapped[str] = mapped_column(String(2048))
    username: Mapped[str] = mapped_column(String(64))
    # The child's password, encrypted with the zone's vault key; never returned.
    password_secret: Mapped[bytes] = mapped_column(LargeBinary)
    transport: Mapped[str] = mapped_column(String(16), default="http")
    # For transport "amqp": the child's broker URL (it holds the broker's credentials,
    # so it is kept encrypted), the same URL without them for display, and the queue.
    bus_url_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    bus_endpoint: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    bus_queue: Mapped[str | None] = mapped_column(String(255), nullable=True)
    weight_offset: Mapped[float] = mapped_column(Float, default=0.0)
    weight_scale: Mapped[float] = mapped_column(Float, default=1.0)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

    # What the last polls found.
    remote_id: Mapped[str | None] = mapped_column(String(36), unique=True, nullable=True)
    remote_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(String(512), default="")
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Location(Base):
    """The location index: which child zone, or which local host, holds a resource.

    Every feature records its resources here (`resource_type` names the kind: server,
    container, volume...), so requests follow it to the zone that holds one.
    """

    __tablename__ = "locations"
    __table_args__ = (Index("ix_locations_project", "project_id", "kind", "target"),)

    resource_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))  # "zone" (a child's id) or "host" (a name)
    target: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
