"""Swift's v1 auth, backed by skyfed's identity: `GET /auth/v1.0`.

A skyfed project is a Swift account. `X-Auth-User: <project>:<user>` with
`X-Auth-Key: <password>` logs the user in exactly as `POST /v1/auth/tokens` does
(the same failed-login limits), and answers the token and the account's storage
URL, `<zone URL>/v1/AUTH_<project id>`, as tempauth does: so python-swiftclient,
rclone and Swift's functional tests authenticate against a zone unchanged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from starlette.convertors import Convertor, register_url_convertor

from skyfed.core import SessionDep
from skyfed.errors import Unauthorized
from skyfed.identity.api import client_address
from skyfed.identity.deps import IdentitiesDep
from skyfed.identity.models import Project

router = APIRouter(tags=["swift"])
ACCOUNT_PREFIX = "AUTH_"


class AccountConvertor(Convertor[str]):
    """Only `AUTH_<uuid>` segments reach the storage URL's routes: /v1/zones/... stays skyfed's."""

    regex = f"{ACCOUNT_PREFIX}[0-9a-f-]{{36}}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("swift_account", AccountConvertor())


def account_of(project_id: str) -> str:
    return f"{ACCOUNT_PREFIX}{project_id}"


@router.get("/auth/v1.0", include_in_schema=True)
async def swift_auth(request: Request, identities: IdentitiesDep, session: SessionDep) -> Response:
    """Log in with X-Auth-User `project:user` and X-Auth-Key; X-Auth-Token and
    X-Storage-Url come back in the headers (and the URL in the body, as tempauth)."""
    user = request.headers.get("x-auth-user") or request.headers.get("x-storage-user") or ""
    key = request.headers.get("x-auth-key") or request.headers.get("x-storage-pass") or ""
    project_name, sep, username = user.partition(":")
    if not sep or not project_name or not username or not key:
        raise Unauthorized(
            "give X-Auth-User as project:user and X-Auth-Key", code="invalid_credentials"
        )
    settings = identities.core.settings
    service = identities.service(session)
    issued = await service.issue_token(
        username, key, client_address(request, settings.trusted_proxies)
    )
    project = await session.scalar(select(Project).where(Project.id == issued.user.project_id))
    if project is None or project.name != project_name:
        await service.revoke_token(issued.token)  # right password, another account
        raise Unauthorized("invalid username or password", code="invalid_credentials")
    storage_url = f"{settings.url}/v1/{account_of(project.id)}"
    expires = max(0, int((issued.expires_at - datetime.now(UTC)).total_seconds()))
    body = json.dumps({"storage": {"default": "local", "local": storage_url}})
    return Response(
        content=body,
        media_type="application/json",
        headers={
            "X-Auth-Token": issued.token,
            "X-Storage-Token": issued.token,
            "X-Storage-Url": storage_url,
            "X-Auth-Token-Expires": str(expires),
        },
    )
