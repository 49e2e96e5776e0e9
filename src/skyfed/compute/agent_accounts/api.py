"""Agent account routes (admin): provision agents, their grants, and delete them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from skyfed.compute.agent_accounts.schemas import AgentCreate, AgentList, AgentOut, AgentUpdate
from skyfed.compute.agent_accounts.service import AgentAccounts
from skyfed.compute.deps import PartsDep
from skyfed.core import SessionDep
from skyfed.identity.deps import AdminDep
from skyfed.schema_types import NAME_PATTERN

router = APIRouter(prefix="/v1/agents", tags=["agents"])
AgentName = Annotated[str, Path(pattern=NAME_PATTERN)]


def accounts(parts: PartsDep, session: SessionDep) -> AgentAccounts:
    identity = parts.identities.service(session)
    return AgentAccounts(
        session, identity, parts.hosts, parts.grants, parts.core.settings.agent_username
    )


@router.post("", status_code=201, response_model=AgentOut)
async def create_agent(
    body: AgentCreate, _: AdminDep, parts: PartsDep, session: SessionDep
) -> AgentOut:
    """An agent account (role agent, project service) with the hosts it may carry."""
    return await accounts(parts, session).create(body)


@router.get("", response_model=AgentList)
async def list_agents(_: AdminDep, parts: PartsDep, session: SessionDep) -> AgentList:
    return AgentList(agents=await accounts(parts, session).list())


@router.get("/{name}", response_model=AgentOut)
async def get_agent(name: AgentName, _: AdminDep, parts: PartsDep, session: SessionDep) -> AgentOut:
    return await accounts(parts, session).get(name)


@router.put("/{name}", response_model=AgentOut)
async def update_agent(
    name: AgentName, body: AgentUpdate, _: AdminDep, parts: PartsDep, session: SessionDep
) -> AgentOut:
    """Change the grant or the password; hosts the grant no longer covers are released."""
    return await accounts(parts, session).update(name, body)


@router.delete("/{name}", status_code=204)
async def delete_agent(
    name: AgentName, _: AdminDep, parts: PartsDep, session: SessionDep
) -> Response:
    """Delete the account (its tokens die) and its grant; release the hosts it carried."""
    await accounts(parts, session).delete(name)
    return Response(status_code=204)
