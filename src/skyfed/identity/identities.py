"""What identity keeps for a zone process: tokens, link keys, login limits, revocations."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.background import stop
from skyfed.core import Core
from skyfed.identity.link_keys import LinkKeys
from skyfed.identity.login_limits import LoginLimiter
from skyfed.identity.passwords import PasswordHashing
from skyfed.identity.principal import ADMIN, SERVICE, Principal
from skyfed.identity.revocations import RevocationFeed
from skyfed.identity.secret_files import read_or_create
from skyfed.identity.service import (
    ADMIN_PROJECT,
    SERVICE_PROJECT,
    IdentityService,
    TokenCache,
    token_digest,
)
from skyfed.settings import Settings

log = logging.getLogger(__name__)

# How often a process picks up tokens revoked by the zone's other processes, and
# how many of those rounds pass between prunes of old revocations and login failures.
FOLLOW_INTERVAL = 1.0
PRUNE_EVERY = 60


def admin_password(settings: Settings) -> str:
    """The configured admin password, or one generated once and kept in state_dir (0600)."""
    if settings.admin_password is not None:
        return settings.admin_password.get_secret_value()
    path = settings.state_dir / "admin-password"
    password, created = read_or_create(path, lambda: secrets.token_urlsafe(18))
    if created:
        log.warning("generated the admin password; it is in %s", path)
    return password


class Identities:
    """Everything identity keeps for a zone process; `service(session)` does the work."""

    def __init__(self, core: Core) -> None:
        settings = core.settings
        self.core = core
        self.tokens = TokenCache()
        self.link_keys = LinkKeys(core.db, core.vault)
        self.passwords = PasswordHashing(
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
        )
        self.logins = LoginLimiter(
            per_user=settings.login_max_failures_per_user,
            per_source=settings.login_max_failures_per_source,
            window=settings.login_failure_window,
        )
        self.revocations = RevocationFeed(core.db, self.tokens)

    def service(self, session: AsyncSession) -> IdentityService:
        """The identity service in `session`, with this zone's hashing, vault and bounds."""
        return IdentityService(
            session,
            self.core.settings.token_ttl,
            self.tokens,
            vault=self.core.vault,
            limiter=self.logins,
            passwords=self.passwords,
        )

    async def principal(self, token: str) -> Principal:
        """Who `token` belongs to: most calls carry one resolved moments ago (no session
        for those); Unauthorized for an unknown, expired or revoked one."""
        caller = self.tokens.get(token_digest(token))
        if caller is None:
            async with self.core.db.session() as session:
                caller = await self.service(session).resolve_token(token)
        return caller

    @asynccontextmanager
    async def lifespan(self, api: bool) -> AsyncIterator[None]:
        await self._bootstrap()
        await self.revocations.start()
        follow = asyncio.create_task(self._follow(), name="revocations")
        try:
            yield
        finally:
            await stop([follow])

    async def _bootstrap(self) -> None:
        settings = self.core.settings
        async with self.core.db.session() as session:
            identity = self.service(session)
            await identity.ensure_user(
                settings.admin_username, admin_password(settings), ADMIN_PROJECT, [ADMIN]
            )
            # Where service and agent accounts live, whether or not the settings name any.
            await identity.ensure_project(SERVICE_PROJECT)
            if settings.service_username and settings.service_password:
                await identity.ensure_user(
                    settings.service_username,
                    settings.service_password.get_secret_value(),
                    SERVICE_PROJECT,
                    [SERVICE],
                )
            await session.commit()

    async def _follow(self) -> None:
        """Pick up revocations made by the zone's other processes; prune old records."""
        rounds = 0
        while True:
            await asyncio.sleep(FOLLOW_INTERVAL)
            rounds += 1
            try:
                await self.revocations.follow()
                if rounds % PRUNE_EVERY == 0:
                    await self.revocations.prune()
                    async with self.core.db.session() as session:
                        await self.logins.prune(session)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following revocations failed")
