"""What cancelling a server's task undoes: the state that accepting its request set.

A task is cancelled only before its first attempt (see `TaskStore.cancel`), so
nothing was claimed on a host or asked of a child yet: undoing the request is
giving the server back the state it had when the request was accepted, which
the request records in its task's payload (`before`). These run in the cancel's
transaction.

While a delete waits behind another task, the server shows DELETING and what
happens meanwhile (an action's answer, a cancel) is kept in the delete's
`before` instead (`settle`), so a cancel of the delete restores what is true.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.compute.context import ComputeContext
from skyfed.compute.intake import place_again
from skyfed.compute.lifecycle import ACTIVE, BUILDING, DELETING, ERROR, STOPPED, State
from skyfed.compute.models import Server
from skyfed.db.base import utcnow
from skyfed.errors import Conflict
from skyfed.tasks.models import UNFINISHED, Task

BEFORE = "before"
# An action's state before it, when its task predates `before` being recorded:
# stop and start each start from one status; a reboot's is not known.
_FROM = {"stop": ACTIVE, "start": STOPPED}


def before(server: Server) -> dict[str, Any]:
    """The server's state as a request is accepted, for its task's payload."""
    return {"status": server.status, "task_state": server.task_state}


async def _waiting(session: AsyncSession, server_id: str, kind: str) -> Task | None:
    # Locked (PostgreSQL): a cancel of that task and a note on it do not interleave.
    return await session.scalar(
        select(Task)
        .where(Task.resource_id == server_id, Task.kind == kind, Task.state.in_(UNFINISHED))
        .order_by(Task.seq.desc())
        .limit(1)
        .with_for_update()
    )


async def settle(
    session: AsyncSession, server: Server, state: State, fault: str | None = None
) -> None:
    """Give `server` `state` (and `fault`) now or, while a delete waits, should that
    delete be cancelled."""
    if server.status == DELETING:
        waiting = await _waiting(session, server.id, "delete")
        if waiting is not None:
            note: dict[str, Any] = {"status": state.status, "task_state": state.task_state}
            if fault is not None:
                note["fault"] = fault[:1024]
            waiting.payload = {**waiting.payload, BEFORE: note}  # a new dict: JSON is saved
            return
        await session.refresh(server)  # the delete may have been cancelled meanwhile
        if server.status == DELETING:
            return  # a delete ended without deleting (it set ERROR): nothing to give back
    set_state(server, state, fault)


def set_state(server: Server, state: State, fault: str | None) -> None:
    server.status, server.task_state = state.status, state.task_state
    if fault is not None:
        server.fault = fault[:1024]
    server.updated_at = utcnow()


async def _server(session: AsyncSession, server_id: str) -> Server | None:
    return await session.get(Server, server_id, with_for_update=True)


class Cancels:
    """What cancelling each compute task kind undoes (the kinds' cancel hooks)."""

    def __init__(self, ctx: ComputeContext) -> None:
        self.ctx = ctx

    async def place(self, session: AsyncSession, task: Task) -> None:
        """A create cancelled: the server is not wanted, as when placement fails.

        Like `Placer.fail`: a server a parent passed down is dropped (the parent's
        request decides what next); one requested here stays, in ERROR, so its owner
        sees what became of the request, and is deleted like any other. No host room
        to give back: a place task holds none before its first attempt (a host claim
        commits with its placement; a reschedule released the last one).
        """
        server = await _server(session, task.resource_id)
        if server is None or server.placement != "pending":
            return  # placed or failed already: the task had nothing left to do
        if server.trying is not None:
            raise Conflict(
                f"server '{server.id}' is being placed at {server.trying} by an earlier"
                " attempt; wait for the placement, then delete the server",
                code="task_begun",
            )
        if server.delegated and server.status != DELETING:
            await session.delete(server)
            return
        await settle(session, server, State(ERROR, None), "creation cancelled")
        server.placement = "failed"

    async def action(self, session: AsyncSession, task: Task) -> None:
        """A reboot, stop or start cancelled: the server as it was before it."""
        server = await _server(session, task.resource_id)
        if server is None:
            return
        was = task.payload.get(BEFORE)
        action = task.payload.get("action", "")
        if was is not None:
            await settle(session, server, State(was["status"], was.get("task_state")))
        elif action in _FROM:
            await settle(session, server, State(_FROM[action], None))
        else:
            await settle(
                session,
                server,
                State(ERROR, None),
                f"{action} cancelled; the status before it is not known",
            )

    async def delete(self, session: AsyncSession, task: Task) -> None:
        """A delete cancelled: the server as it was before it (or as what ran since
        left it, see `settle`), and placed after all if its create was left undone."""
        server = await _server(session, task.resource_id)
        if server is None or server.status != DELETING:
            return
        was = task.payload.get(BEFORE)
        if was is None:
            set_state(
                server, State(ERROR, None), "delete cancelled; the status before it is not known"
            )
            return
        set_state(server, State(was["status"], was.get("task_state")), was.get("fault"))
        if (
            server.status == BUILDING
            and server.placement == "pending"
            and await _waiting(session, server.id, "place") is None
        ):
            # Its place task saw DELETING and stopped: the server is wanted again.
            await place_again(self.ctx, session, server)  # (the cancel's notify wakes a worker)
