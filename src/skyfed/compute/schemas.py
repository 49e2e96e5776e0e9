"""API shapes for flavors, servers, actions, scheduler explanations and agents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from skyfed.compute.metadata import check_metadata
from skyfed.compute.process_spec import ProcessSpec, ProcessSpecError
from skyfed.schema_types import NAME_MAX, PATH_PATTERN, Name, Strict, Text255
from skyfed.zones.capabilities import CapabilityError, parse_constraints

Path = Annotated[str, StringConstraints(pattern=PATH_PATTERN)]
ServerId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]
# A W3C trace context header value (version 00).
TraceParent = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
]
ConstraintValue = str | int | float | list[str | int | float]


class FlavorCreate(Strict):
    name: Name
    vcpus: int = Field(ge=1, le=4096)
    ram_mb: int = Field(ge=1, le=64 * 1024 * 1024)
    disk_gb: int = Field(default=0, ge=0, le=1024 * 1024)


class FlavorOut(BaseModel):
    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int


class FlavorList(BaseModel):
    flavors: list[FlavorOut]


class GroupIn(Strict):
    name: Name
    policy: Literal["affinity", "anti-affinity"]


class ServerCreate(Strict):
    name: Name
    flavor: Name | None = None
    vcpus: int | None = Field(default=None, ge=1, le=4096)
    ram_mb: int | None = Field(default=None, ge=1, le=64 * 1024 * 1024)
    disk_gb: int | None = Field(default=None, ge=0, le=1024 * 1024)
    constraints: dict[str, ConstraintValue] = Field(default_factory=dict, max_length=64)
    group: GroupIn | None = None
    # Zone paths below the zone receiving the request: "eu/eu-dc1".
    within: Path | None = None
    avoid: list[Path] = Field(default_factory=list, max_length=32)
    count: int = Field(default=1, ge=1, le=1000)
    metadata: dict[str, Any] = Field(default_factory=dict, max_length=32)

    # Set only by a parent zone passing a request down (its service account).
    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")] | None = None
    reservation_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")] | None = None
    created_at: datetime | None = None
    wait: float = Field(default=0.0, ge=0, le=60)

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            parse_constraints(value)
        except CapabilityError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_metadata(value)
        return value

    @field_validator("created_at", mode="before")
    @classmethod
    def _created_at(cls, value: Any) -> Any:
        # Strict mode takes no strings for datetimes; the wire format is ISO 8601.
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError as exc:
                raise ValueError("created_at must be an ISO 8601 time") from exc
        return value

    @model_validator(mode="after")
    def _shape(self) -> ServerCreate:
        explicit = (self.vcpus, self.ram_mb)
        if self.flavor is None and None in explicit:
            raise ValueError("give a flavor, or vcpus and ram_mb (and optionally disk_gb)")
        explicit_given = any(v is not None for v in (*explicit, self.disk_gb))
        if self.flavor is not None and explicit_given and self.id is None:
            # A parent passes both: the resources, and the flavor name its summaries count.
            raise ValueError("give a flavor or explicit vcpus/ram_mb/disk_gb, not both")
        if self.id is not None and self.count != 1:
            raise ValueError("a request with an id creates one server")
        if self.created_at is not None and self.created_at.tzinfo is None:
            raise ValueError("created_at needs a time zone")
        if self.count > 1 and len(self.name) + len(f"-{self.count}") > NAME_MAX:
            # The servers are named name-1 .. name-count: each must still be a Name.
            raise ValueError(
                f"name is too long for count {self.count}: the servers are named "
                f"name-1 .. name-{self.count}, at most {NAME_MAX} characters each"
            )
        if self.within is not None:
            inside = self.within + "/"
            for path in self.avoid:
                if inside.startswith(path + "/"):
                    raise ValueError(f"within '{self.within}' lies in avoided zone '{path}'")
        if "process" in self.metadata:  # (a process host runs it: refuse a bad one now)
            try:
                ProcessSpec.parse(self.name, {"metadata": self.metadata})
            except ProcessSpecError as exc:
                raise ValueError(str(exc)) from exc
        return self


class ActionIn(Strict):
    action: Literal["reboot", "stop", "start"]


class LocationOut(BaseModel):
    # Child zone names from the answering zone down to the zone that holds the server.
    path: list[str]
    host: str | None = None  # shown to admins


class ServerOut(BaseModel):
    id: str
    name: str
    project_id: str
    user_id: str
    reservation_id: str
    status: str
    task_state: str | None
    fault: str
    exit_code: int | None
    flavor: str | None
    vcpus: int
    ram_mb: int
    disk_gb: int
    group: GroupIn | None
    metadata: dict[str, Any]
    placement: str
    location: LocationOut
    created_at: datetime
    updated_at: datetime
    launched_at: datetime | None


class ServerBrief(BaseModel):
    id: str
    name: str
    status: str
    placement: str
    fault: str = ""


class ServersCreated(BaseModel):
    reservation_id: str
    servers: list[ServerBrief]


class DelegatedCreates(Strict):
    """Servers a parent passes down to this zone in one request (a parent's service account)."""

    servers: list[ServerCreate] = Field(min_length=1, max_length=500)
    wait: float = Field(default=0.0, ge=0, le=60)  # for each placement here, at most
    # The trace each server's placement continues, by server id: the parent batches
    # the creates of many traces into one request, whose own header names only one.
    traces: dict[Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")], TraceParent] = (
        Field(default_factory=dict, max_length=500)
    )


class DelegatedOutcome(BaseModel):
    """One server's answer: its placement here, or why this zone refused it."""

    server: ServerBrief | None = None
    error: dict[str, Any] | None = None  # the one error shape's inner object, with "status"


class DelegatedCreated(BaseModel):
    results: list[DelegatedOutcome]  # one per server sent, in order


class UnavailableZone(BaseModel):
    zone: str  # a path below the listing zone
    # offline: marked so by its parent's polls, not asked; timed_out: asked, no answer
    # in time; failed: it answered with an error or with something not a page.
    reason: Literal["offline", "timed_out", "failed"]


class ServerList(BaseModel):
    servers: list[dict[str, Any]]
    next_marker: str | None = None
    # Zones whose servers are missing from this page, as paths below this zone...
    unavailable_zones: list[str] = Field(default_factory=list)
    # ...and the same zones with why.
    unavailable: list[UnavailableZone] = Field(default_factory=list)


class ExplainIn(ServerCreate):
    pass


class ZoneLocation(BaseModel):
    id: str
    name: str
    url: str
    path: list[str]


class AgentCommand(BaseModel):
    id: str
    seq: int  # the agent's cursor: poll again with after=seq
    host: str
    server_id: str
    action: str
    server: dict[str, Any]
    # The W3C trace the command continues: the agent's span of it joins the request's.
    traceparent: str | None = None


class AgentCommands(BaseModel):
    commands: list[AgentCommand]


class CommandResultIn(Strict):
    ok: bool
    status: str | None = None
    message: Text255 = ""
    exit_code: int | None = None


class CommandResultItem(CommandResultIn):
    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]


class CommandResultsIn(Strict):
    results: list[CommandResultItem] = Field(min_length=1, max_length=1000)


class CommandResultOut(BaseModel):
    id: str
    known: bool


class CommandResultsOut(BaseModel):
    results: list[CommandResultOut]


class AgentEventIn(Strict):
    server_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]
    status: str
    exit_code: int | None = None
    message: Text255 = ""


class AgentEventsIn(Strict):
    events: list[AgentEventIn] = Field(max_length=1000)
