"""What is persisted about hosts: that an admin disabled one, and each host's last beat."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from skyfed.db.base import Base, UTCDateTime, utcnow


class DisabledHost(Base):
    __tablename__ = "disabled_hosts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(255), default="")
    disabled_by: Mapped[str] = mapped_column(String(64), default="")
    disabled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HostBeat(Base):
    """A host's last beat, shared by every process of the zone (see sharing.py)."""

    __tablename__ = "host_beats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The agent carrying the host (hosts/carriers.py): set by the first beat that names
    # one, kept until an admin releases the host or it is forgotten.
    agent: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(BigInteger)
    disk_gb: Mapped[int] = mapped_column(BigInteger)
    used_vcpus: Mapped[int] = mapped_column(Integer)
    used_ram_mb: Mapped[int] = mapped_column(BigInteger)
    used_disk_gb: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
