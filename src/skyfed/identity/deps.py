"""Authentication for routes: a bearer token, and on some routes a forwarded identity.

A parent zone's service account may act for an end user (`X-Skyfed-User-Id` and
friends) only on the routes a parent uses to act for one: servers, delegated
creates, locate (`ActingDep`, `UserDep`). Everywhere else a forwarded identity is
refused (403), so a service credential never reaches users, projects, zones,
hosts or flavors with an admin's powers.

A call that came over the zone's bus carries no token: the bus server verified
its signature and put the signing account in the request's ASGI scope, which
no HTTP request can set (`transport/signing.py`).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from skyfed.core import provided
from skyfed.errors import BadRequest, Forbidden, Unauthorized
from skyfed.identity.identities import Identities
from skyfed.identity.principal import (
    ADMIN,
    AGENT,
    FORWARDABLE_ROLES,
    MEMBER,
    SERVICE,
    Principal,
)
from skyfed.transport.signing import BUS_CALLER
from skyfed.wire import FORWARDED_PROJECT, FORWARDED_ROLES, FORWARDED_USER, FORWARDED_USER_ID

_bearer = HTTPBearer(auto_error=False, description="A token from POST /v1/auth/tokens")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
IdentitiesDep = Annotated[Identities, Depends(provided(Identities))]


async def token_principal(
    request: Request, identities: IdentitiesDep, credentials: BearerDep
) -> Principal:
    """Who the bearer token belongs to; over the bus, who signed the call."""
    signed = request.scope.get(BUS_CALLER)
    if isinstance(signed, Principal):
        return signed
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required (POST /v1/auth/tokens)")
    return await identities.principal(credentials.credentials)


async def current_principal(
    request: Request, caller: Annotated[Principal, Depends(token_principal)]
) -> Principal:
    """The token's own identity; a forwarded identity is refused on this route."""
    if request.headers.get(FORWARDED_USER_ID) is not None:
        raise Forbidden(
            "this route does not accept a forwarded identity "
            "(only servers, delegated creates and locate do)",
            code="forwarding_refused",
        )
    return caller


async def acting_principal(
    request: Request, caller: Annotated[Principal, Depends(token_principal)]
) -> Principal:
    """The token's identity, or the end user a parent zone's service account acts for."""
    forwarded_id = request.headers.get(FORWARDED_USER_ID)
    if forwarded_id is None:
        return caller
    if not caller.is_service:
        raise Forbidden(f"only a '{SERVICE}' account may forward an identity")
    return _forwarded(request, forwarded_id, caller)


def _forwarded(request: Request, user_id: str, caller: Principal) -> Principal:
    username = request.headers.get(FORWARDED_USER, "")
    project_id = request.headers.get(FORWARDED_PROJECT, "")
    roles = frozenset(r for r in request.headers.get(FORWARDED_ROLES, "").split(",") if r)
    for label, value in (("user id", user_id), ("user", username), ("project id", project_id)):
        if not _ID_RE.match(value):
            raise BadRequest(f"forwarded {label} is missing or malformed")
    if not roles <= FORWARDABLE_ROLES:
        raise BadRequest(f"forwarded roles must be among {sorted(FORWARDABLE_ROLES)}")
    if not roles:
        raise BadRequest("a forwarded identity needs at least one role")
    return Principal(user_id, username, project_id, roles, via=caller.username)


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden(f"the '{ADMIN}' role is required")
    return principal


def _end_user(principal: Principal) -> Principal:
    """A member or an admin: never a peer's or an agent's own account."""
    if not (principal.is_admin or MEMBER in principal.roles):
        raise Forbidden(f"the '{MEMBER}' or '{ADMIN}' role is required")
    return principal


async def require_user(principal: Annotated[Principal, Depends(acting_principal)]) -> Principal:
    """An end user, calling or forwarded by a parent zone."""
    return _end_user(principal)


async def require_direct_user(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """An end user calling with their own token."""
    return _end_user(principal)


async def require_peer(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """An admin, or a parent zone's service account."""
    if not (principal.is_admin or principal.is_service):
        raise Forbidden(f"the '{ADMIN}' or '{SERVICE}' role is required")
    return principal


async def require_reporter(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """Who may send host heartbeats: an admin or a host agent."""
    if not (principal.is_admin or principal.is_agent):
        raise Forbidden(f"the '{ADMIN}' or '{AGENT}' role is required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
ActingDep = Annotated[Principal, Depends(acting_principal)]
AdminDep = Annotated[Principal, Depends(require_admin)]
UserDep = Annotated[Principal, Depends(require_user)]
DirectUserDep = Annotated[Principal, Depends(require_direct_user)]
PeerDep = Annotated[Principal, Depends(require_peer)]
ReporterDep = Annotated[Principal, Depends(require_reporter)]
