"""What `SkyfedClient` returns: a zone's answers as typed models, read leniently.

These are the client's own models, not the server's API schemas (`zones/schemas.py`,
`compute/schemas.py`, `compute/hosts/schemas.py`, `compute/agent_accounts/schemas.py`,
`identity/schemas.py`, `tasks/api.py`): those validate input strictly and pull in the
server's modules (FastAPI, capability parsing), while a client is used by parent zones,
the CLI and agents and talks to zones of other versions. So here:

- a field a newer zone adds is ignored (`extra="ignore"`), and a field an older zone
  does not send yet has a default where one makes sense;
- states, statuses and reasons are plain strings (a newer zone may have more of them);
- models are built on first use (`defer_build`), and `client.py` imports this module
  only when a typed method is first called: an agent calls one (`heartbeat_batch`), and
  the logins the client makes on its own read only the token, with no model.

`model_dump(mode="json")` gives back the zone's answer as it was sent (same fields, same
order), which is what the CLI prints with `--json`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActionAccepted",
    "AgentAccount",
    "Caller",
    "ChildZone",
    "ChildZoneDetail",
    "ChildZoneState",
    "Flavor",
    "HeartbeatsTaken",
    "Host",
    "HostPage",
    "HostReleased",
    "HostResources",
    "Location",
    "Project",
    "Server",
    "ServerAccepted",
    "ServerBrief",
    "ServerGroup",
    "ServerPage",
    "ServersCreated",
    "Task",
    "TaskPage",
    "Token",
    "UnavailableZone",
    "User",
    "WireModel",
    "Zone",
    "ZoneLocation",
]


class WireModel(BaseModel):
    """A zone's answer: unknown fields ignored, validated on first use."""

    model_config = ConfigDict(extra="ignore", defer_build=True)


# -- zones ---------------------------------------------------------------------------


class ChildZoneState(WireModel):
    """One child as its parent reports it in `GET /v1/zone`."""

    id: str
    name: str
    state: str  # active, offline
    hosts: int = 0


class Zone(WireModel):
    """`GET /v1/zone`: this zone's report of itself (what a parent polls)."""

    id: str
    name: str
    capabilities: dict[str, Any] = Field(default_factory=dict)
    # The zone's own hosts merged with every active child's subtree.
    summary: dict[str, Any] = Field(default_factory=dict)
    # Zones below out of reach now (paths from here) and what they held when last seen.
    unreachable: dict[str, Any] | None = None
    children: list[ChildZoneState] = Field(default_factory=list)
    generated_at: datetime | None = None


class ChildZone(WireModel):
    """A child zone as its parent keeps it (`/v1/zones`, admins)."""

    id: str
    name: str
    api_url: str
    username: str
    transport: str = "http"
    bus_url: str | None = None  # without its credentials
    bus_queue: str | None = None
    weight_offset: float = 0.0
    weight_scale: float = 1.0
    labels: dict[str, str] = Field(default_factory=dict)
    state: str  # active, offline
    last_seen: datetime | None = None
    failures: int = 0
    created_at: datetime
    updated_at: datetime


class StorageCluster(WireModel):
    """A Swift cluster registered with a zone (`/v1/storage-clusters`, admins)."""

    id: str
    name: str
    auth_url: str
    username: str
    tiers: dict[str, str]  # skyfed tier -> the cluster's storage policy
    capacity_bytes: int
    used_bytes: int = 0
    free_bytes: int = 0
    move_bandwidth: int = 0  # container moves' limit there, bytes a second (0: none)
    draining: bool = False
    state: str  # up, down
    failures: int = 0
    last_error: str = ""
    last_seen: datetime | None = None
    swift_version: str | None = None
    created_at: datetime
    updated_at: datetime


class ContainerMove(WireModel):
    """A container's move between storage clusters (`/v1/container-moves`, admins)."""

    id: str
    account: str
    container: str
    source: str
    target: str
    tier_from: str = ""
    tier_to: str = ""
    state: str  # copying, cleaning, done; cancelling, cancel_cleaning, cancelled
    task_id: str
    objects_total: int = 0
    bytes_total: int = 0
    objects_copied: int = 0
    bytes_copied: int = 0
    objects_skipped: int = 0
    objects_cleaned: int = 0
    error: str = ""
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class ChildZoneDetail(ChildZone):
    """`GET /v1/zones/{ref}/detail`: also what the child last said of itself."""

    remote_id: str | None = None
    remote_name: str | None = None
    last_error: str = ""
    capabilities: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)


# -- flavors and servers ---------------------------------------------------------------


class Flavor(WireModel):
    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int = 0


class ServerGroup(WireModel):
    name: str
    policy: str  # affinity, anti-affinity


class Location(WireModel):
    # Child zone names from the answering zone down to the zone that holds the server.
    path: list[str] = Field(default_factory=list)
    host: str | None = None  # shown to admins

    def where(self) -> str:
        """`eu/eu-dc1:host-7`, or the path alone when the host is not shown."""
        path = "/".join(self.path)
        return f"{path}:{self.host}" if self.host else path


class Server(WireModel):
    id: str
    name: str
    project_id: str
    user_id: str
    reservation_id: str
    status: str
    task_state: str | None = None
    fault: str = ""
    exit_code: int | None = None
    flavor: str | None = None
    vcpus: int
    ram_mb: int
    disk_gb: int = 0
    group: ServerGroup | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    placement: str = ""
    location: Location = Field(default_factory=Location)
    created_at: datetime
    updated_at: datetime
    launched_at: datetime | None = None


class ServerBrief(WireModel):
    id: str
    name: str
    status: str
    placement: str = ""
    fault: str = ""


class ServersCreated(WireModel):
    """`POST /v1/servers` (202): the reservation and its servers, BUILDING."""

    reservation_id: str
    servers: list[ServerBrief]


class ServerAccepted(WireModel):
    """A delete taken (202): the server's status now (DELETING) and the task."""

    id: str
    status: str
    task_id: str


class ActionAccepted(WireModel):
    """An action taken (202): the server's status and task state now, and the task."""

    id: str
    status: str
    task_state: str | None = None
    task_id: str


class UnavailableZone(WireModel):
    zone: str  # a path below the listing zone
    reason: str  # offline, timed_out, failed


class ServerPage(WireModel):
    """One page of `GET /v1/servers`."""

    servers: list[Server]
    next_marker: str | None = None
    # Zones whose servers are missing from this page, as paths below the zone asked...
    unavailable_zones: list[str] = Field(default_factory=list)
    # ...and the same zones with why.
    unavailable: list[UnavailableZone] = Field(default_factory=list)


class ZoneLocation(WireModel):
    """`GET /v1/zones/locate`: the lowest zone whose subtree holds all of a project's
    servers (this zone, `path` [], when they are spread over its children)."""

    id: str
    name: str
    url: str
    path: list[str] = Field(default_factory=list)  # child zone names from here down


# -- tasks ----------------------------------------------------------------------------


class Task(WireModel):
    """A durable task: what a mutating request became."""

    id: str
    seq: int
    kind: str
    resource_type: str
    resource_id: str
    project_id: str | None = None
    state: str  # queued, running, succeeded, failed, cancelled
    attempts: int = 0
    max_attempts: int
    error: str = ""
    result: dict[str, Any] | None = None
    request_id: str = ""
    traceparent: str | None = None  # the trace its attempts continue (W3C)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class TaskPage(WireModel):
    """One page of `GET /v1/tasks`, newest first."""

    tasks: list[Task]
    next_marker: int | None = None


# -- identity -------------------------------------------------------------------------


class User(WireModel):
    """A user of the zone (`/v1/users`, admins); a service or agent account too."""

    id: str
    name: str
    project_id: str
    roles: list[str] = Field(default_factory=list)  # admin, member, service, agent
    enabled: bool = True
    created_at: datetime


class Token(WireModel):
    """`POST /v1/auth/tokens` (a login): the bearer token and whose it is."""

    token: str
    expires_at: datetime
    user: User


class Caller(WireModel):
    """`GET /v1/auth/whoami`: who the zone takes the caller for."""

    user_id: str
    username: str
    project_id: str
    roles: list[str] = Field(default_factory=list)
    # The parent's service account that forwarded this identity (None: the caller's own).
    via: str | None = None


class Project(WireModel):
    id: str
    name: str
    description: str = ""
    created_at: datetime


# -- hosts and agent accounts ----------------------------------------------------------


class HostResources(WireModel):
    vcpus: int = 0
    ram_mb: int = 0
    disk_gb: int = 0


class Host(WireModel):
    """A host as its zone knows it from its agent's heartbeats (`/v1/hosts`, admins)."""

    name: str
    state: str  # online, offline
    disabled: bool = False
    disabled_reason: str = ""
    capabilities: dict[str, Any] = Field(default_factory=dict)
    resources: HostResources
    used: HostResources = Field(default_factory=HostResources)  # by other work on the host
    allocated: HostResources = Field(default_factory=HostResources)  # by the zone's servers
    free: HostResources
    agent: str | None = None  # the agent that carries it
    last_seen: datetime | None = None


class HostPage(WireModel):
    """One page of `GET /v1/hosts`, by name."""

    hosts: list[Host]
    next_marker: str | None = None


class HeartbeatsTaken(WireModel):
    """`PUT /v1/hosts`: how many beats were taken, and which of their hosts an admin
    disabled (the agent starts no work on those)."""

    accepted: int
    disabled: list[str] = Field(default_factory=list)


class HostReleased(WireModel):
    name: str
    released_from: str | None = None  # the agent that carried it until now (None: nobody)


class AgentAccount(WireModel):
    """An agent's account (`/v1/agents`, admins) and the hosts it may carry."""

    name: str
    user_id: str
    hosts: list[str] = Field(default_factory=list)  # names, or prefixes ending in '*'
    max_hosts: int
    configured: bool = False  # made from the zone's settings: changed there
    carried: int = 0  # hosts it carries now
    pending_commands: int = 0
    created_at: datetime
    updated_at: datetime
