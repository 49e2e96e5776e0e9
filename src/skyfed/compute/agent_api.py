"""The agent protocol: agents long-poll their commands and report results and events.

`/v1/agents/{agent}/...` answers only the agent account named `agent` (an agent's
name is its user name): another agent's token, and an admin's, get 403. The
commands carry tenants' server metadata, and results and events change servers,
so nobody else reads or speaks for an agent; admins see an agent's state through
`GET /v1/agents/{name}`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from skyfed.compute import commands
from skyfed.compute.deps import PartsDep
from skyfed.compute.schemas import (
    AgentCommand,
    AgentCommands,
    AgentEventsIn,
    CommandResultIn,
    CommandResultOut,
    CommandResultsIn,
    CommandResultsOut,
)
from skyfed.errors import Forbidden, NotFound
from skyfed.identity.deps import PrincipalDep
from skyfed.identity.principal import AGENT, Principal
from skyfed.schema_types import NAME_PATTERN

router = APIRouter(prefix="/v1/agents", tags=["agents"])
Agent = Annotated[str, Path(pattern=NAME_PATTERN)]


async def require_this_agent(agent: Agent, principal: PrincipalDep) -> Principal:
    if not principal.is_agent or principal.username != agent:
        raise Forbidden(
            f"only the '{AGENT}' account '{agent}' may use its agent routes",
            code="not_this_agent",
        )
    return principal


ThisAgentDep = Annotated[Principal, Depends(require_this_agent)]


@router.get("/{agent}/commands", response_model=AgentCommands)
async def poll_commands(
    agent: Agent,
    _: ThisAgentDep,
    parts: PartsDep,
    wait: Annotated[float, Query(ge=0, le=60)] = 20.0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> AgentCommands:
    """Pending commands of this agent past `after` (a `seq` it was given before; 0 for
    all of them, those already delivered too); waits up to `wait` seconds for one."""
    ctx = parts.ctx
    wait = min(wait, parts.core.settings.agent_poll_max)
    found = await commands.poll(
        ctx.db, ctx.signals, agent, limit, wait, reread=parts.core.settings.poll_reread, after=after
    )
    return AgentCommands(
        commands=[
            AgentCommand(
                id=c.id,
                seq=c.seq,
                host=c.host,
                server_id=c.server_id,
                action=c.action,
                server=c.payload,
                traceparent=c.traceparent,
            )
            for c in found
        ]
    )


@router.post("/{agent}/commands/{command_id}/result", status_code=204)
async def command_result(
    agent: Agent,
    command_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    body: CommandResultIn,
    _: ThisAgentDep,
    parts: PartsDep,
) -> Response:
    if not await parts.handlers.command_result(agent, command_id, body.model_dump()):
        raise NotFound(f"agent '{agent}' has no command '{command_id}'")
    return Response(status_code=204)


@router.post("/{agent}/results", response_model=CommandResultsOut)
async def command_results(
    agent: Agent, body: CommandResultsIn, _: ThisAgentDep, parts: PartsDep
) -> CommandResultsOut:
    """Many commands' results at once, applied in order in one transaction; `known` is
    false for a command this agent does not have (its result is ignored)."""
    known = await parts.handlers.command_results(
        agent, [(r.id, r.model_dump(exclude={"id"})) for r in body.results]
    )
    return CommandResultsOut(
        results=[
            CommandResultOut(id=r.id, known=k) for r, k in zip(body.results, known, strict=True)
        ]
    )


@router.post("/{agent}/events")
async def agent_events(
    agent: Agent, body: AgentEventsIn, _: ThisAgentDep, parts: PartsDep
) -> dict[str, int]:
    """Servers that changed on their own; `refused` counts events for servers this
    agent does not hold (on a host another agent carries, or not known here)."""
    applied, refused = await parts.handlers.events(agent, [e.model_dump() for e in body.events])
    return {"applied": applied, "refused": refused}
