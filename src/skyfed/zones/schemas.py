"""API shapes for zones."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    field_validator,
)

from skyfed.errors import BadRequest
from skyfed.schema_types import Key, Name, Secret, Strict, Text64, Text255


def _usable_url(url: str) -> str:
    """A URL both the allowed-hosts check (urllib) and the client (httpx) can read."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises unless the port is a number in 0-65535
        _ = httpx.URL(url).host  # decodes an IDNA host, which may fail
    except (ValueError, httpx.InvalidURL) as exc:
        raise ValueError(f"not a usable URL: {exc}") from None
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if "@" in parts.netloc:
        raise ValueError("give credentials as username/password, not in the URL")
    return url


Url = Annotated[
    str,
    StringConstraints(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", max_length=2048),
    AfterValidator(_usable_url),
]


def _usable_bus_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"not a usable broker URL: {exc}") from None
    if not parts.hostname:
        raise ValueError("the broker URL has no host")
    return url


# A RabbitMQ broker; unlike an API URL it may carry the broker's user and password.
BusUrl = Annotated[
    str,
    StringConstraints(pattern=r"^amqps?://[^\s/?#]+(/[^\s?#]*)?(\?[^\s#]*)?$", max_length=2048),
    AfterValidator(_usable_bus_url),
]
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,255}$")]
Transport = Literal["http", "amqp"]
Offset = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Scale = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
ZoneState = Literal["active", "offline"]


class ZoneCreate(Strict):
    name: Name
    api_url: Url
    username: Text64
    password: Secret
    weight_offset: Offset = 0.0
    weight_scale: Scale = 1.0
    labels: dict[Key, Text255] = Field(default_factory=dict, max_length=64)
    # How the parent calls the child: its API over HTTP, or RPC over the child's broker
    # (`bus_url`, queue `bus_queue`, by default `skyfed.zone.<name>`).
    transport: Transport = "http"
    bus_url: BusUrl | None = None
    bus_queue: QueueName | None = None

    @field_validator("api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


class ZoneUpdate(Strict):
    name: Name | None = None
    api_url: Url | None = None
    username: Text64 | None = None
    password: Secret | None = None
    weight_offset: Offset | None = None
    weight_scale: Scale | None = None
    labels: dict[Key, Text255] | None = Field(default=None, max_length=64)
    transport: Transport | None = None
    bus_url: BusUrl | None = None
    bus_queue: QueueName | None = None  # null: back to the default, skyfed.zone.<name>

    @field_validator("api_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value is not None else None


_BAD_BUS = "invalid_transport"


def check_bus(transport: str, bus_url: str | None, bus_queue: str | None) -> None:
    """A child over AMQP needs its broker; one over HTTP must not be given one."""
    if transport == "amqp" and bus_url is None:
        raise BadRequest("transport 'amqp' needs bus_url, the child's broker", code=_BAD_BUS)
    if transport == "http" and (bus_url is not None or bus_queue is not None):
        raise BadRequest("bus_url and bus_queue are for transport 'amqp'", code=_BAD_BUS)


class ZoneOut(BaseModel):
    id: str
    name: str
    api_url: str
    username: str
    transport: str
    bus_url: str | None = Field(validation_alias="bus_endpoint")  # without its credentials
    bus_queue: str | None
    weight_offset: float
    weight_scale: float
    labels: dict[str, str]
    state: ZoneState
    last_seen: datetime | None
    failures: int
    created_at: datetime
    updated_at: datetime


class ZoneDetail(ZoneOut):
    remote_id: str | None
    remote_name: str | None
    last_error: str
    capabilities: dict[str, Any]
    summary: dict[str, Any]


class ZoneList(BaseModel):
    zones: list[ZoneOut]


class ChildBrief(BaseModel):
    id: str
    name: str
    state: ZoneState
    hosts: int


class ZoneSelf(BaseModel):
    id: str
    name: str
    capabilities: dict[str, Any]
    # This zone's own hosts merged with every active child's subtree.
    summary: dict[str, Any]
    # Zones below out of reach now (paths from here) and what they held when last seen.
    unreachable: dict[str, Any] | None = None
    children: list[ChildBrief]
    generated_at: datetime
