"""Server requests as the API sees them: create, read, list, delete, act, locate, explain.

A request about a server that a child zone holds follows the location index
down to that child (with the caller's identity); a list asks every active
child at once and merges the answers. Nothing here talks HTTP to the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed import trace_hooks
from skyfed.compute.cancels import BEFORE, before
from skyfed.compute.context import ComputeContext
from skyfed.compute.intake import add_servers
from skyfed.compute.lifecycle import (
    BUILDING,
    DELETED,
    DELETING,
    SCHEDULING,
    LifecycleConflict,
    State,
    begin_action,
    begin_delete,
)
from skyfed.compute.models import SERVERS, Flavor, Server
from skyfed.compute.placement import Placer, placement_request, principal_payload
from skyfed.compute.schemas import (
    FlavorCreate,
    GroupIn,
    LocationOut,
    ServerBrief,
    ServerCreate,
    ServerList,
    ServerOut,
    ServersCreated,
    UnavailableZone,
    ZoneLocation,
)
from skyfed.db.base import new_id, utcnow
from skyfed.errors import AppError, BadRequest, Conflict, Forbidden, NotFound, Unavailable
from skyfed.identity.principal import Principal
from skyfed.logs import request_id
from skyfed.settings import FlavorSpec
from skyfed.tasks.models import Task
from skyfed.transport.base import ZoneRequest
from skyfed.zones import listing, relay
from skyfed.zones.capabilities import parse_constraints
from skyfed.zones.locations import child_of
from skyfed.zones.models import ChildZone, Location
from skyfed.zones.scatter import PageRequest, Scatter
from skyfed.zones.summary import Summary


def server_out(server: Server, *, host: str | None, admin: bool) -> dict[str, Any]:
    group = (
        GroupIn(name=server.group_name, policy=server.group_policy)  # type: ignore[arg-type]
        if server.group_name and server.group_policy
        else None
    )
    return ServerOut(
        id=server.id,
        name=server.name,
        project_id=server.project_id,
        user_id=server.user_id,
        reservation_id=server.reservation_id,
        status=server.status,
        task_state=server.task_state,
        fault=server.fault,
        exit_code=server.exit_code,
        flavor=server.flavor,
        vcpus=server.vcpus,
        ram_mb=server.ram_mb,
        disk_gb=server.disk_gb,
        group=group,
        metadata=server.meta or {},
        placement=server.placement,
        location=LocationOut(path=[], host=host if admin else None),
        created_at=server.created_at,
        updated_at=server.updated_at,
        launched_at=server.launched_at,
    ).model_dump(mode="json")


def _conflict(exc: LifecycleConflict) -> Conflict:
    return Conflict(
        str(exc),
        code="invalid_state",
        details={"status": exc.status, "task_state": exc.task_state},
    )


class ComputeService:
    def __init__(self, ctx: ComputeContext, principal: Principal) -> None:
        self.ctx = ctx
        self.principal = principal

    # -- flavors -------------------------------------------------------------------

    async def list_flavors(self) -> list[Flavor]:
        async with self.ctx.db.session() as session:
            return list(
                (await session.scalars(select(Flavor).order_by(Flavor.vcpus, Flavor.name))).all()
            )

    async def create_flavor(self, body: FlavorCreate) -> Flavor:
        async with self.ctx.db.session() as session:
            if await session.scalar(select(Flavor.id).where(Flavor.name == body.name)):
                raise Conflict(f"flavor '{body.name}' already exists")
            flavor = Flavor(
                name=body.name, vcpus=body.vcpus, ram_mb=body.ram_mb, disk_gb=body.disk_gb
            )
            session.add(flavor)
            await session.commit()
        self.ctx.set_flavors(
            {
                **self.ctx.flavors,
                flavor.name: FlavorSpec(
                    name=flavor.name,
                    vcpus=flavor.vcpus,
                    ram_mb=flavor.ram_mb,
                    disk_gb=flavor.disk_gb,
                ),
            }
        )
        return flavor

    # -- create --------------------------------------------------------------------

    async def create(self, body: ServerCreate) -> ServersCreated:
        if (
            body.id or body.created_at or body.reservation_id or body.wait
        ) and not self.principal.via:
            raise Forbidden("only a parent zone sets id, reservation_id, created_at or wait")
        if body.id is not None:  # one server a parent passes down
            reservation = body.reservation_id or new_id()
            [outcome] = await self.create_delegated([body], body.wait)
            if isinstance(outcome, AppError):
                raise outcome
            return ServersCreated(reservation_id=reservation, servers=[outcome])
        template = self._checked_template(body)
        reservation, created_at = new_id(), utcnow()
        names = (
            [body.name] if body.count == 1 else [f"{body.name}-{i + 1}" for i in range(body.count)]
        )
        servers = [
            self._server(template, new_id(), name, reservation, created_at, False) for name in names
        ]
        await self.ctx.intake.write(
            servers, principal_payload(self.principal), self.principal.project_id, request_id.get()
        )
        return ServersCreated(
            reservation_id=reservation,
            servers=[
                ServerBrief(id=s.id, name=s.name, status=BUILDING, placement="pending")
                for s in servers
            ],
        )

    async def create_delegated(
        self, bodies: list[ServerCreate], wait: float, traces: Mapping[str, str] | None = None
    ) -> list[ServerBrief | AppError]:
        """Servers a parent chose this zone for, each with its id, in one transaction.

        Creates are idempotent on the id (a parent asking again waits for the placement
        already under way). Each answer is the placement after at most `wait` seconds,
        or the error that refused that server; the others are not held back by it.
        """
        if not self.principal.via:
            raise Forbidden("only a parent zone passes servers down")
        ids = [body.id for body in bodies]
        if None in ids or len(set(ids)) != len(ids):
            raise BadRequest("each server passed down needs its own id", code="bad_batch")
        outcomes: list[ServerBrief | AppError | None] = [None] * len(bodies)
        wanted: dict[str, Server] = {}
        for i, body in enumerate(bodies):
            try:
                template = self._checked_template(body)
            except AppError as exc:
                outcomes[i] = exc
                continue
            server_id = str(body.id)
            wanted[server_id] = self._server(
                template,
                server_id,
                body.name,
                body.reservation_id or new_id(),
                body.created_at or utcnow(),
                True,
            )
        with self.ctx.tasks.births() as births:
            async with self.ctx.db.session() as session:
                existing = {
                    server.id: server.project_id
                    for server in await session.scalars(
                        select(Server).where(Server.id.in_(list(wanted)))
                    )
                }
                task_ids = add_servers(
                    self.ctx,
                    session,
                    [s for s in wanted.values() if s.id not in existing],
                    principal_payload(self.principal),
                    self.principal.project_id,
                    request_id.get(),
                    births,
                    traces=_other_traces(traces),
                )
                await session.commit()
        waits: dict[int, Any] = {}
        for i, body in enumerate(bodies):
            server_id = str(body.id)
            if outcomes[i] is not None:
                continue
            if existing.get(server_id, self.principal.project_id) != self.principal.project_id:
                outcomes[i] = Conflict(f"server id {server_id} is taken")
                continue
            waits[i] = self._placement(server_id, task_ids.get(server_id), wait)
        for i, brief in zip(waits, await asyncio.gather(*waits.values()), strict=True):
            outcomes[i] = brief
        return [outcome for outcome in outcomes if outcome is not None]

    def _checked_template(self, body: ServerCreate) -> Server:
        """The server a request asks for, refused (4xx) when this zone may not or can
        never run it."""
        self._check_process_allowed(body)
        vcpus, ram_mb, disk_gb = self._resources(body)
        template = self._template(body, vcpus, ram_mb, disk_gb)
        self._check_possible(template)
        return template

    def _check_process_allowed(self, body: ServerCreate) -> None:
        """A process server runs its command on a host: this zone's `process_servers`
        says who may ask (for a parent's request, the user's forwarded roles)."""
        if "process" not in body.metadata:
            return
        allowed = self.ctx.settings.process_servers
        if allowed == "members" or (allowed == "admins" and self.principal.is_admin):
            return
        zone = self.ctx.zone_name
        raise Forbidden(
            f"zone {zone} takes no process servers (metadata.process): its process_servers "
            "setting is 'off'"
            if allowed == "off"
            else f"only admins may create process servers (metadata.process) in zone {zone}: "
            "its process_servers setting is 'admins'",
            code="process_servers_forbidden",
        )

    def _resources(self, body: ServerCreate) -> tuple[int, int, int]:
        if body.vcpus is not None and body.ram_mb is not None:
            return body.vcpus, body.ram_mb, body.disk_gb or 0
        assert body.flavor is not None
        flavor = self.ctx.flavors.get(body.flavor)
        if flavor is None:
            known = ", ".join(sorted(self.ctx.flavors)) or "none"
            raise BadRequest(
                f"unknown flavor '{body.flavor}' (known: {known})", code="unknown_flavor"
            )
        return flavor.vcpus, flavor.ram_mb, flavor.disk_gb

    def _template(self, body: ServerCreate, vcpus: int, ram_mb: int, disk_gb: int) -> Server:
        within = body.within.split("/") if body.within else []
        children = {c.name for c in self.ctx.view.children.values()}
        for path in [within, *(p.split("/") for p in body.avoid)]:
            if path and path[0] not in children:
                raise BadRequest(
                    f"'{path[0]}' is not a child zone of {self.ctx.zone_name}", code="unknown_zone"
                )
        return Server(
            project_id=self.principal.project_id,
            user_id=self.principal.user_id,
            flavor=body.flavor,
            vcpus=vcpus,
            ram_mb=ram_mb,
            disk_gb=disk_gb,
            constraints=body.constraints,
            group_name=body.group.name if body.group else None,
            group_policy=body.group.policy if body.group else None,
            within=within,
            avoid=[p.split("/") for p in body.avoid],
            meta=body.metadata,
        )

    def _server(
        self,
        t: Server,
        server_id: str,
        name: str,
        reservation: str,
        created_at: datetime,
        delegated: bool,
    ) -> Server:
        return Server(
            id=server_id,
            name=name,
            reservation_id=reservation,
            project_id=t.project_id,
            user_id=t.user_id,
            flavor=t.flavor,
            vcpus=t.vcpus,
            ram_mb=t.ram_mb,
            disk_gb=t.disk_gb,
            constraints=t.constraints,
            group_name=t.group_name,
            group_policy=t.group_policy,
            within=t.within,
            avoid=t.avoid,
            meta=t.meta,
            status=BUILDING,
            task_state=SCHEDULING,
            placement="pending",
            tried=[],
            delegated=delegated,
            created_at=created_at,
            updated_at=utcnow(),
        )

    def _check_possible(self, server: Server) -> None:
        """Refuse what no host under this zone could ever take, whatever the load (400);
        what only offline children could take is unavailable for now (503)."""
        summary, _ = self.ctx.view.summary()
        children = self.ctx.view.children.values()
        own = self.ctx.settings.capabilities
        unmet = _unmet(server, summary, [own] + [c.capabilities for c in children if c.active])
        if not unmet:
            return
        away = self.ctx.view.unreachable()
        if away.paths:
            # What they held when last seen: a zone away for a moment is not "never".
            caps = [own] + [c.capabilities for c in children]
            if not _unmet(server, summary.merge(away.summary), caps):
                raise Unavailable(
                    f"only zones that are offline now ({', '.join(away.paths)}) could take "
                    f"a server with {' and '.join(unmet)}; try again when they are back",
                    code="zones_offline",
                )
        raise BadRequest(
            f"no host in {self.ctx.zone_name} can ever have {' and '.join(unmet)}",
            code="impossible_request",
        )

    async def _placement(self, server_id: str, task_id: str | None, wait: float) -> ServerBrief:
        """A parent waits for the decision here: placed, failed (and why), or still pending."""
        if wait <= 0:
            return ServerBrief(id=server_id, name="", status=BUILDING, placement="pending")
        if task_id is None:  # asked again: wait for the latest placement of this server
            async with self.ctx.db.session() as session:
                task_id = await session.scalar(
                    select(Task.id)
                    .where(Task.resource_id == server_id, Task.kind == "place")
                    .order_by(Task.seq.desc())
                    .limit(1)
                )
        task = await self.ctx.tasks.wait(task_id, wait) if task_id else None
        result = (task.result or {}) if task is not None and task.state == "succeeded" else {}
        placement = result.get("placement")
        if placement == "placed":
            return ServerBrief(id=server_id, name="", status=BUILDING, placement="placed")
        if placement == "failed" or (task is not None and task.state == "failed"):
            reason = result.get("reason") or (task.error if task else "") or "no room"
            return ServerBrief(
                id=server_id, name="", status="ERROR", placement="failed", fault=reason
            )
        return ServerBrief(id=server_id, name="", status=BUILDING, placement="pending")

    # -- read ----------------------------------------------------------------------

    async def _own(self, session: AsyncSession, server_id: str) -> Server:
        server = await session.get(Server, server_id)
        if server is None or not (
            self.principal.is_admin or server.project_id == self.principal.project_id
        ):
            raise NotFound(f"server '{server_id}' not found")
        return server

    async def _ask_child(
        self,
        child: ChildZone,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        return await relay.ask(
            self.ctx.links,
            child,
            ZoneRequest(
                method,
                path,
                json=json,
                params=params,
                principal=self.principal,
                timeout=self.ctx.settings.list_timeout,
            ),
        )

    async def get(self, server_id: str) -> dict[str, Any]:
        async with self.ctx.db.session() as session:
            server = await self._own(session, server_id)
            location = await SERVERS.find(session, server_id)
            if location is not None and location.kind == "zone":
                child = await child_of(session, location)
            else:
                host = location.target if location is not None else None
                return server_out(server, host=host, admin=self.principal.is_admin)
        answer = await self._ask_child(child, "GET", f"/v1/servers/{server_id}")
        answer["location"]["path"] = [child.name, *answer["location"]["path"]]
        return dict(answer)

    async def list(
        self,
        *,
        status: str | None,
        name: str | None,
        limit: int,
        marker: str | None,
        project_id: str | None,
    ) -> ServerList:
        try:
            after = listing.decode_marker(marker) if marker else None
        except listing.MarkerError as exc:
            raise BadRequest(str(exc), code="bad_marker") from exc
        if not self.principal.is_admin:
            project_id = self.principal.project_id
        local = await self._local_page(status, name, limit, after, project_id)
        params: dict[str, Any] = {"limit": limit}
        for key, value in (
            ("status", status),
            ("name", name),
            ("marker", marker),
            ("project_id", project_id if self.principal.is_admin else None),
        ):
            if value is not None:
                params[key] = value
        children = sorted(self.ctx.view.children.values(), key=lambda c: c.name)
        ask = PageRequest(
            "/v1/servers", "servers", params, self.principal, self.ctx.settings.list_timeout
        )
        pages = await Scatter(self.ctx.links, self.ctx.db).pages(children, ask)
        more = local[1] or any(page.more for page in pages)
        items, next_marker = listing.merge([local[0], *(p.items for p in pages)], limit, more)
        silent = [s for page in pages for s in page.silent]
        return ServerList(
            servers=items,
            next_marker=next_marker,
            unavailable_zones=[s.zone for s in silent],
            unavailable=[UnavailableZone(**s.to_dict()) for s in silent],
        )

    async def _local_page(
        self,
        status: str | None,
        name: str | None,
        limit: int,
        after: listing.SortKey | None,
        project_id: str | None,
    ) -> tuple[list[dict[str, Any]], bool]:
        query = (
            select(Server, Location)
            .outerjoin(
                Location,
                SERVERS.joined(Server.id),
            )
            # A server placed in a child is the child's to list; one on its way there
            # is listed here too (the merge keeps the child's copy when it has one).
            .where(or_(Location.kind.is_(None), Location.kind != "zone"))
            .order_by(Server.created_at.desc(), Server.id.desc())
            .limit(limit + 1)
        )
        if project_id is not None:
            query = query.where(Server.project_id == project_id)
        if status is not None:
            query = query.where(Server.status == status)
        if name is not None:
            query = query.where(Server.name == name)
        if after is not None:
            query = query.where(
                or_(
                    Server.created_at < after[0],
                    and_(Server.created_at == after[0], Server.id < after[1]),
                )
            )
        async with self.ctx.db.session() as session:
            rows = (await session.execute(query)).all()
        items = [
            server_out(
                s, host=loc.target if loc is not None else None, admin=self.principal.is_admin
            )
            for s, loc in rows[:limit]
        ]
        return items, len(rows) > limit

    # -- delete and actions ----------------------------------------------------------

    async def delete(self, server_id: str) -> dict[str, Any]:
        async with self.ctx.db.session() as session:
            server = await self._own(session, server_id)
            try:
                state = begin_delete(State(server.status, server.task_state))
            except LifecycleConflict as exc:
                raise _conflict(exc) from exc
            was = before(server)  # what a cancel of the delete gives back
            server.status, server.task_state, server.updated_at = state.status, None, utcnow()
            task = self.ctx.tasks.enqueue(
                session,
                kind="delete",
                resource_type="server",
                resource_id=server_id,
                payload={"principal": principal_payload(self.principal), BEFORE: was},
                project_id=server.project_id,
                request_id=request_id.get(),
                max_attempts=50,
            )
            await session.commit()
        self.ctx.tasks.notify()
        return {"id": server_id, "status": state.status, "task_id": task.id}

    async def action(self, server_id: str, action: str) -> dict[str, Any]:
        async with self.ctx.db.session() as session:
            server = await self._own(session, server_id)
            location = await SERVERS.find(session, server_id)
            if location is not None and location.kind == "zone":
                if server.status in (DELETING, DELETED):
                    # A delete accepted here is still on its way down: an action sent
                    # now would overtake it. (The child judges every other state.)
                    try:
                        begin_action(State(server.status, server.task_state), action)
                    except LifecycleConflict as exc:
                        raise _conflict(exc) from exc
                child = await child_of(session, location)
            else:
                child = None
                if location is None and server.placement != "pending":
                    raise Conflict(
                        f"cannot {action} a server that was never placed ({server.status})",
                        code="invalid_state",
                        details={"status": server.status, "task_state": server.task_state},
                    )
                try:
                    state = begin_action(State(server.status, server.task_state), action)
                except LifecycleConflict as exc:
                    raise _conflict(exc) from exc
                was = before(server)  # what a cancel of the action gives back
                server.status, server.task_state = state.status, state.task_state
                server.updated_at = utcnow()
                task = self.ctx.tasks.enqueue(
                    session,
                    kind="action",
                    resource_type="server",
                    resource_id=server_id,
                    payload={
                        "action": action,
                        "principal": principal_payload(self.principal),
                        BEFORE: was,
                    },
                    project_id=server.project_id,
                    request_id=request_id.get(),
                )
                await session.commit()
        if child is not None:
            return dict(
                await self._ask_child(
                    child, "POST", f"/v1/servers/{server_id}/action", json={"action": action}
                )
            )
        self.ctx.tasks.notify()
        return {
            "id": server_id,
            "status": state.status,
            "task_state": state.task_state,
            "task_id": task.id,
        }

    # -- locate and explain ----------------------------------------------------------

    async def locate(self, project_id: str) -> ZoneLocation:
        if not (self.principal.is_admin or self.principal.project_id == project_id):
            raise Forbidden("you may locate your own project only")
        async with self.ctx.db.session() as session:
            targets = await SERVERS.targets(session, project_id)
            unplaced = await session.scalar(
                select(func.count())
                .select_from(Server)
                .outerjoin(
                    Location,
                    SERVERS.joined(Server.id),
                )
                .where(Server.project_id == project_id, Location.kind.is_(None))
            )
        here = ZoneLocation(
            id=self.ctx.zone_id, name=self.ctx.zone_name, url=self.ctx.settings.url, path=[]
        )
        if not targets and not unplaced:
            raise NotFound(f"project '{project_id}' has no servers under {self.ctx.zone_name}")
        if unplaced or len(targets) != 1 or targets[0][0] != "zone":
            return here
        async with self.ctx.db.session() as session:
            child = await session.get(ChildZone, targets[0][1])
        if child is None:
            return here
        try:
            answer = await self._ask_child(
                child, "GET", "/v1/zones/locate", params={"project": project_id}
            )
        except (NotFound, Unavailable):
            return here
        return ZoneLocation(
            id=answer["id"],
            name=answer["name"],
            url=answer["url"],
            path=[child.name, *answer["path"]],
        )

    async def explain(self, body: ServerCreate) -> dict[str, Any]:
        vcpus, ram_mb, disk_gb = self._resources(body)
        server = self._template(body, vcpus, ram_mb, disk_gb)
        server.id = "explain"
        server.tried = []
        decision = await Placer(self.ctx).decide(server, explain=True)
        result = decision.explain()
        result["request"] = {
            "vcpus": vcpus,
            "ram_mb": ram_mb,
            "disk_gb": disk_gb,
            "constraints": [str(c) for c in placement_request(server).constraints],
        }
        if not decision.ranked:
            result["reason"] = decision.reason()
        return result


def _unmet(server: Server, summary: Summary, own_caps: list[dict[str, Any]]) -> list[str]:
    """What of `server`'s needs no host in `summary` could ever meet, as text ("arch =
    arm64", "ram_mb >= 65536"); a constraint the zone's or a child's own capabilities
    meet is met."""
    unmet = [
        str(c)
        for c in parse_constraints(server.constraints or {})
        if not summary.may_satisfy(c) and not any(c.matches(caps) for caps in own_caps)
    ]
    for key, need in (
        ("vcpus", server.vcpus),
        ("ram_mb", server.ram_mb),
        ("disk_gb", server.disk_gb),
    ):
        stats = summary.numeric.get(key)
        if need and (stats is None or stats.max < need):
            unmet.append(f"{key} >= {need}")
    return unmet


def _other_traces(traces: Mapping[str, str] | None) -> dict[str, str]:
    """The servers of a batch that belong to traces other than the request's: those
    continue their own; the rest hang under this request's span, as a lone create does."""
    here = trace_hooks.traceparent()
    trace_id = here.split("-")[1] if here else None
    return {k: v for k, v in (traces or {}).items() if v.split("-")[1] != trace_id}
