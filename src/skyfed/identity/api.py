"""Identity routes: tokens, and the admin's projects and users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from skyfed.core import SessionDep
from skyfed.errors import BadRequest
from skyfed.identity.deps import ActingDep, AdminDep, BearerDep, IdentitiesDep, PrincipalDep
from skyfed.identity.principal import AGENT
from skyfed.identity.schemas import (
    ProjectCreate,
    ProjectList,
    ProjectOut,
    TokenOut,
    TokenRequest,
    UserCreate,
    UserList,
    UserOut,
)
from skyfed.identity.service import user_out
from skyfed.settings import NAME_PATTERN

router = APIRouter(prefix="/v1", tags=["identity"])
Ref = Annotated[str, Path(pattern=NAME_PATTERN)]


def client_address(request: Request, trusted_proxies: list[str]) -> str:
    """The caller's address: the peer's, or (behind a trusted proxy) the last address
    in X-Forwarded-For that is not itself a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if peer not in trusted_proxies:
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop[:64]
    return peer


@router.post(
    "/auth/tokens",
    status_code=201,
    response_model=TokenOut,
    responses={429: {"description": "too many failed logins for this user or address"}},
)
async def issue_token(
    body: TokenRequest, request: Request, identities: IdentitiesDep, session: SessionDep
) -> TokenOut:
    source = client_address(request, identities.core.settings.trusted_proxies)
    return await identities.service(session).issue_token(body.username, body.password, source)


@router.delete("/auth/tokens", status_code=204)
async def revoke_token(
    principal: PrincipalDep, credentials: BearerDep, identities: IdentitiesDep, session: SessionDep
) -> Response:
    """Revoke the token this request carries (log out)."""
    if credentials is None:  # a signed call over the bus: there is no token
        raise BadRequest("this call carries no token to revoke")
    await identities.service(session).revoke_token(credentials.credentials)
    return Response(status_code=204)


@router.get("/auth/whoami")
async def whoami(principal: ActingDep) -> dict[str, object]:
    return {
        "user_id": principal.user_id,
        "username": principal.username,
        "project_id": principal.project_id,
        "roles": sorted(principal.roles),
        "via": principal.via,
    }


@router.post("/projects", status_code=201, response_model=ProjectOut)
async def create_project(
    body: ProjectCreate, _: AdminDep, identities: IdentitiesDep, session: SessionDep
) -> ProjectOut:
    project = await identities.service(session).create_project(body)
    return ProjectOut.model_validate(project, from_attributes=True)


@router.get("/projects", response_model=ProjectList)
async def list_projects(_: AdminDep, identities: IdentitiesDep, session: SessionDep) -> ProjectList:
    projects = await identities.service(session).list_projects()
    return ProjectList(
        projects=[ProjectOut.model_validate(p, from_attributes=True) for p in projects]
    )


@router.delete("/projects/{ref}", status_code=204)
async def delete_project(
    ref: Ref, _: AdminDep, identities: IdentitiesDep, session: SessionDep
) -> Response:
    await identities.service(session).delete_project(ref)
    return Response(status_code=204)


@router.post("/users", status_code=201, response_model=UserOut)
async def create_user(
    body: UserCreate, _: AdminDep, identities: IdentitiesDep, session: SessionDep
) -> UserOut:
    if AGENT in body.roles:
        # An agent account without a grant could carry nothing: made with its grant.
        raise BadRequest(
            "agent accounts are made with POST /v1/agents (with the hosts they may carry)",
            code="use_agents_api",
        )
    return user_out(await identities.service(session).create_user(body))


@router.get("/users", response_model=UserList)
async def list_users(_: AdminDep, identities: IdentitiesDep, session: SessionDep) -> UserList:
    return UserList(users=[user_out(u) for u in await identities.service(session).list_users()])


@router.delete("/users/{ref}", status_code=204)
async def delete_user(
    ref: Ref, principal: AdminDep, identities: IdentitiesDep, session: SessionDep
) -> Response:
    await identities.service(session).delete_user(ref, caller=principal)
    return Response(status_code=204)
