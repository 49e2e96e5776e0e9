"""Task handlers for servers after placement: actions, deletes, and the agents' answers.

On a host here, an action or a delete becomes a command for the host's agent,
and the task waits (bounded) for its answer, so tasks on one server finish in
order. For a server a child holds, a delete is passed down and the task waits
until the child no longer has it, then forgets it here too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select

from skyfed.client import SkyfedError
from skyfed.compute import allocations, cancels, commands
from skyfed.compute.context import ComputeContext
from skyfed.compute.intake import place_again
from skyfed.compute.lifecycle import (
    BUILDING,
    DELETING,
    ERROR,
    SCHEDULING,
    State,
    after_command,
    after_exit,
)
from skyfed.compute.models import SERVERS, HostCommand, Server
from skyfed.compute.placement import asked_child, principal_from
from skyfed.db.base import utcnow
from skyfed.tasks.models import Task
from skyfed.tasks.worker import RetryLater
from skyfed.transport.base import ZoneRequest
from skyfed.zones import relay
from skyfed.zones.models import ChildZone

log = logging.getLogger(__name__)
Released = tuple[str, int, int, int]  # host, vcpus, ram_mb, disk_gb given back


class ServerHandlers:
    def __init__(self, ctx: ComputeContext) -> None:
        self.ctx = ctx

    # -- actions -------------------------------------------------------------------

    async def action(self, task: Task) -> dict[str, Any]:
        return await self._command(task, task.payload["action"])

    async def action_gave_up(self, task: Task, error: str) -> None:
        async with self.ctx.db.session() as session:
            server = await session.get(Server, task.resource_id)
            if server is not None:
                # While a delete waits, what its cancel would give back.
                fault = f"{task.payload['action']} failed: {error}"
                await cancels.settle(session, server, State(ERROR, None), fault)
                await session.commit()

    async def _command(self, task: Task, action: str) -> dict[str, Any]:
        """Send `action` to the server's host and wait for the agent's answer."""
        async with self.ctx.db.session() as session:
            server = await session.get(Server, task.resource_id)
            location = await SERVERS.find(session, task.resource_id)
            if server is None or location is None or location.kind != "host":
                return {"skipped": "the server is not on a host here"}
            agent = await self._agent_of(session, location.target, server.id)
            if agent is None:
                raise RetryLater(f"host {location.target} has no agent to take '{action}'")
            command = await commands.add(
                session,
                origin=f"task:{task.id}",
                agent=agent,
                host=location.target,
                server=server,
                action=action,
            )
            command_id = command.id
            await session.commit()
        self.ctx.signals.new_command(agent)
        done = await commands.wait_done(
            self.ctx.db,
            self.ctx.signals,
            command_id,
            self.ctx.settings.command_timeout,
            reread=self.ctx.settings.poll_reread,
        )
        if done is None:
            raise RetryLater(f"host {location.target} has not answered '{action}' yet")
        return {"command": command_id, "result": done.result}

    async def _agent_of(self, session: Any, host: str, server_id: str) -> str | None:
        record = self.ctx.hosts.get(host)
        if record is not None and record.agent:
            return record.agent
        # The host is silent now: its last command tells which agent carried it.
        return await session.scalar(
            select(HostCommand.agent)
            .where(HostCommand.server_id == server_id)
            .order_by(HostCommand.seq.desc())
            .limit(1)
        )

    # -- deletes -------------------------------------------------------------------

    async def delete(self, task: Task) -> dict[str, Any]:
        async with self.ctx.db.session() as session:
            server = await session.get(Server, task.resource_id)
            location = await SERVERS.find(session, task.resource_id)
            if server is None:
                return {"deleted": "already"}
            if location is not None:
                kind, target = location.kind, location.target
            elif (asked := asked_child(server)) is not None:
                # A child was asked and never answered: it may hold the server all the
                # same, so the delete goes there too (a 404 there means it does not).
                kind, target = "zone", asked
            else:  # never placed anywhere: nothing runs, just forget it
                released = await self._forget(session, task.resource_id)
                await session.commit()
                self._give_back(released)
                return {"deleted": "unplaced"}
        if kind == "host":
            return await self._command(task, "delete")
        return await self._delete_in_child(task, target)

    async def _delete_in_child(self, task: Task, child_id: str) -> dict[str, Any]:
        async with self.ctx.db.session() as session:
            child = await session.get(ChildZone, child_id)
        if child is not None:
            link = await self.ctx.links.link_for(child)
            principal = principal_from(task.payload["principal"])
            path = f"/v1/servers/{task.resource_id}"
            try:
                try:
                    await link.call(ZoneRequest("DELETE", path, principal=principal))
                except SkyfedError as exc:
                    if exc.status not in (404, 409):  # gone already, or being deleted
                        raise
                # Deleting takes the host an instant: watch for it a while before backing off.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + self.ctx.settings.child_wait
                while loop.time() < deadline:
                    await link.call(ZoneRequest("GET", path, principal=principal))
                    await asyncio.sleep(0.2)
                raise RetryLater(f"zone {child.name} is still deleting the server")
            except SkyfedError as exc:
                if exc.status != 404:  # (not there: deleted)
                    raise RetryLater(relay.said(child.name, exc)) from exc
        async with self.ctx.db.session() as session:
            await self._forget(session, task.resource_id)
            await session.commit()
        return {"deleted": "in child"}

    async def delete_gave_up(self, task: Task, error: str) -> None:
        async with self.ctx.db.session() as session:
            server = await session.get(Server, task.resource_id)
            if server is not None:
                server.status, server.task_state = ERROR, None
                server.fault = f"delete failed: {error}"[:1024]
                await session.commit()

    async def _forget(self, session: Any, server_id: str) -> Released | None:
        """Drop the server, its index entry and its claim; what to give back once committed."""
        host = await allocations.release(session, server_id)
        await SERVERS.forget(session, server_id)
        server = await session.get(Server, server_id)
        released = None
        if server is not None:
            if host is not None:
                released = (host, server.vcpus, server.ram_mb, server.disk_gb)
            await session.delete(server)
        return released

    def _give_back(self, released: Released | None) -> None:
        if released is not None:
            host, vcpus, ram_mb, disk_gb = released
            self.ctx.hosts.add_allocation(host, -vcpus, -ram_mb, -disk_gb)

    # -- the agents' answers ---------------------------------------------------------

    async def command_result(self, agent: str, command_id: str, result: dict[str, Any]) -> bool:
        """Apply an agent's answer (once). False when no such command of this agent exists."""
        [known] = await self.command_results(agent, [(command_id, result)])
        return known

    async def command_results(
        self, agent: str, results: list[tuple[str, dict[str, Any]]]
    ) -> list[bool]:
        """Apply an agent's answers in one transaction, in order; an answer sent twice
        counts once. For each, False when this agent has no such command."""
        released: list[Released | None] = []
        known: list[bool] = []
        async with self.ctx.db.session() as session:
            ids = [command_id for command_id, _ in results]
            rows = await session.scalars(
                select(HostCommand).where(HostCommand.id.in_(ids), HostCommand.agent == agent)
            )
            by_id = {command.id: command for command in rows}
            server_ids = {command.server_id for command in by_id.values()}
            servers = {
                server.id: server
                for server in await session.scalars(select(Server).where(Server.id.in_(server_ids)))
            }
            for command_id, result in results:
                command = by_id.get(command_id)
                known.append(command is not None)
                if command is None or command.state == commands.DONE:
                    continue
                commands.mark_done(command, result)
                server = servers.get(command.server_id)
                if server is not None and server in session:
                    released.append(await self._apply(session, server, command.action, result))
            await session.commit()
        for item in released:
            self._give_back(item)
        self.ctx.tasks.notify()  # a reschedule may have queued a task
        for command_id, _ in results:
            self.ctx.signals.command_done(command_id)
        return known

    async def _apply(
        self, session: Any, server: Server, action: str, result: dict[str, Any]
    ) -> Released | None:
        ok = bool(result.get("ok"))
        if action == "delete" and ok:
            return await self._forget(session, server.id)
        deleting = server.status == DELETING
        if (
            action == "boot"
            and not ok
            and not deleting  # the delete queued behind decides what is left
            and len(server.tried) + 1 < self.ctx.settings.placement_max_tries
        ):
            return await self._reschedule(session, server, str(result.get("message") or ""))
        state = after_command(
            State(server.status, server.task_state), action, ok, result.get("status")
        )
        fault = "" if ok else str(result.get("message") or f"{action} failed")
        if action == "delete":  # it failed (a success returned above)
            cancels.set_state(server, state, fault)
        else:
            # While a delete is queued behind this command the server stays DELETING;
            # the outcome is kept for the delete's cancel to give back.
            await cancels.settle(session, server, state, fault)
        server.exit_code = result.get("exit_code")
        server.updated_at = utcnow()
        if action == "boot" and ok:
            server.launched_at = utcnow()
        return None

    async def _reschedule(self, session: Any, server: Server, why: str) -> Released | None:
        """A boot failed on its host: try another one (the failed host is excluded)."""
        location = await SERVERS.find(session, server.id)
        released = await allocations.release(session, server.id)
        if location is not None:
            server.tried = [*server.tried, f"host:{location.target}"]
            await session.delete(location)
        server.status, server.task_state = BUILDING, SCHEDULING
        server.placement, server.trying = "pending", None
        server.fault, server.updated_at = f"rescheduled: {why}"[:1024], utcnow()
        await place_again(self.ctx, session, server)
        if released is None:
            return None
        return (released, server.vcpus, server.ram_mb, server.disk_gb)

    async def events(self, agent: str, events: list[dict[str, Any]]) -> tuple[int, int]:
        """Servers that changed on their own (a process exited). Only the agent carrying a
        server's host speaks for it: others' events are refused. Returns how many were
        applied and how many refused (unknown servers too: no answer tells another
        agent's servers from none)."""
        applied = refused = 0
        async with self.ctx.db.session() as session:
            for event in events:
                server = await session.get(Server, event["server_id"])
                location = await SERVERS.find(session, event["server_id"])
                if (
                    server is None
                    or location is None
                    or location.kind != "host"
                    or await self._agent_of(session, location.target, server.id) != agent
                ):
                    refused += 1
                    continue
                if event.get("status") == "STOPPED":
                    state = after_exit(State(server.status, server.task_state))
                    if state.status != server.status:
                        server.status, server.task_state = state.status, state.task_state
                        applied += 1
                    server.exit_code = event.get("exit_code")
                    if event.get("message"):
                        server.fault = str(event["message"])[:1024]
                    server.updated_at = utcnow()
            await session.commit()
        return applied, refused
