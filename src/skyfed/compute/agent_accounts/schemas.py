"""API shapes for agent accounts."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from skyfed.identity.schemas import NewPassword
from skyfed.schema_types import HostPattern, Name, Strict

MAX_PATTERNS = 1000
MAX_HOSTS = 1_000_000
Patterns = list[HostPattern]


class AgentCreate(Strict):
    name: Name  # the agent's name is its account's user name
    password: NewPassword
    # Host names, or name prefixes ending in one '*' ("eu-dc1-*"); "*" is every host.
    hosts: Patterns = Field(max_length=MAX_PATTERNS)
    max_hosts: int = Field(default=1000, ge=0, le=MAX_HOSTS)


class AgentUpdate(Strict):
    """Fields left out stay as they are. Hosts the new patterns do not cover are released."""

    hosts: Patterns | None = Field(default=None, max_length=MAX_PATTERNS)
    max_hosts: int | None = Field(default=None, ge=0, le=MAX_HOSTS)
    password: NewPassword | None = None  # every token of the agent dies with the old one


class AgentOut(BaseModel):
    name: str
    user_id: str
    hosts: list[str]
    max_hosts: int
    # Made from the zone's settings (agent_username, agent_hosts): change it there.
    configured: bool
    carried: int  # hosts it carries now
    pending_commands: int  # commands it has not answered yet
    created_at: datetime
    updated_at: datetime


class AgentList(BaseModel):
    agents: list[AgentOut]
