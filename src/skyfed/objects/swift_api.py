"""The storage URL's routes: a project's Swift account, its containers and objects.

`/v1/AUTH_<project id>/<container>/<object>` on any zone, with `X-Auth-Token` (a
skyfed token from `/auth/v1.0`). A new container is placed on one of this zone's
storage clusters with room in its tier (`X-Storage-Policy`, else the zone's
`default_storage_tier`); the `containers` table remembers where, and every request
on it is forwarded there as the cluster's reseller admin, on the project's account
of that cluster. Bodies are streamed both ways, never held whole.

This first slice serves containers and objects placed on this zone's own clusters;
account listings, placement in child zones, ACLs and cross-cluster semantics are
the next steps (docs/objects.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask
from starlette.convertors import Convertor, register_url_convertor

from skyfed.core import SessionDep
from skyfed.errors import Conflict, Forbidden, NotFound, Unauthorized, Unavailable
from skyfed.identity.deps import IdentitiesDep
from skyfed.identity.principal import MEMBER, Principal
from skyfed.objects.api import PartsDep
from skyfed.objects.cluster_pool import ClusterSession
from skyfed.objects.models import UP, Container, StorageCluster
from skyfed.objects.parts import StorageParts
from skyfed.objects.swift_auth import ACCOUNT_PREFIX

# Headers that are the hop's or the caller's own, never passed on.
_HOP = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "x-auth-token",
        "x-storage-token",
        "authorization",
        "content-length",
        "x-request-id",
        "traceparent",
        # Requests go as the cluster's reseller admin: what only an operator may set
        # (syncing a container to any host) is not a member's to pass on.
        "x-container-sync-to",
        "x-container-sync-key",
    }
)


class AccountConvertor(Convertor[str]):
    """Only `AUTH_<uuid>` segments reach these routes: /v1/zones/... stays skyfed's."""

    regex = f"{ACCOUNT_PREFIX}[0-9a-f-]{{36}}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("swift_account", AccountConvertor())
# Swift's API, as Swift documents it: not part of skyfed's OpenAPI document (its
# JSON error shape and fuzzing are for skyfed's own API).
router = APIRouter(tags=["swift"])
CLUSTER_UNAVAILABLE = "cluster_unavailable"
METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE"]


async def _caller(request: Request, identities: IdentitiesDep, account: str) -> Principal:
    token = request.headers.get("x-auth-token") or request.headers.get("x-storage-token")
    if not token:
        raise Unauthorized("X-Auth-Token is required (GET /auth/v1.0)")
    caller = await identities.principal(token)
    project_id = account.removeprefix(ACCOUNT_PREFIX)
    if not (caller.is_admin or (caller.project_id == project_id and MEMBER in caller.roles)):
        raise Forbidden("this account is another project's")
    return caller


async def _place(
    parts: PartsDep, session: SessionDep, project_id: str, name: str, tier: str
) -> Container:
    """This zone's cluster up with `tier` and the most free bytes; recorded, or the
    container another request recorded first."""
    clusters = (await session.scalars(select(StorageCluster))).all()  # as last polled
    candidates = [
        c for c in clusters if c.state == UP and tier in c.tiers and c.capacity_bytes > c.used_bytes
    ]
    if not candidates:
        raise Unavailable(
            f"no storage cluster here offers tier '{tier}' with room", code=CLUSTER_UNAVAILABLE
        )
    chosen = max(candidates, key=lambda c: c.capacity_bytes - c.used_bytes)
    container = Container(project_id=project_id, name=name, cluster_id=chosen.id, tier=tier)
    session.add(container)
    try:
        await session.commit()
    except IntegrityError:  # another request placed it first: that place holds
        await session.rollback()
        found = await session.get(Container, (project_id, name))
        if found is None:
            raise
        return found, False
    return container, True


async def _forward(
    request: Request,
    parts: StorageParts,
    cluster: StorageCluster,
    account: str,
    path: tuple[str, ...],
    extra: dict[str, str] | None = None,
) -> Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    headers |= extra or {}
    body = request.stream() if request.method in ("PUT", "POST") else None
    length = request.headers.get("content-length")
    if length is not None:
        headers["content-length"] = length
    try:
        cluster_session = await parts.pool.session(cluster)
        upstream = await _send(cluster_session, request, account, path, headers, body)
        if upstream.status_code == 401 and body is None:  # its token expired: once more
            await upstream.aclose()
            cluster_session = await parts.pool.session(cluster, fresh=True)
            upstream = await _send(cluster_session, request, account, path, headers, None)
    except (httpx.HTTPError, OSError) as exc:
        raise Unavailable(
            f"storage cluster '{cluster.name}' did not answer: {exc}", code=CLUSTER_UNAVAILABLE
        ) from exc
    answer_headers = {
        k: v for k, v in upstream.headers.items() if k.lower() not in _HOP | {"content-encoding"}
    }
    if request.method == "HEAD" or upstream.status_code in (204, 304):
        await upstream.aclose()
        if "content-length" in upstream.headers:
            answer_headers["content-length"] = upstream.headers["content-length"]
        return Response(status_code=upstream.status_code, headers=answer_headers)
    if "content-length" in upstream.headers:
        answer_headers["content-length"] = upstream.headers["content-length"]
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=answer_headers,
        background=BackgroundTask(upstream.aclose),
    )


async def _send(
    cluster: ClusterSession,
    request: Request,
    account: str,
    path: tuple[str, ...],
    headers: dict[str, str],
    body: AsyncIterator[bytes] | None,
) -> httpx.Response:
    outgoing = cluster.http.build_request(
        request.method,
        cluster.url(account, *path),
        params=list(request.query_params.multi_items()),
        headers={**headers, "x-auth-token": cluster.token},
        content=body,
    )
    return await cluster.http.send(outgoing, stream=True)


async def _forget(session: AsyncSession, container: Container) -> None:
    await session.delete(container)
    await session.commit()


async def _container(session: AsyncSession, project_id: str, name: str) -> Container:
    found = await session.get(Container, (project_id, name))
    if found is None:
        raise NotFound(f"container '{name}' not found")
    return found


@router.api_route(
    "/v1/{account:swift_account}/{container}", methods=METHODS, include_in_schema=False
)
async def container_route(
    account: str,
    container: str,
    request: Request,
    identities: IdentitiesDep,
    parts: PartsDep,
    session: SessionDep,
) -> Response:
    await _caller(request, identities, account)
    project_id = account.removeprefix(ACCOUNT_PREFIX)
    if request.method == "PUT":
        known = await session.get(Container, (project_id, container))
        asked = request.headers.get("x-storage-policy")
        placed_now = False
        if known is None:
            tier = asked or parts.core.settings.default_storage_tier
            known, placed_now = await _place(parts, session, project_id, container, tier)
        elif asked is not None and asked != known.tier:
            raise Conflict(f"container '{container}' is in tier '{known.tier}'")
        cluster = await _cluster(session, known)
        policy = cluster.tiers.get(known.tier, known.tier)
        await session.commit()  # hold no connection while the cluster answers
        try:
            answer = await _forward(
                request, parts, cluster, account, (container,), {"x-storage-policy": policy}
            )
        except BaseException:
            if placed_now:
                await _forget(session, known)
            raise
        if placed_now and answer.status_code >= 300:  # a failed create leaves nothing
            await _forget(session, known)
        return answer
    known = await _container(session, project_id, container)
    cluster = await _cluster(session, known)
    await session.commit()  # hold no connection while the cluster answers
    answer = await _forward(request, parts, cluster, account, (container,))
    if request.method == "DELETE" and answer.status_code in (204, 404):
        await _forget(session, known)
    return answer


@router.api_route(
    "/v1/{account:swift_account}/{container}/{obj:path}", methods=METHODS, include_in_schema=False
)
async def object_route(
    account: str,
    container: str,
    obj: str,
    request: Request,
    identities: IdentitiesDep,
    parts: PartsDep,
    session: SessionDep,
) -> Response:
    await _caller(request, identities, account)
    known = await _container(session, account.removeprefix(ACCOUNT_PREFIX), container)
    cluster = await _cluster(session, known)
    await session.close()  # hold no connection while an object streams
    return await _forward(request, parts, cluster, account, (container, obj))


async def _cluster(session: AsyncSession, container: Container) -> StorageCluster:
    cluster = await session.get(StorageCluster, container.cluster_id)
    if cluster is None:
        raise Unavailable(
            f"the cluster of container '{container.name}' is gone", code=CLUSTER_UNAVAILABLE
        )
    return cluster
