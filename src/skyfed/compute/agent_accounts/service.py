"""Agent accounts: an account with the `agent` role (project `service`) and its grant.

An agent's name is its account's user name, so a token speaks for exactly one
agent. The grant says which hosts it may carry (hosts/grants.py) and how many.
Deleting an agent deletes its account (its tokens die at once) and its grant, and
releases every host it carried: those go offline when their `host_ttl` passes
and may be carried by another agent provisioned for them (which then takes their
pending commands along). Narrowing a grant releases the hosts it no longer
covers. The agent the zone's settings name (`agent_username`, `agent_hosts`,
`agent_max_hosts`) is made at start and changed only there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.compute.agent_accounts.book import GrantBook, grant_of
from skyfed.compute.agent_accounts.models import AgentGrant
from skyfed.compute.agent_accounts.schemas import AgentCreate, AgentOut, AgentUpdate
from skyfed.compute.commands import PENDING
from skyfed.compute.hosts import carriers
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.models import HostCommand
from skyfed.db.base import utcnow
from skyfed.errors import Conflict, NotFound
from skyfed.identity.models import User
from skyfed.identity.principal import AGENT
from skyfed.identity.schemas import UserCreate
from skyfed.identity.service import SERVICE_PROJECT, IdentityService


@dataclass
class AgentAccounts:
    session: AsyncSession
    identity: IdentityService
    hosts: HostRegistry
    grants: GrantBook
    configured: str | None  # the settings' agent_username

    # -- reading -------------------------------------------------------------------

    async def list(self) -> list[AgentOut]:
        rows = (await self.session.scalars(select(AgentGrant).order_by(AgentGrant.name))).all()
        pending = await self._pending()
        return [self._out(row, pending.get(row.name, 0)) for row in rows]

    async def get(self, name: str) -> AgentOut:
        row = await self._row(name)
        return self._out(row, (await self._pending(name)).get(name, 0))

    async def _row(self, name: str) -> AgentGrant:
        row = await self.session.get(AgentGrant, name)
        if row is None:
            raise NotFound(f"agent '{name}' not found")
        return row

    async def _pending(self, name: str | None = None) -> dict[str, int]:
        query = (
            select(HostCommand.agent, func.count())
            .where(HostCommand.state == PENDING)
            .group_by(HostCommand.agent)
        )
        if name is not None:
            query = query.where(HostCommand.agent == name)
        return {agent: count for agent, count in await self.session.execute(query)}

    def _out(self, row: AgentGrant, pending: int) -> AgentOut:
        return AgentOut(
            name=row.name,
            user_id=row.user_id,
            hosts=list(row.hosts),
            max_hosts=row.max_hosts,
            configured=row.name == self.configured,
            carried=self.hosts.carried_by(row.name),
            pending_commands=pending,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    # -- changing ------------------------------------------------------------------

    async def create(self, body: AgentCreate) -> AgentOut:
        await self.identity.ensure_project(SERVICE_PROJECT)
        user = await self.identity.create_user(
            UserCreate(
                name=body.name, password=body.password, project=SERVICE_PROJECT, roles=[AGENT]
            ),
            commit=False,
        )
        row = AgentGrant(
            name=body.name, user_id=user.id, hosts=sorted(set(body.hosts)), max_hosts=body.max_hosts
        )
        self.session.add(row)
        try:
            await self.session.commit()
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict(f"agent '{body.name}' already exists") from exc
        self.grants.forget(body.name)
        return self._out(row, 0)

    async def update(self, name: str, body: AgentUpdate) -> AgentOut:
        row = await self._row(name)
        self._not_configured(name)
        if body.hosts is not None:
            row.hosts = sorted(set(body.hosts))
        if body.max_hosts is not None:
            row.max_hosts = body.max_hosts
        if body.password is not None:
            user = await self.session.get(User, row.user_id)
            if user is None:  # the grant's foreign key makes this impossible
                raise NotFound(f"agent '{name}' has no account")
            await self.identity.set_password(user, body.password)
        row.updated_at = utcnow()
        await self.session.commit()
        self.grants.forget(name)
        await self._release_uncovered(row)
        return await self.get(name)

    async def delete(self, name: str) -> None:
        """Also an agent account without a grant (made before grants existed)."""
        self._not_configured(name)
        row = await self.session.get(AgentGrant, name)
        if row is not None:
            user = await self.session.get(User, row.user_id)
            assert user is not None  # the grant's foreign key
            await self.session.delete(row)
        else:
            user = await self.session.scalar(select(User).where(User.name == name))
            if user is None or AGENT not in user.roles:
                raise NotFound(f"agent '{name}' not found")
        await self.identity.delete_account(user)  # commits both
        self.grants.forget(name)
        await carriers.release(self.session, self.hosts, agent=name)

    async def configure(self, name: str, password: str, hosts: list[str], max_hosts: int) -> None:
        """The settings' agent: its account and its grant as the settings say (at start)."""
        user = await self.identity.ensure_user(name, password, SERVICE_PROJECT, [AGENT])
        row = await self.session.get(AgentGrant, name)
        if row is None:
            row = AgentGrant(name=name, user_id=user.id)
            self.session.add(row)
        row.user_id, row.hosts, row.max_hosts = user.id, sorted(set(hosts)), max_hosts
        row.updated_at = utcnow()
        await self.session.commit()
        self.grants.forget(name)
        await self._release_uncovered(row)

    def _not_configured(self, name: str) -> None:
        if name == self.configured:
            raise Conflict(
                f"agent '{name}' is made from this zone's settings (agent_username, "
                "agent_hosts, agent_max_hosts): change it there",
                code="configured_agent",
            )

    async def _release_uncovered(self, row: AgentGrant) -> None:
        grant = grant_of(row)
        carried = await carriers.carried_names(self.session, self.hosts, row.name)
        gone = grant.uncovered(carried)
        if gone:
            await carriers.release(self.session, self.hosts, names=gone, agent=row.name)
