"""Authentication for routes: a bearer token, optionally carrying a forwarded identity."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from skyfed.client import FORWARDED_PROJECT, FORWARDED_ROLES, FORWARDED_USER, FORWARDED_USER_ID
from skyfed.errors import BadRequest, Forbidden, Unauthorized
from skyfed.identity.principal import ADMIN, AGENT, FORWARDABLE_ROLES, SERVICE, Principal
from skyfed.identity.service import IdentityService, token_digest
from skyfed.runtime import RuntimeDep

_bearer = HTTPBearer(auto_error=False, description="A token from POST /v1/auth/tokens")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


async def current_principal(
    request: Request,
    runtime: RuntimeDep,
    credentials: BearerDep,
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required (POST /v1/auth/tokens)")
    # Most calls carry a token resolved moments ago: no session for those.
    caller = runtime.tokens.get(token_digest(credentials.credentials))
    if caller is None:
        async with runtime.db.session() as session:
            service = IdentityService(session, runtime.settings.token_ttl, runtime.tokens)
            caller = await service.resolve_token(credentials.credentials)
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
    return Principal(user_id, username, project_id, roles, via=caller.username)


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden(f"the '{ADMIN}' role is required")
    return principal


async def require_peer(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """An admin, or a parent zone's service account."""
    if not (principal.is_admin or principal.is_service):
        raise Forbidden(f"the '{ADMIN}' or '{SERVICE}' role is required")
    return principal


async def require_reporter(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """Who may send host heartbeats: an admin, a service account or a host agent."""
    if not (principal.is_admin or principal.is_service or principal.is_agent):
        raise Forbidden(f"the '{ADMIN}', '{SERVICE}' or '{AGENT}' role is required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
AdminDep = Annotated[Principal, Depends(require_admin)]
PeerDep = Annotated[Principal, Depends(require_peer)]
ReporterDep = Annotated[Principal, Depends(require_reporter)]
