"""API shapes for hosts and their heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from skyfed.schema_types import Name, Strict, Text255
from skyfed.zones.capabilities import CapabilityError, check_capabilities
from skyfed.zones.summary import RESERVED_KEYS

CapabilityMap = dict[str, str | int | float]


class ResourcesIn(Strict):
    vcpus: int = Field(default=0, ge=0, le=1_000_000)
    ram_mb: int = Field(default=0, ge=0, le=1 << 40)
    disk_gb: int = Field(default=0, ge=0, le=1 << 40)


class HeartbeatIn(Strict):
    capabilities: CapabilityMap = Field(default_factory=dict, max_length=128)
    resources: ResourcesIn = Field(default_factory=ResourcesIn)
    used: ResourcesIn = Field(default_factory=ResourcesIn)
    # The agent that carries this host (where the zone sends its commands): set from
    # the caller; an agent may repeat its own name, never another's (admission.py).
    agent: Name | None = None

    @field_validator("capabilities", mode="before")
    @classmethod
    def _capabilities(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value  # pydantic reports the type error
        try:
            caps = check_capabilities(value)
        except CapabilityError as exc:
            raise ValueError(str(exc)) from exc
        reserved = sorted(RESERVED_KEYS & caps.keys())
        if reserved:
            raise ValueError(f"{reserved} are set from resources/used, not capabilities")
        return caps


class NamedHeartbeatIn(HeartbeatIn):
    name: Name


class HeartbeatBatchIn(Strict):
    hosts: list[NamedHeartbeatIn] = Field(max_length=5000)


class HeartbeatBatchOut(BaseModel):
    accepted: int
    # Hosts of this batch an admin disabled: the agent should not start work on them.
    disabled: list[str]


class ResourcesOut(BaseModel):
    vcpus: int
    ram_mb: int
    disk_gb: int


class HostOut(BaseModel):
    name: str
    state: Literal["online", "offline"]
    disabled: bool
    disabled_reason: str
    capabilities: CapabilityMap
    resources: ResourcesOut
    used: ResourcesOut  # by other work on the host, as its agent reports
    allocated: ResourcesOut  # by this zone's servers
    free: ResourcesOut
    agent: str | None = None
    last_seen: datetime | None


class HostList(BaseModel):
    hosts: list[HostOut]
    next_marker: str | None = None


class ReleaseOut(BaseModel):
    name: str
    # The agent that carried the host until now (None: nobody did).
    released_from: str | None


class DisableIn(Strict):
    reason: Text255 = ""
