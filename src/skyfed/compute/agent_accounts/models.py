"""An agent's grant: which hosts the agent account of that name may carry, and how many."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from skyfed.db.base import Base, UTCDateTime, utcnow


class AgentGrant(Base):
    __tablename__ = "agent_grants"

    # The agent's name, which is its account's user name.
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The account goes, its grant goes (agents are deleted through /v1/agents, which
    # also releases their hosts; this keeps a grant from outliving its account anyway).
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    hosts: Mapped[list[str]] = mapped_column(JSON, default=list)  # patterns (hosts/grants.py)
    max_hosts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
