"""Identity logic: bootstrap accounts, log in, resolve bearer tokens, manage users and projects."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from datetime import timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.db.base import utcnow
from skyfed.errors import Conflict, NotFound, Unauthorized
from skyfed.identity.link_keys import needs_link_key, sealed_link_key
from skyfed.identity.login_limits import LoginLimiter
from skyfed.identity.models import Project, Revocation, Token, User
from skyfed.identity.passwords import PasswordHashing
from skyfed.identity.principal import AGENT, MEMBER, Principal
from skyfed.identity.schemas import ProjectCreate, TokenOut, UserCreate, UserOut
from skyfed.identity.vault import Vault

log = logging.getLogger(__name__)

ADMIN_PROJECT = "admin"
SERVICE_PROJECT = "service"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        name=user.name,
        project_id=user.project_id,
        roles=list(user.roles),
        enabled=user.enabled,
        created_at=user.created_at,
    )


class TokenCache:
    """Resolved tokens for a few seconds, so every API call does not cost a query."""

    def __init__(self, ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, digest: str) -> Principal | None:
        hit = self._entries.get(digest)
        if hit is None:
            return None
        if hit[1] < time.monotonic():
            self._entries.pop(digest, None)
            return None
        return hit[0]

    def put(self, digest: str, principal: Principal, token_seconds_left: float) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[digest] = (principal, time.monotonic() + min(self.ttl, token_seconds_left))

    def forget(self, digest: str) -> None:
        self._entries.pop(digest, None)

    def forget_user(self, user_id: str) -> None:
        for digest in [d for d, (p, _) in self._entries.items() if p.user_id == user_id]:
            self._entries.pop(digest, None)


class IdentityService:
    def __init__(
        self,
        session: AsyncSession,
        token_ttl: float,
        cache: TokenCache,
        *,
        vault: Vault | None = None,
        limiter: LoginLimiter | None = None,
        passwords: PasswordHashing | None = None,
    ) -> None:
        self.session = session
        self._passwords = passwords
        self.token_ttl = token_ttl
        self.cache = cache
        self.vault = vault  # needed to set passwords of bus accounts (their link keys)
        self.limiter = limiter  # needed to log in

    @property
    def passwords(self) -> PasswordHashing:
        if self._passwords is None:
            raise RuntimeError("setting or checking a password needs the zone's hashing")
        return self._passwords

    async def _link_key(self, username: str, password: str, roles: list[str]) -> bytes | None:
        if not needs_link_key(roles):
            return None
        if self.vault is None:
            raise RuntimeError("setting a bus account's password needs the zone's vault")
        # scrypt takes a few tens of milliseconds: not on the event loop.
        return await asyncio.to_thread(sealed_link_key, self.vault, username, password)

    # -- bootstrap -------------------------------------------------------------

    async def ensure_project(self, name: str, description: str = "") -> Project:
        project = await self.session.scalar(select(Project).where(Project.name == name))
        if project is None:
            project = Project(name=name, description=description)
            self.session.add(project)
            await self.session.flush()
        return project

    async def ensure_user(
        self, name: str, password: str, project_name: str, roles: list[str]
    ) -> User:
        """Create the account, or bring its password and roles back to the configured ones."""
        project = await self.ensure_project(project_name)
        user = await self.session.scalar(select(User).where(User.name == name))
        if user is None:
            user = User(
                name=name,
                password_hash=await self.passwords.hash(password),
                project_id=project.id,
                roles=roles,
            )
            self.session.add(user)
            log.info("bootstrap account created", extra={"user": name, "roles": roles})
        else:
            if not await self.passwords.verify(user.password_hash, password):
                await self._new_password(user, password)
            if set(user.roles) != set(roles):
                user.roles = roles
            user.enabled = True
        # Derived again at each start: the vault's key may have changed.
        user.link_key_secret = await self._link_key(name, password, roles)
        await self.session.flush()
        return user

    async def _new_password(self, user: User, password: str) -> None:
        """A new password; every token of the account dies, here and in other processes."""
        user.password_hash = await self.passwords.hash(password)
        await self.session.execute(delete(Token).where(Token.user_id == user.id))
        self.session.add(Revocation(user_id=user.id))
        self.cache.forget_user(user.id)

    async def set_password(self, user: User, password: str) -> None:
        """Change a password in the caller's transaction (its link key follows)."""
        await self._new_password(user, password)
        user.link_key_secret = await self._link_key(user.name, password, list(user.roles))

    # -- tokens ----------------------------------------------------------------

    async def issue_token(self, username: str, password: str, source: str) -> TokenOut:
        """Log in from `source` (the caller's address); 429 after too many failures."""
        if self.limiter is None:
            raise RuntimeError("logging in needs the zone's login limiter")
        counters = self.limiter.keys(username, source)
        await self.limiter.check(self.session, counters)
        user = await self.session.scalar(select(User).where(User.name == username))
        if user is not None:
            self.session.expunge(user)
        await self.session.rollback()  # hold no database connection while hashing
        ok = await self.passwords.verify(user.password_hash if user else None, password)
        if user is None or not ok or not user.enabled:
            await self.limiter.failed(self.session, counters)
            raise Unauthorized("invalid username or password", code="invalid_credentials")
        await self.limiter.succeeded(self.session, username)
        now = utcnow()
        await self.session.execute(
            delete(Token).where(Token.user_id == user.id, Token.expires_at < now)
        )
        token = secrets.token_urlsafe(32)
        expires_at = now + timedelta(seconds=self.token_ttl)
        self.session.add(Token(digest=token_digest(token), user_id=user.id, expires_at=expires_at))
        await self.session.commit()
        return TokenOut(token=token, expires_at=expires_at, user=user_out(user))

    async def resolve_token(self, token: str) -> Principal:
        """Read a token the cache does not hold (callers look there first) and cache it."""
        digest = token_digest(token)
        row = (
            await self.session.execute(
                select(Token, User)
                .join(User, User.id == Token.user_id)
                .where(Token.digest == digest)
            )
        ).first()
        now = utcnow()
        if row is None or row.Token.expires_at <= now or not row.User.enabled:
            raise Unauthorized("token is invalid or expired", code="invalid_token")
        user = row.User
        principal = Principal(
            user_id=user.id,
            username=user.name,
            project_id=user.project_id,
            roles=frozenset(user.roles),
        )
        self.cache.put(digest, principal, (row.Token.expires_at - now).total_seconds())
        return principal

    async def revoke_token(self, token: str) -> None:
        digest = token_digest(token)
        await self.session.execute(delete(Token).where(Token.digest == digest))
        self.session.add(Revocation(digest=digest))  # for the zone's other processes
        await self.session.commit()
        self.cache.forget(digest)

    # -- projects and users ----------------------------------------------------

    async def create_project(self, body: ProjectCreate) -> Project:
        project = Project(name=body.name, description=body.description)
        self.session.add(project)
        try:
            await self.session.commit()
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict(f"project '{body.name}' already exists") from exc
        return project

    async def list_projects(self) -> list[Project]:
        return list((await self.session.scalars(select(Project).order_by(Project.name))).all())

    async def find_project(self, ref: str) -> Project:
        project = await self.session.scalar(
            select(Project).where(or_(Project.id == ref, Project.name == ref))
        )
        if project is None:
            raise NotFound(f"project '{ref}' not found")
        return project

    async def delete_project(self, ref: str) -> None:
        project = await self.find_project(ref)
        if project.name in (ADMIN_PROJECT, SERVICE_PROJECT):
            raise Conflict(f"project '{project.name}' holds the bootstrap accounts")
        members = await self.session.scalar(select(User.id).where(User.project_id == project.id))
        if members is not None:
            raise Conflict(f"project '{project.name}' still has users")
        await self.session.delete(project)
        await self.session.commit()

    async def create_user(self, body: UserCreate, *, commit: bool = True) -> User:
        """A new account; with `commit=False` it is only flushed, for the caller's
        transaction to hold more (an agent's grant)."""
        roles = sorted(set(body.roles)) or [MEMBER]
        project = await self.find_project(body.project)
        user = User(
            name=body.name,
            password_hash=await self.passwords.hash(body.password),
            project_id=project.id,
            roles=roles,
            link_key_secret=await self._link_key(body.name, body.password, roles),
        )
        self.session.add(user)
        try:
            await (self.session.commit() if commit else self.session.flush())
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict(f"user '{body.name}' already exists") from exc
        return user

    async def list_users(self) -> list[User]:
        return list((await self.session.scalars(select(User).order_by(User.name))).all())

    async def delete_user(self, ref: str, *, caller: Principal) -> None:
        user = await self.session.scalar(select(User).where(or_(User.id == ref, User.name == ref)))
        if user is None:
            raise NotFound(f"user '{ref}' not found")
        if user.id == caller.user_id:
            raise Conflict("you cannot delete your own account")
        if AGENT in user.roles:
            # Its hosts must be released with it: that is DELETE /v1/agents/{name}.
            raise Conflict(
                f"'{user.name}' is an agent account: delete it with DELETE /v1/agents/{user.name}",
                code="agent_account",
            )
        await self.delete_account(user)

    async def delete_account(self, user: User) -> None:
        """Delete an account; its tokens die here and in the zone's other processes."""
        await self.session.delete(user)
        self.session.add(Revocation(user_id=user.id))  # for the zone's other processes
        await self.session.commit()
        self.cache.forget_user(user.id)
