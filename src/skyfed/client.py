"""Typed client of a zone's public HTTP API: the CLI, parent zones, agents and tests use it.

Zones, servers, flavors, tasks, hosts, agent accounts, users, projects and tokens come
back as the models of `client_models.py` (lenient: a newer zone's extra fields are
ignored); the agent protocol's commands and results stay plain. `request()` sends any
request and returns its JSON, for what has no method yet and for tests of the wire itself.

Errors come back as `SkyfedError` carrying the zone's error code; a zone that
cannot be reached raises `ZoneUnreachable` (both defined with the rest of the wire
protocol in `wire.py`). With a username and password the client logs in on first
use and again when its token is refused.
"""

from __future__ import annotations

import asyncio
import functools
import json as jsonlib
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import httpx

from skyfed import trace_hooks
from skyfed.logs import request_id
from skyfed.transport.h1_pool import H1Transport
from skyfed.wire import (
    IDEMPOTENT,
    MAX_MESSAGE,
    REQUEST_ID,
    TRACEPARENT,
    SkyfedError,
    ZoneUnreachable,
    read_answer,
)

if TYPE_CHECKING:  # imported at the first typed call, not with the client
    from skyfed.client_models import (
        ActionAccepted,
        AgentAccount,
        Caller,
        ChildZone,
        ChildZoneDetail,
        ContainerMove,
        Flavor,
        HeartbeatsTaken,
        Host,
        HostPage,
        HostReleased,
        Project,
        Server,
        ServerAccepted,
        ServerPage,
        ServersCreated,
        StorageCluster,
        Task,
        TaskPage,
        Token,
        User,
        WireModel,
        Zone,
        ZoneLocation,
    )

    M = TypeVar("M", bound=WireModel)

# The errors a caller of this client handles, defined with the rest of the wire protocol.
__all__ = ["SkyfedClient", "SkyfedError", "ZoneUnreachable", "tls_context"]

USER_AGENT = "skyfed-client"


class SkyfedClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 20,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.username = username
        self.password = password
        self._login_lock = asyncio.Lock()
        self.timeout = timeout
        # Requests go straight to the transport: httpx.AsyncClient's cookie jar, redirect
        # and auth machinery cost more per call than the lean pool does, and skyfed
        # uses none of them.
        self._transport = transport or H1Transport(
            max_connections=max_connections, ssl_context=tls_context()
        )
        self._host = httpx.URL(self.base_url).netloc

    async def __aenter__(self) -> SkyfedClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # -- plumbing ----------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> tuple[int, bytes, str | None]:
        all_headers = {
            "Host": self._host,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        content = b""
        if json is not None:
            content = _json_bytes(json)
            all_headers["Content-Type"] = "application/json"
        if headers:
            all_headers.update(headers)
        rid = request_id.get()
        if rid:  # the id of the request being served travels to the next zone
            all_headers.setdefault(REQUEST_ID, rid)
        trace = trace_hooks.traceparent()
        if trace:  # and so does its trace
            all_headers.setdefault(TRACEPARENT, trace)
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        seconds = self.timeout if timeout is None else timeout
        url = self.base_url + path
        if params:
            url += "?" + urlencode(_query(params))
        request = httpx.Request(
            method,
            url,
            headers=all_headers,
            content=content,
            extensions={
                "timeout": {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds},
                # Safe to run twice (a transport may then batch it with others; see amqp.py).
                IDEMPOTENT: idempotent,
            },
        )
        try:
            response = await self._transport.handle_async_request(request)
            try:
                answer = await _raw_body(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            said = f": {exc}" if str(exc) else ""  # e.g. forged answers dropped meanwhile
            raise ZoneUnreachable(
                self.base_url, f"timed out ({type(exc).__name__}{said})", timed_out=True
            ) from exc
        except httpx.TransportError as exc:
            raise ZoneUnreachable(self.base_url, str(exc) or type(exc).__name__) from exc
        return response.status_code, answer, response.headers.get("content-type")

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        authenticate: bool = True,
        idempotent: bool = False,
    ) -> Any:
        """Send a request and return its JSON body; raise SkyfedError on an error answer.
        `idempotent`: running it twice does no harm (GET, or a create that carries its id)."""
        can_login = authenticate and self.username is not None and self.password is not None
        if authenticate and self.token is None and can_login:
            await self._login_once(None, timeout)
        sent_with = self.token
        send = functools.partial(
            self._send,
            method,
            path,
            json=json,
            params=params,
            headers=headers,
            timeout=timeout,
            idempotent=idempotent,
        )
        status, content, content_type = await send()
        if status == 401 and can_login:
            await self._login_once(sent_with, timeout)
            status, content, content_type = await send()
        return read_answer(status, content, content_type)

    async def _login_once(self, stale_token: str | None, timeout: float | None = None) -> None:
        """Log in unless another call just did; within the timeout of the call that needs it."""
        try:  # waiting for another call's login counts toward this call's timeout
            await asyncio.wait_for(self._login_lock.acquire(), timeout)
        except TimeoutError as exc:
            raise ZoneUnreachable(
                self.base_url, "timed out waiting for a login", timed_out=True
            ) from exc
        try:
            if self.token is not None and self.token != stale_token:
                return  # another call logged in meanwhile
            assert self.username is not None and self.password is not None
            await self._log_in(self.username, self.password, timeout)
        finally:
            self._login_lock.release()

    def _read(self, model: type[M], answer: Any) -> M:
        """An answer as `model`; SkyfedError (bad_response) when it is not of its shape."""
        from pydantic import ValidationError

        try:
            return model.model_validate(answer)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the answer"
            raise SkyfedError(
                502,
                "bad_response",
                f"{self.base_url} answered out of shape for {model.__name__}: "
                f"{where}: {first['msg']}"[:MAX_MESSAGE],
            ) from None

    async def _list(self, model: type[M], path: str, key: str) -> list[M]:
        """`GET path`: each item of the list under `key` of its answer as `model`;
        SkyfedError (bad_response) when there is no such list."""
        answer = await self.request("GET", path)
        items = answer.get(key) if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise SkyfedError(502, "bad_response", f"{self.base_url} answered without {key}")
        return [self._read(model, item) for item in items]

    # -- identity ----------------------------------------------------------------

    async def login(self, username: str, password: str, *, timeout: float | None = None) -> Token:
        """Log in; the token is kept for the calls that follow."""
        from skyfed.client_models import Token

        return self._read(Token, await self._log_in(username, password, timeout))

    async def _log_in(self, username: str, password: str, timeout: float | None) -> Any:
        """`POST /v1/auth/tokens`, keeping the token it answers; the answer as sent. The
        logins the client makes on its own read nothing else of it."""
        body = await self.request(
            "POST",
            "/v1/auth/tokens",
            json={"username": username, "password": password},
            authenticate=False,
            timeout=timeout,
        )
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SkyfedError(
                200, "bad_response", f"{self.base_url} answered a login without a token"
            )
        self.token = token
        return body

    async def logout(self) -> None:
        await self.request("DELETE", "/v1/auth/tokens")
        self.token = None

    async def whoami(self) -> Caller:
        """Who the zone takes this client for (logging in first when it has to)."""
        from skyfed.client_models import Caller

        return self._read(Caller, await self.request("GET", "/v1/auth/whoami"))

    async def create_project(self, name: str, description: str = "") -> Project:
        from skyfed.client_models import Project

        body = {"name": name, "description": description}
        return self._read(Project, await self.request("POST", "/v1/projects", json=body))

    async def list_projects(self) -> list[Project]:
        from skyfed.client_models import Project

        return await self._list(Project, "/v1/projects", "projects")

    async def create_user(self, name: str, password: str, project: str, roles: list[str]) -> User:
        """A user of `project` (id or name); a parent zone's account has the service role."""
        from skyfed.client_models import User

        body = {"name": name, "password": password, "project": project, "roles": roles}
        return self._read(User, await self.request("POST", "/v1/users", json=body))

    async def list_users(self) -> list[User]:
        from skyfed.client_models import User

        return await self._list(User, "/v1/users", "users")

    async def delete_user(self, name: str) -> None:
        await self.request("DELETE", f"/v1/users/{name}")

    # -- health ------------------------------------------------------------------

    async def healthz(self) -> dict[str, Any]:
        return await self.request("GET", "/healthz", authenticate=False)

    async def metrics(self) -> str:
        """`GET /metrics`: the zone process's figures, in Prometheus' text format."""
        if self.token is None and self.username is not None and self.password is not None:
            await self._login_once(None)
        status, content, content_type = await self._send("GET", "/metrics")
        if status != 200:
            read_answer(status, content, content_type)  # raises the zone's error
        return content.decode()

    async def readyz(self) -> dict[str, Any]:
        return await self.request("GET", "/readyz", authenticate=False)

    # -- zones -------------------------------------------------------------------

    async def zone(self, *, timeout: float | None = None) -> Zone:
        """This zone: its name, capabilities and the summary of its subtree."""
        from skyfed.client_models import Zone

        return self._read(Zone, await self.request("GET", "/v1/zone", timeout=timeout))

    async def add_zone(
        self,
        name: str,
        api_url: str,
        username: str,
        password: str,
        *,
        weight_offset: float | None = None,
        weight_scale: float | None = None,
        labels: Mapping[str, str] | None = None,
        transport: str | None = None,
        bus_url: str | None = None,
        bus_queue: str | None = None,
    ) -> ChildZone:
        from skyfed.client_models import ChildZone

        body: dict[str, Any] = {
            "name": name,
            "api_url": api_url,
            "username": username,
            "password": password,
        }
        for key, value in (
            ("transport", transport),
            ("bus_url", bus_url),
            ("bus_queue", bus_queue),
        ):
            if value is not None:
                body[key] = value
        if weight_offset is not None:
            body["weight_offset"] = weight_offset
        if weight_scale is not None:
            body["weight_scale"] = weight_scale
        if labels is not None:
            body["labels"] = dict(labels)
        return self._read(ChildZone, await self.request("POST", "/v1/zones", json=body))

    async def list_zones(self) -> list[ChildZone]:
        from skyfed.client_models import ChildZone

        return await self._list(ChildZone, "/v1/zones", "zones")

    async def get_zone(self, ref: str) -> ChildZone:
        """A child zone by id or name."""
        from skyfed.client_models import ChildZone

        return self._read(ChildZone, await self.request("GET", f"/v1/zones/{ref}"))

    async def zone_detail(self, ref: str) -> ChildZoneDetail:
        """A child zone with what it last said of itself (capabilities, summary, error)."""
        from skyfed.client_models import ChildZoneDetail

        return self._read(ChildZoneDetail, await self.request("GET", f"/v1/zones/{ref}/detail"))

    async def update_zone(self, ref: str, **changes: Any) -> ChildZone:
        """`PUT /v1/zones/{ref}` with the fields to change (a None bus_queue: the default)."""
        from skyfed.client_models import ChildZone

        return self._read(ChildZone, await self.request("PUT", f"/v1/zones/{ref}", json=changes))

    async def delete_zone(self, ref: str, *, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        await self.request("DELETE", f"/v1/zones/{ref}", params=params)

    # -- storage clusters --------------------------------------------------------

    async def add_storage_cluster(
        self,
        name: str,
        auth_url: str,
        username: str,
        password: str,
        *,
        tiers: Mapping[str, str],
        capacity_bytes: int,
    ) -> StorageCluster:
        from skyfed.client_models import StorageCluster

        body = {
            "name": name,
            "auth_url": auth_url,
            "username": username,
            "password": password,
            "tiers": dict(tiers),
            "capacity_bytes": capacity_bytes,
        }
        answer = await self.request("POST", "/v1/storage-clusters", json=body)
        return self._read(StorageCluster, answer)

    async def list_storage_clusters(self) -> list[StorageCluster]:
        from skyfed.client_models import StorageCluster

        return await self._list(StorageCluster, "/v1/storage-clusters", "clusters")

    async def get_storage_cluster(self, ref: str) -> StorageCluster:
        from skyfed.client_models import StorageCluster

        answer = await self.request("GET", f"/v1/storage-clusters/{ref}")
        return self._read(StorageCluster, answer)

    async def update_storage_cluster(self, ref: str, **changes: Any) -> StorageCluster:
        from skyfed.client_models import StorageCluster

        answer = await self.request("PUT", f"/v1/storage-clusters/{ref}", json=changes)
        return self._read(StorageCluster, answer)

    async def delete_storage_cluster(self, ref: str) -> None:
        await self.request("DELETE", f"/v1/storage-clusters/{ref}")

    async def explain_storage_placement(
        self, tier: str | None = None, project: str | None = None
    ) -> dict[str, Any]:
        """Where a new container would go now, and why (the planner's explain)."""
        params = {k: v for k, v in (("tier", tier), ("project", project)) if v is not None}
        return await self.request("GET", "/v1/storage-placement", params=params)

    async def drain_storage_cluster(self, ref: str, parallel: int = 2) -> dict[str, Any]:
        """Move every container off a cluster; nothing new is placed there."""
        body = {"parallel": parallel}
        return await self.request("POST", f"/v1/storage-clusters/{ref}/drain", json=body)

    async def storage_cluster_drain(self, ref: str) -> dict[str, Any]:
        """A drain's progress: containers left, moving now, its task."""
        return await self.request("GET", f"/v1/storage-clusters/{ref}/drain")

    async def stop_draining(self, ref: str) -> dict[str, Any]:
        return await self.request("DELETE", f"/v1/storage-clusters/{ref}/drain")

    async def rebalance_storage(
        self, threshold: float = 0.8, tier: str | None = None, parallel: int = 2
    ) -> str:
        """Start a rebalance of the zone's clusters; its task's id."""
        body: dict[str, Any] = {"threshold": threshold, "parallel": parallel}
        if tier is not None:
            body["tier"] = tier
        answer = await self.request("POST", "/v1/storage-rebalance", json=body)
        return str(answer["task_id"])

    # -- container moves ---------------------------------------------------------

    async def move_container(
        self, account: str, container: str, to: str | None = None, tier: str | None = None
    ) -> ContainerMove:
        """Start moving a container to the cluster `to` (its name or id; the zone's
        choice when None), in `tier` (its own when None)."""
        from skyfed.client_models import ContainerMove

        body = {"account": account, "container": container, "to": to, "tier": tier}
        body = {k: v for k, v in body.items() if v is not None}
        return self._read(
            ContainerMove, await self.request("POST", "/v1/container-moves", json=body)
        )

    async def list_container_moves(self, active: bool = False) -> list[ContainerMove]:
        from skyfed.client_models import ContainerMove

        path = "/v1/container-moves" + ("?active=true" if active else "")
        return await self._list(ContainerMove, path, "moves")

    async def get_container_move(self, move_id: str) -> ContainerMove:
        from skyfed.client_models import ContainerMove

        return self._read(
            ContainerMove, await self.request("GET", f"/v1/container-moves/{move_id}")
        )

    async def cancel_container_move(self, move_id: str) -> ContainerMove:
        from skyfed.client_models import ContainerMove

        answer = await self.request("POST", f"/v1/container-moves/{move_id}/cancel")
        return self._read(ContainerMove, answer)

    # -- hosts -------------------------------------------------------------------

    async def heartbeat(
        self,
        name: str,
        *,
        capabilities: Mapping[str, Any] | None = None,
        resources: Mapping[str, int] | None = None,
        used: Mapping[str, int] | None = None,
    ) -> Host:
        """One host's heartbeat; the host as the zone now knows it."""
        from skyfed.client_models import Host

        body = {
            "capabilities": dict(capabilities or {}),
            "resources": dict(resources or {}),
            "used": dict(used or {}),
        }
        return self._read(Host, await self.request("PUT", f"/v1/hosts/{name}", json=body))

    async def heartbeat_batch(self, hosts: list[dict[str, Any]]) -> HeartbeatsTaken:
        """Many hosts' heartbeats (each with its `name`): how many were taken, and which
        of those hosts an admin disabled."""
        from skyfed.client_models import HeartbeatsTaken

        answer = await self.request("PUT", "/v1/hosts", json={"hosts": hosts})
        return self._read(HeartbeatsTaken, answer)

    async def list_hosts(
        self,
        *,
        state: str | None = None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> HostPage:
        """One page of hosts, by name (`state`: online or offline)."""
        from skyfed.client_models import HostPage

        params = {"state": state, "limit": limit, "marker": marker}
        answer = await self.request("GET", "/v1/hosts", params=_given(params))
        return self._read(HostPage, answer)

    async def all_hosts(self, *, state: str | None = None) -> list[Host]:
        hosts: list[Host] = []
        marker: str | None = None
        while True:
            page = await self.list_hosts(state=state, limit=1000, marker=marker)
            hosts.extend(page.hosts)
            marker = page.next_marker
            if not marker:
                return hosts

    async def get_host(self, name: str) -> Host:
        from skyfed.client_models import Host

        return self._read(Host, await self.request("GET", f"/v1/hosts/{name}"))

    async def disable_host(self, name: str, reason: str = "") -> Host:
        from skyfed.client_models import Host

        answer = await self.request("POST", f"/v1/hosts/{name}/disable", json={"reason": reason})
        return self._read(Host, answer)

    async def enable_host(self, name: str) -> Host:
        from skyfed.client_models import Host

        return self._read(Host, await self.request("POST", f"/v1/hosts/{name}/enable"))

    async def release_host(self, name: str) -> HostReleased:
        """Hand a host over: the next agent granted for it that beats carries it."""
        from skyfed.client_models import HostReleased

        answer = await self.request("POST", f"/v1/hosts/{name}/release")
        return self._read(HostReleased, answer)

    # -- agent accounts (admin) ------------------------------------------------------

    async def create_agent(
        self, name: str, password: str, hosts: list[str], *, max_hosts: int | None = None
    ) -> AgentAccount:
        """An agent's account (its name is the agent's) and the hosts it may carry."""
        from skyfed.client_models import AgentAccount

        body: dict[str, Any] = {"name": name, "password": password, "hosts": list(hosts)}
        if max_hosts is not None:
            body["max_hosts"] = max_hosts
        return self._read(AgentAccount, await self.request("POST", "/v1/agents", json=body))

    async def list_agents(self) -> list[AgentAccount]:
        from skyfed.client_models import AgentAccount

        return await self._list(AgentAccount, "/v1/agents", "agents")

    async def get_agent(self, name: str) -> AgentAccount:
        from skyfed.client_models import AgentAccount

        return self._read(AgentAccount, await self.request("GET", f"/v1/agents/{name}"))

    async def update_agent(
        self,
        name: str,
        *,
        hosts: list[str] | None = None,
        max_hosts: int | None = None,
        password: str | None = None,
    ) -> AgentAccount:
        """Change what is given (hosts the new patterns do not cover are released)."""
        from skyfed.client_models import AgentAccount

        changes = {"hosts": hosts, "max_hosts": max_hosts, "password": password}
        answer = await self.request("PUT", f"/v1/agents/{name}", json=_given(changes))
        return self._read(AgentAccount, answer)

    async def delete_agent(self, name: str) -> None:
        await self.request("DELETE", f"/v1/agents/{name}")

    # -- servers and flavors -------------------------------------------------------

    async def list_flavors(self) -> list[Flavor]:
        from skyfed.client_models import Flavor

        return await self._list(Flavor, "/v1/flavors", "flavors")

    async def create_flavor(
        self, name: str, *, vcpus: int, ram_mb: int, disk_gb: int | None = None
    ) -> Flavor:
        """A flavor; `disk_gb` left None is not sent (the zone's default holds)."""
        from skyfed.client_models import Flavor

        body = _given({"name": name, "vcpus": vcpus, "ram_mb": ram_mb, "disk_gb": disk_gb})
        return self._read(Flavor, await self.request("POST", "/v1/flavors", json=body))

    async def create_servers(
        self,
        name: str,
        *,
        flavor: str | None = None,
        vcpus: int | None = None,
        ram_mb: int | None = None,
        disk_gb: int | None = None,
        count: int | None = None,
        constraints: Mapping[str, Any] | None = None,
        group: Mapping[str, str] | None = None,
        within: str | None = None,
        avoid: list[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **more: Any,
    ) -> ServersCreated:
        """`POST /v1/servers`: `count` servers (one reservation), BUILDING; a flavor or
        vcpus and ram_mb. Fields left None are not sent (the zone's defaults hold);
        `more` carries any other field of the request as it is (e.g. `wait`)."""
        from skyfed.client_models import ServersCreated

        fields = {
            "name": name,
            "flavor": flavor,
            "vcpus": vcpus,
            "ram_mb": ram_mb,
            "disk_gb": disk_gb,
            "count": count,
            "constraints": dict(constraints) if constraints is not None else None,
            "group": dict(group) if group is not None else None,
            "within": within,
            "avoid": list(avoid) if avoid is not None else None,
            "metadata": dict(metadata) if metadata is not None else None,
        }
        body = _given(fields) | more
        return self._read(ServersCreated, await self.request("POST", "/v1/servers", json=body))

    async def get_server(self, server_id: str) -> Server:
        """One server, wherever it is below this zone (found through the location index)."""
        from skyfed.client_models import Server

        return self._read(Server, await self.request("GET", f"/v1/servers/{server_id}"))

    async def list_servers(
        self,
        *,
        limit: int = 100,
        marker: str | None = None,
        status: str | None = None,
        name: str | None = None,
        project_id: str | None = None,
    ) -> ServerPage:
        """One page, newest first: `servers`, `next_marker`, and the zones that did not
        answer (`unavailable_zones`, and `unavailable` with why)."""
        from skyfed.client_models import ServerPage

        params = {
            "limit": limit,
            "marker": marker,
            "status": status,
            "name": name,
            "project_id": project_id,
        }
        answer = await self.request("GET", "/v1/servers", params=_given(params))
        return self._read(ServerPage, answer)

    async def all_servers(self, **filters: Any) -> tuple[list[Server], list[str]]:
        """Every page; with the zones that did not answer on any of them."""
        servers: list[Server] = []
        unavailable: set[str] = set()
        marker: str | None = None
        while True:
            page = await self.list_servers(limit=500, marker=marker, **filters)
            servers.extend(page.servers)
            unavailable.update(page.unavailable_zones)
            marker = page.next_marker
            if not marker:
                return servers, sorted(unavailable)

    async def delete_server(self, server_id: str) -> ServerAccepted:
        """The server goes DELETING, then away."""
        from skyfed.client_models import ServerAccepted

        return self._read(ServerAccepted, await self.request("DELETE", f"/v1/servers/{server_id}"))

    async def server_action(self, server_id: str, action: str) -> ActionAccepted:
        """reboot, stop or start (409 invalid_state when the server cannot now)."""
        from skyfed.client_models import ActionAccepted

        answer = await self.request(
            "POST", f"/v1/servers/{server_id}/action", json={"action": action}
        )
        return self._read(ActionAccepted, answer)

    async def locate(self, project_id: str) -> ZoneLocation:
        """The lowest zone below this one holding all of a project's servers (404 when
        it has none here)."""
        from skyfed.client_models import ZoneLocation

        answer = await self.request("GET", "/v1/zones/locate", params={"project": project_id})
        return self._read(ZoneLocation, answer)

    # -- tasks ---------------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task:
        from skyfed.client_models import Task

        return self._read(Task, await self.request("GET", f"/v1/tasks/{task_id}"))

    async def list_tasks(
        self,
        *,
        state: str | None = None,
        resource_id: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        marker: int | None = None,
    ) -> TaskPage:
        """One page of tasks, newest first (a project's own; an admin's: all)."""
        from skyfed.client_models import TaskPage

        params = {
            "state": state,
            "resource_id": resource_id,
            "kind": kind,
            "limit": limit,
            "marker": marker,
        }
        answer = await self.request("GET", "/v1/tasks", params=_given(params))
        return self._read(TaskPage, answer)

    async def cancel_task(self, task_id: str) -> Task:
        """Cancel a queued task not yet begun (409 otherwise)."""
        from skyfed.client_models import Task

        return self._read(Task, await self.request("POST", f"/v1/tasks/{task_id}/cancel"))

    async def retry_task(self, task_id: str) -> Task:
        """Run a failed or cancelled task again (409 otherwise)."""
        from skyfed.client_models import Task

        return self._read(Task, await self.request("POST", f"/v1/tasks/{task_id}/retry"))

    # -- agent protocol (docs/compute.md) ------------------------------------------

    async def agent_commands(
        self, agent: str, *, wait: float = 20, limit: int = 100, after: int = 0
    ) -> list[dict[str, Any]]:
        """Long poll: the agent's pending commands past `after`, or none after `wait` s."""
        body = await self.request(
            "GET",
            f"/v1/agents/{agent}/commands",
            params={"wait": wait, "limit": limit, "after": after},
            timeout=wait + 10.0,
        )
        commands = body.get("commands") if isinstance(body, dict) else None
        if not isinstance(commands, list):
            raise SkyfedError(200, "bad_response", f"{self.base_url} answered without commands")
        return commands

    async def command_result(self, agent: str, command_id: str, result: Mapping[str, Any]) -> None:
        """One command's result ({ok, status, message, exit_code}); 404 not_found for a
        command the zone does not have for this agent."""
        path = f"/v1/agents/{agent}/commands/{command_id}/result"
        await self.request("POST", path, json=dict(result))

    async def command_results(
        self, agent: str, results: list[tuple[str, dict[str, Any]]]
    ) -> list[bool]:
        """Post many results (command id, {ok, status, message, exit_code}); for each,
        whether the zone knew the command."""
        answer = await self.request(
            "POST",
            f"/v1/agents/{agent}/results",
            json={"results": [{"id": command_id, **result} for command_id, result in results]},
        )
        items = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(items, list) or len(items) != len(results):
            raise SkyfedError(502, "bad_response", "the zone's answer does not match the results")
        return [bool(isinstance(item, dict) and item.get("known")) for item in items]

    async def agent_events(self, agent: str, events: list[dict[str, Any]]) -> dict[str, int]:
        """Post events; how many the zone `applied` and `refused` (not this agent's)."""
        answer = await self.request("POST", f"/v1/agents/{agent}/events", json={"events": events})
        return dict(answer) if isinstance(answer, dict) else {}


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client: loading the CA store costs ~20 ms each time."""
    return ssl.create_default_context()


async def _raw_body(response: httpx.Response) -> bytes:
    """The answer's bytes as they came: a Content-Encoding nobody asked for is not undone
    (a small gzip answer could unpack to gigabytes, past the transport's bound)."""
    if response.is_stream_consumed:  # made from its content in process (json=, content=)
        return response.content
    return b"".join([part async for part in response.aiter_raw()])


def _json_bytes(value: Any) -> bytes:
    return jsonlib.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _given(params: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a caller set: None is "not given", neither sent nor sent empty."""
    return {key: value for key, value in params.items() if value is not None}


def _query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query pairs as httpx wrote them: a list repeats its key."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        for one in value if isinstance(value, list | tuple) else (value,):
            pairs.append((key, _param(one)))
    return pairs


def _param(value: Any) -> str:
    """A query value as httpx wrote it: booleans lower-case, None empty."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)
