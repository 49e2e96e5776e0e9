"""Group commit for new servers: creates that arrive together share one transaction.

Each request still answers only once its own servers and their place tasks are
committed; requests arriving within a millisecond of each other (or while the
previous commit runs) wait for the same commit instead of one each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed import trace_hooks
from skyfed.coalesce import Coalescer
from skyfed.compute.models import Server
from skyfed.db.engine import Database
from skyfed.settings import Settings
from skyfed.tasks.models import Task
from skyfed.tasks.store import Births, TaskStore


# What intake reads of the zone: a Protocol, as ComputeContext holds an Intake (no import cycle).
class IntakeContext(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def db(self) -> Database: ...
    @property
    def tasks(self) -> TaskStore: ...


# servers, principal, project, request id, traceparent
Batch = tuple[list[Server], dict[str, Any], str, str, str | None]


class Intake:
    def __init__(self, ctx: IntakeContext) -> None:
        self.ctx = ctx
        self.batches: Coalescer[None, Batch, None] = Coalescer(
            self._write, linger=0.001, max_items=500, max_in_flight=1, retry_alone=True
        )

    async def write(
        self, servers: list[Server], principal: dict[str, Any], project_id: str, request_id: str
    ) -> None:
        """Store `servers` with a place task each; durable when this returns."""
        # The batch is written in another request's context: each keeps its own trace.
        trace = trace_hooks.traceparent()
        await self.batches.submit(None, (servers, principal, project_id, request_id, trace))

    async def _write(self, _: None, items: list[Batch]) -> list[None]:
        with self.ctx.tasks.births() as births:
            async with self.ctx.db.session() as session:
                for servers, principal, project_id, request_id, trace in items:
                    add_servers(
                        self.ctx, session, servers, principal, project_id, request_id, births, trace
                    )
                await session.commit()
        return [None] * len(items)


def add_servers(
    ctx: IntakeContext,
    session: AsyncSession,
    servers: list[Server],
    principal: dict[str, Any],
    project_id: str,
    request_id: str,
    births: Births,
    traceparent: str | None = None,
    traces: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Add servers and a place task each to the transaction; the task id of each.
    New servers have no task before these, so each may be born running. Their tasks
    continue the trace `traces` names for them, else `traceparent` (default: the
    current trace)."""
    task_ids: dict[str, str] = {}
    for server in servers:
        session.add(server)
        task = ctx.tasks.enqueue(
            session,
            kind="place",
            resource_type="server",
            resource_id=server.id,
            payload={"principal": principal},
            project_id=project_id,
            request_id=request_id,
            traceparent=traces.get(server.id, traceparent) if traces else traceparent,
            max_attempts=ctx.settings.task_max_attempts,
            births=births,
        )
        task_ids[server.id] = task.id
    return task_ids


async def place_again(ctx: IntakeContext, session: AsyncSession, server: Server) -> None:
    """Add a place task for a server wanted again (rescheduled, or its delete
    cancelled), on behalf of whoever asked for its last one."""
    last = await session.scalar(
        select(Task.payload)
        .where(Task.resource_id == server.id, Task.kind == "place")
        .order_by(Task.seq.desc())
        .limit(1)
    )
    ctx.tasks.enqueue(
        session,
        kind="place",
        resource_type="server",
        resource_id=server.id,
        payload={"principal": (last or {}).get("principal")},
        project_id=server.project_id,
        max_attempts=ctx.settings.task_max_attempts,
    )
