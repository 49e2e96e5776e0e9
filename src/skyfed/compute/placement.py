"""The `place` task: find a server a host here, or a child zone that will place it.

Every attempt at a child zone is recorded (`servers.trying`) before it is made,
so a worker that takes the task over after a crash asks the same child again
instead of placing the server a second time; creates are idempotent on the
server id at every zone. A host claim commits with the placement in one
transaction, and is idempotent on the server id.

When the task gives up while a child was asked and never answered, that child
may have placed the server all the same: the server is in ERROR and `trying`
keeps naming the child, so a delete is passed down to it and an operator's
retry of the task asks it first.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed import trace_hooks
from skyfed.client import SkyfedError
from skyfed.coalesce import Coalescer
from skyfed.compute import allocations, commands
from skyfed.compute.context import ComputeContext
from skyfed.compute.forwarding import ChildCreates, ChildGone, delegated_body
from skyfed.compute.hosts.registry import HostRecord
from skyfed.compute.lifecycle import BUILDING, DELETING, ERROR, SCHEDULING, SPAWNING
from skyfed.compute.metrics import PLACEMENTS, PlacementMetrics
from skyfed.compute.models import SERVERS, Server
from skyfed.db.base import utcnow
from skyfed.identity.principal import Principal
from skyfed.observability.metrics import Metrics
from skyfed.observability.tracing import annotate
from skyfed.scheduling.candidates import HostCandidate, ZoneCandidate, reserve_zone
from skyfed.scheduling.columns import ZoneSet
from skyfed.scheduling.config import PlannerConfig
from skyfed.scheduling.planner import Decision, plan
from skyfed.scheduling.request import PlacementRequest, child_request
from skyfed.tasks.models import Task
from skyfed.tasks.worker import RetryLater
from skyfed.zones import relay
from skyfed.zones.capabilities import parse_constraints
from skyfed.zones.models import ChildZone, Location

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    placed: bool
    reason: str = ""


def principal_payload(principal: Principal) -> dict[str, Any]:
    return {
        "user_id": principal.user_id,
        "username": principal.username,
        "project_id": principal.project_id,
        "roles": sorted(principal.roles),
    }


def principal_from(payload: dict[str, Any]) -> Principal:
    return Principal(
        user_id=payload["user_id"],
        username=payload["username"],
        project_id=payload["project_id"],
        roles=frozenset(payload["roles"]),
    )


def placement_request(server: Server) -> PlacementRequest:
    return PlacementRequest(
        server_id=server.id,
        vcpus=server.vcpus,
        ram_mb=server.ram_mb,
        disk_gb=server.disk_gb,
        flavor=server.flavor,
        constraints=tuple(parse_constraints(server.constraints or {})),
        group=server.group_name,
        group_policy=server.group_policy,
        within=tuple(server.within or ()),
        avoid=tuple(tuple(p) for p in server.avoid or ()),
        exclude=frozenset(server.tried or ()),
    )


def asked_child(server: Server) -> str | None:
    """The child zone asked to place the server with no answer yet (it may hold it)."""
    kind, _, target = (server.trying or "").partition(":")
    return target if kind == "zone" and target else None


def _boot_origin(server: Server) -> str:
    """The boot command's origin for the server's current placement: a claim repeated
    makes one command, and a placement after a failed boot (whose host went into
    `tried`) makes a new one."""
    return f"boot:{server.id}:{len(server.tried)}"


def _capacity(record: HostRecord) -> allocations.Capacity:
    """What a host offers skyfed's servers: its total minus what other workloads use."""
    total, other = record.resources, record.used
    return allocations.Capacity(
        vcpus=total.vcpus - other.vcpus,
        ram_mb=total.ram_mb - other.ram_mb,
        disk_gb=total.disk_gb - other.disk_gb,
    )


class Placer:
    def __init__(self, ctx: ComputeContext, metrics: PlacementMetrics | None = None) -> None:
        """Without `metrics`, for an explanation only: it decides, it places nothing."""
        self.ctx = ctx
        self.metrics = metrics or PlacementMetrics(Metrics())
        self.config = PlannerConfig(
            strategy=ctx.settings.scheduler_strategy, sample_size=ctx.settings.scheduler_sample
        )
        self.rng = random.Random()
        self.creates = ChildCreates(ctx.links, ctx.db, wait=ctx.settings.child_wait)
        # The database steps of place tasks running at once share transactions: one
        # read for the servers they load, one write for the attempts they record, the
        # host claims they make, the child placements they note.
        self._loads: Coalescer[None, str, Server | None] = Coalescer(
            self._load_many, linger=0.001, max_items=500, max_in_flight=1
        )
        self._attempts: Coalescer[None, tuple[str, str], None] = Coalescer(
            self._record_attempts, linger=0.001, max_items=500, max_in_flight=1, retry_alone=True
        )
        self._claims: Coalescer[None, tuple[str, str, str | None], Outcome] = Coalescer(
            self._claim_on_hosts, linger=0.001, max_items=200, max_in_flight=1, retry_alone=True
        )
        self._in_children: Coalescer[None, tuple[Server, str], None] = Coalescer(
            self._record_in_children, linger=0.001, max_items=500, max_in_flight=1, retry_alone=True
        )
        # The children as candidates, kept between polls (by the view's children version):
        # decisions share them, with the reservations they make, and the planner reads
        # their columns instead of building a candidate per child for every decision.
        self._children: tuple[int, ZoneSet] | None = None

    # -- the task ---------------------------------------------------------------

    async def run(self, task: Task) -> dict[str, Any]:
        started = time.perf_counter()
        result = await self._run(task)
        at = result.get("at", "")
        outcome = at.partition(":")[0] if result["placement"] == "placed" else result["placement"]
        if outcome in PLACEMENTS:
            self.metrics.placements.labels(outcome).inc()
            self.metrics.placement_duration.observe(time.perf_counter() - started)
        return result

    async def _run(self, task: Task) -> dict[str, Any]:
        principal = principal_from(task.payload["principal"])
        last_reason = ""
        for _ in range(self.ctx.settings.placement_max_tries):
            server = await self._load(task.resource_id)
            if server is None:
                return {"placement": "gone"}
            if server.status == DELETING:
                return {"placement": "cancelled"}
            if server.placement in ("placed", "failed"):
                return {"placement": server.placement, "reason": server.fault}
            key = server.trying
            request = placement_request(server)  # once per try: parsing it is not free
            if key is None:
                decision = await self._decide_timed(server, request)
                if not decision.ranked:
                    why = decision.reason()
                    if last_reason:
                        why = f"{why} (last refusal: {last_reason})"
                    return await self.fail(server.id, why)
                chosen = decision.ranked[0]
                key = chosen.key
                if isinstance(chosen, ZoneCandidate):
                    # A child is asked over the network: record the attempt first. A host
                    # claim needs no record, it commits with the placement or not at all.
                    reserve_zone(chosen, request)
                    await self._attempts.submit(None, (server.id, key))
            outcome = await self._attempt(server, request, key, principal)
            if outcome.placed:
                return {"placement": "placed", "at": key}
            self.metrics.refusals.labels(key.partition(":")[0]).inc()
            last_reason = outcome.reason
            await self._set(server.id, trying=None, tried=[*server.tried, key])
        return await self.fail(
            task.resource_id,
            f"no candidate accepted the server after {self.ctx.settings.placement_max_tries} "
            f"tries in {self.ctx.zone_name}; last refusal: {last_reason}",
        )

    async def give_up(self, task: Task, error: str) -> None:
        """Out of attempts (a child kept failing to answer): the server is in ERROR,
        and the child asked last is kept as one that may hold it."""
        await self.fail(task.resource_id, f"placement gave up: {error}", unanswered=True)

    async def retried(self, session: AsyncSession, task: Task) -> None:
        """An operator retries the task: a server in ERROR from a failed placement is
        BUILDING again, every candidate open to it, and the child that may hold it asked
        first (`trying`). Any other server is left alone: the task finds it placed, gone
        or being deleted, and ends."""
        server = await session.get(Server, task.resource_id)
        if server is None or server.status != ERROR or server.placement != "failed":
            return
        server.status, server.task_state = BUILDING, SCHEDULING
        server.placement, server.tried, server.fault = "pending", [], ""
        server.updated_at = utcnow()

    # -- deciding ----------------------------------------------------------------

    async def _decide_timed(self, server: Server, request: PlacementRequest) -> Decision:
        """A decision for a place task: timed, counted by what it chose, and noted on the
        task's span (a span of its own would add a third to a create's spans)."""
        started = time.perf_counter()
        decision = await self.decide(server, request=request)
        self.metrics.decision_duration.observe(time.perf_counter() - started)
        chosen = decision.ranked[0].key.partition(":")[0] if decision.ranked else "none"
        self.metrics.decisions.labels(chosen).inc()
        annotate(
            {
                "skyfed.placement.chosen": chosen,
                "skyfed.placement.candidates": len(decision.ranked),
                "skyfed.placement.decision_ms": (time.perf_counter() - started) * 1000,
            }
        )
        return decision

    async def decide(
        self, server: Server, *, explain: bool = False, request: PlacementRequest | None = None
    ) -> Decision:
        request = request or placement_request(server)
        members: dict[str, int] = {}
        if request.group:
            members = await self._group_members(server.project_id, request)
        # A host no agent runs cannot take servers.
        make = HostCandidate.from_record
        hosts = [make(record) for record in self.ctx.hosts.online() if record.agent is not None]
        return plan(
            request,
            hosts,
            self.children(),
            zone_name=self.ctx.zone_name,
            config=self.config,
            rng=self.rng,
            explain=explain,
            # The group's counts by candidate key: the kept candidates serve every group.
            group_members=members or None,
        )

    def children(self) -> ZoneSet:
        """The children as candidates, built again once the view's children changed."""
        version = self.ctx.view.children_version
        kept = self._children
        if kept is None or kept[0] != version:
            snapshots = self.ctx.view.children.values()
            kept = self._children = (
                version,
                ZoneSet(ZoneCandidate.from_snapshot(child) for child in snapshots),
            )
        return kept[1]

    async def _group_members(
        self, project_id: str | None, request: PlacementRequest
    ) -> dict[str, int]:
        async with self.ctx.db.session() as session:
            if project_id is None:
                project_id = await session.scalar(
                    select(Server.project_id).where(Server.id == request.server_id)
                )
            rows = await session.execute(
                select(Location.kind, Location.target, func.count())
                .join(Server, SERVERS.joined(Server.id))
                .where(
                    Server.project_id == project_id,
                    Server.group_name == request.group,
                )
                .group_by(Location.kind, Location.target)
            )
            return {f"{kind}:{target}": count for kind, target, count in rows}

    # -- attempting ----------------------------------------------------------------

    async def _attempt(
        self, server: Server, request: PlacementRequest, key: str, principal: Principal
    ) -> Outcome:
        kind, _, target = key.partition(":")
        if kind == "host":
            return await self._on_host(server, target)
        return await self._in_child(server, request, target, principal)

    async def _on_host(self, server: Server, host: str) -> Outcome:
        hosts = self.ctx.hosts
        hosts.hold(server.id, host, (server.vcpus, server.ram_mb, server.disk_gb))
        try:
            # Each claim keeps its own task's trace, whichever task's batch writes it.
            return await self._claims.submit(None, (server.id, host, trace_hooks.traceparent()))
        finally:
            hosts.release(server.id)  # if the batch did not (it failed)

    async def _claim_on_hosts(
        self, _: None, items: list[tuple[str, str, str | None]]
    ) -> list[Outcome]:
        """Claim hosts for several servers in one transaction: one read of what they
        already hold, one conditional UPDATE each, the rows they add written together."""
        outcomes: list[Outcome] = [Outcome(False)] * len(items)
        agents: set[str] = set()  # those with new boot commands
        async with self.ctx.db.session() as session:
            ids = [server_id for server_id, *_ in items]
            servers = {
                s.id: s for s in await session.scalars(select(Server).where(Server.id.in_(ids)))
            }
            made = await commands.existing_origins(
                session, [_boot_origin(s) for s in servers.values()]
            )
            wanted: list[tuple[int, Server, HostRecord, str | None]] = []
            first: dict[str, int] = {}  # a server asked twice in one batch is claimed once
            repeats: list[tuple[int, int]] = []
            # Hosts in one order in every batch: two processes claiming the same hosts
            # on PostgreSQL lock their rows in the same order, so never deadlock.
            for i, (server_id, host, trace) in sorted(enumerate(items), key=lambda e: e[1][1]):
                if server_id in first:
                    repeats.append((i, first[server_id]))
                    continue
                first[server_id] = i
                record = self.ctx.hosts.get(host)
                if record is None or not self.ctx.hosts.is_online(record) or record.agent is None:
                    outcomes[i] = Outcome(False, f"host {host} is gone or offline")
                    continue
                if record.disabled:
                    outcomes[i] = Outcome(False, f"host {host} was disabled")
                    continue
                server = servers.get(server_id)
                if server is None or server.status == DELETING:
                    outcomes[i] = Outcome(True)  # nothing left to place
                    continue
                wanted.append((i, server, record, trace))
            with session.no_autoflush:
                claims = await allocations.claim_many(
                    session, [(server, r.name, _capacity(r)) for _, server, r, _ in wanted]
                )
            for (i, server, record, trace), claim in zip(wanted, claims, strict=True):
                if not claim.ok:
                    outcomes[i] = Outcome(False, claim.reason)
                    continue
                assert record.agent is not None
                origin = _boot_origin(server)
                if origin not in made:
                    session.add(
                        commands.build(
                            origin=origin,
                            agent=record.agent,
                            host=record.name,
                            server=server,
                            action="boot",
                            traceparent=trace,
                        )
                    )
                self._placed(session, server, "host", record.name)
                server.task_state = SPAWNING
                agents.add(record.agent)
                outcomes[i] = Outcome(True)
            for i, earlier in repeats:
                outcomes[i] = outcomes[earlier]
            # What the hosts hold now, claims of other processes included: a refusal
            # means this process's view of the host was behind, and must not stay so.
            # Rows this batch grew stay locked until the commit, so these are exact.
            hosts = sorted({record.name for _, _, record, _ in wanted})
            totals = await allocations.load(session, hosts) if hosts else {}
            await session.commit()
        # The claims are committed and in `totals`: the room held for them goes.
        for server_id, *_ in items:
            self.ctx.hosts.release(server_id)
        for host, held_now in totals.items():
            self.ctx.hosts.set_allocation(host, held_now)
        for agent in agents:
            self.ctx.signals.new_command(agent)
        return outcomes

    async def _in_child(
        self, server: Server, request: PlacementRequest, child_id: str, principal: Principal
    ) -> Outcome:
        child = await self.ctx.links.row(child_id, self.ctx.db)
        if child is None:
            return Outcome(False, "the child zone was removed")
        try:
            down = child_request(request, child.name)
        except ValueError as exc:
            return Outcome(False, str(exc))
        try:
            answer = await self.creates.create(child, principal, delegated_body(server, down))
        except ChildGone:
            return Outcome(False, "the child zone was removed")
        except SkyfedError as exc:
            reason = relay.fault(child.name, exc)
            if reason is not None:
                raise RetryLater(reason) from exc
            return Outcome(False, f"{child.name}: {exc.message}")
        error = answer.get("error")
        if error is not None:
            if int(error.get("status") or 500) >= 500:
                raise RetryLater(f"zone {child.name} answered: {error.get('message')}")
            return Outcome(False, f"{child.name}: {error.get('message')}")
        placed = answer["server"].get("placement")
        if placed == "placed":
            await self._in_children.submit(None, (server, child.id))
            return Outcome(True)
        if placed == "failed":
            return Outcome(False, f"{child.name}: {answer['server'].get('fault') or 'no room'}")
        raise RetryLater(f"zone {child.name} is still deciding")

    # -- recording -------------------------------------------------------------------

    def _placed(self, session: Any, server: Server, kind: str, target: str) -> None:
        server.placement = "placed"
        server.trying = None
        server.updated_at = utcnow()
        session.add(self._location(server, kind, target))

    @staticmethod
    def _location(server: Server, kind: str, target: str) -> Location:
        return SERVERS.entry(server.id, server.project_id, kind, target)

    async def _load(self, server_id: str) -> Server | None:
        return await self._loads.submit(None, server_id)

    async def _load_many(self, _: None, ids: list[str]) -> list[Server | None]:
        async with self.ctx.db.session() as session:
            found = {
                s.id: s for s in await session.scalars(select(Server).where(Server.id.in_(ids)))
            }
        return [found.get(server_id) for server_id in ids]

    async def _record_attempts(self, _: None, items: list[tuple[str, str]]) -> list[None]:
        """Note the child each server is about to be sent to, before it is sent."""
        by_key: dict[str, list[str]] = {}
        for server_id, key in items:
            by_key.setdefault(key, []).append(server_id)
        now = utcnow()
        async with self.ctx.db.session() as session:
            for key, ids in by_key.items():
                await session.execute(
                    update(Server).where(Server.id.in_(ids)).values(trying=key, updated_at=now)
                )
            await session.commit()
        return [None] * len(items)

    async def _record_in_children(self, _: None, items: list[tuple[Server, str]]) -> list[None]:
        """Servers the children placed: placed here, and indexed to their child."""
        async with self.ctx.db.session() as session:
            await session.execute(
                update(Server)
                .where(Server.id.in_([server.id for server, _ in items]))
                .values(placement="placed", trying=None, updated_at=utcnow())
            )
            session.add_all(self._location(server, "zone", child_id) for server, child_id in items)
            await session.commit()
        return [None] * len(items)

    async def _set(self, server_id: str, **values: Any) -> None:
        """Record an attempt (one statement: this task alone changes these columns)."""
        async with self.ctx.db.session() as session:
            await session.execute(
                update(Server).where(Server.id == server_id).values(updated_at=utcnow(), **values)
            )
            await session.commit()

    async def fail(
        self, server_id: str, reason: str, *, unanswered: bool = False
    ) -> dict[str, Any]:
        """No placement here. A parent's request is dropped (the parent tries elsewhere);
        a request made at this zone leaves the server in ERROR with the reason. With
        `unanswered`, a child asked with no answer keeps its place in `trying`."""
        async with self.ctx.db.session() as session:
            server = await session.get(Server, server_id)
            if server is not None:
                if server.delegated:
                    await session.execute(delete(Server).where(Server.id == server_id))
                else:
                    child_id = asked_child(server) if unanswered else None
                    if child_id is not None:
                        child = await session.get(ChildZone, child_id)
                        where = f"zone {child.name}" if child is not None else "a child zone"
                        reason = (
                            f"{reason[:900]}; {where} may hold the server:"
                            " delete it or retry placement"
                        )
                    server.status, server.task_state = ERROR, None
                    server.placement = "failed"
                    server.trying = f"zone:{child_id}" if child_id is not None else None
                    server.fault, server.updated_at = reason[:1024], utcnow()
                await session.commit()
        log.info("placement failed", extra={"server_id": server_id, "reason": reason})
        return {"placement": "failed", "reason": reason}
