"""The running zone's shared objects, and the FastAPI dependencies that hand them to routers."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.compute.agent_accounts.book import GrantBook
from skyfed.compute.context import ComputeContext
from skyfed.compute.handlers import ServerHandlers
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.hosts.sharing import HostSharing
from skyfed.compute.placement import Placer
from skyfed.db.engine import Database
from skyfed.identity.link_keys import LinkKeys
from skyfed.identity.login_limits import LoginLimiter
from skyfed.identity.passwords import PasswordHashing
from skyfed.identity.revocations import RevocationFeed
from skyfed.identity.service import IdentityService, TokenCache
from skyfed.identity.vault import Vault
from skyfed.settings import Settings
from skyfed.tasks.store import TaskStore
from skyfed.tasks.worker import Worker
from skyfed.zones.links import ChildLinks
from skyfed.zones.poller import Poller
from skyfed.zones.reach_policy import HostPattern, parse_patterns
from skyfed.zones.service import ZoneContext
from skyfed.zones.view import ZoneView


@dataclass
class Runtime:
    settings: Settings
    db: Database
    vault: Vault
    tokens: TokenCache
    hosts: HostRegistry
    view: ZoneView
    links: ChildLinks
    poller: Poller
    tasks: TaskStore
    compute: ComputeContext
    placer: Placer
    server_handlers: ServerHandlers
    sharing: HostSharing
    link_keys: LinkKeys
    passwords: PasswordHashing
    logins: LoginLimiter
    revocations: RevocationFeed
    grants: GrantBook
    worker: Worker | None = None
    zone_id: str = field(default="")

    def set_zone_id(self, zone_id: str) -> None:
        self.zone_id = zone_id
        self.compute.zone_id = zone_id

    def identity(self, session: AsyncSession) -> IdentityService:
        """The identity service in `session`, with this zone's hashing, vault and bounds."""
        return IdentityService(
            session,
            self.settings.token_ttl,
            self.tokens,
            vault=self.vault,
            limiter=self.logins,
            passwords=self.passwords,
        )

    @functools.cached_property
    def allowed_child_hosts(self) -> tuple[HostPattern, ...]:
        return parse_patterns(self.settings.allowed_child_hosts)

    def zone_context(self) -> ZoneContext:
        return ZoneContext(
            zone_id=self.zone_id,
            vault=self.vault,
            links=self.links,
            view=self.view,
            probe_timeout=self.settings.poll_timeout,
            allowed_hosts=self.allowed_child_hosts,
            max_answer_bytes=self.settings.max_child_answer_bytes,
        )


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_session(
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> AsyncIterator[AsyncSession]:
    async with runtime.db.session() as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
