"""API shapes of the storage cluster registry (`/v1/storage-clusters`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from skyfed.schema_types import Name, Secret, Strict
from skyfed.zones.schemas import Url

# A skyfed tier (gold, silver) and the backend's storage policy it maps to.
TIER_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
Tier = Annotated[str, StringConstraints(pattern=TIER_PATTERN)]
Policy = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Account = Annotated[str, StringConstraints(pattern=r"^[^\s:\x00]{1,128}(:[^\s:\x00]{1,128})?$")]
Tiers = Annotated[dict[Tier, Policy], Field(min_length=1, max_length=16)]
Capacity = Annotated[int, Field(ge=1, le=1 << 60)]  # bytes, up to an exbibyte
Bandwidth = Annotated[int, Field(ge=0, le=1 << 40)]  # bytes a second, 0: no limit


class StorageClusterCreate(Strict):
    name: Name
    # Swift's v1 auth endpoint of the cluster (…/auth/v1.0).
    auth_url: Url
    # A reseller admin of the cluster (account:user for tempauth), and its key.
    username: Account
    password: Secret
    tiers: Tiers
    capacity_bytes: Capacity
    move_bandwidth: Bandwidth = 0

    @field_validator("auth_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


class StorageClusterUpdate(Strict):
    name: Name | None = None
    auth_url: Url | None = None
    username: Account | None = None
    password: Secret | None = None
    tiers: Tiers | None = None
    capacity_bytes: Capacity | None = None
    move_bandwidth: Bandwidth | None = None

    @field_validator("auth_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value is not None else None


class StorageClusterOut(BaseModel):
    id: str
    name: str
    auth_url: str
    username: str
    tiers: dict[str, str]
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    move_bandwidth: int  # container moves' limit there, bytes a second (0: none)
    draining: bool  # being emptied: nothing new is placed there
    state: str  # up, or down after poll_failures polls in a row failed
    failures: int
    last_error: str
    last_seen: datetime | None
    swift_version: str | None
    created_at: datetime
    updated_at: datetime


class StorageClusterList(BaseModel):
    clusters: list[StorageClusterOut]


class ContainerMoveCreate(Strict):
    # The account: a project's id or name, or its Swift account (AUTH_<id>).
    account: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    container: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    # A storage cluster of the zone (its name or id); the planner's choice when not
    # given, among those offering the tier with room.
    to: Name | None = None
    tier: Tier | None = None  # its own when not given

    @field_validator("container")
    @classmethod
    def _no_slash(cls, value: str) -> str:
        if "/" in value or "\x00" in value:
            raise ValueError("a container's name holds no '/' nor NUL")
        return value


class ContainerMoveOut(BaseModel):
    id: str
    account: str  # AUTH_<project id>
    container: str
    source: str  # the storage clusters' names (their ids if deleted since)
    target: str
    tier_from: str
    tier_to: str  # another than tier_from: the move changes the container's tier
    # copying, cleaning, done; cancelling, cancel_cleaning, cancelled
    state: str
    task_id: str
    objects_total: int  # where it was, when the move began
    bytes_total: int
    objects_copied: int
    bytes_copied: int
    objects_skipped: int  # there already, or newer there
    objects_cleaned: int  # deleted where it was, once it switched over
    error: str  # the last attempt's, if it failed
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ContainerMoveList(BaseModel):
    moves: list[ContainerMoveOut]


Parallel = Annotated[int, Field(ge=1, le=32)]


class DrainCreate(Strict):
    parallel: Parallel = 2  # containers moved at once


class DrainOut(BaseModel):
    cluster: str
    draining: bool  # placed nothing new; its containers are moving off
    containers_left: int  # on it, not moving yet
    moving: int  # moving off it now
    task_id: str | None  # the drain's task (the last one asked)


class RebalanceCreate(Strict):
    # Clusters filled above this share of their capacity give containers to those below.
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.8
    tier: Tier | None = None  # only this tier's containers (all tiers by default)
    parallel: Parallel = 2
