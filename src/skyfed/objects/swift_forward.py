"""Forwarding a Swift request to the storage cluster that holds its container.

Requests go as the cluster's reseller admin, on the project's account of that
cluster (`AUTH_<project id>` there too), with the caller's headers and query as
given except the hop's and the caller's own; bodies are streamed both ways, never
held whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from skyfed.errors import Unavailable
from skyfed.objects.cluster_pool import ClusterSession
from skyfed.objects.models import StorageCluster
from skyfed.objects.parts import StorageParts

CLUSTER_UNAVAILABLE = "cluster_unavailable"
# Headers that are the hop's or the caller's own, never passed on.
HOP = frozenset(
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


def unavailable(cluster: StorageCluster, exc: BaseException | str) -> Unavailable:
    return Unavailable(
        f"storage cluster '{cluster.name}' did not answer: {exc}", code=CLUSTER_UNAVAILABLE
    )


async def forward(
    request: Request,
    parts: StorageParts,
    cluster: StorageCluster,
    account: str,
    path: tuple[str, ...],
    extra: Mapping[str, str] | None = None,
    drop: frozenset[str] = frozenset(),
) -> Response:
    """The cluster's answer to the request, streamed back; `extra` headers are sent
    with it, `drop` ones are neither sent nor answered."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP | drop}
    headers |= extra or {}
    body = request.stream() if request.method in ("PUT", "POST") else None
    length = request.headers.get("content-length")
    if length is not None:
        headers["content-length"] = length
    try:
        session = await parts.pool.session(cluster)
        upstream = await _send(session, request.method, account, path, request, headers, body)
        if upstream.status_code == 401 and body is None:  # its token expired: once more
            await upstream.aclose()
            session = await parts.pool.session(cluster, fresh=True)
            upstream = await _send(session, request.method, account, path, request, headers, None)
    except (httpx.HTTPError, OSError) as exc:
        raise unavailable(cluster, exc) from exc
    answer_headers = {
        k: v
        for k, v in upstream.headers.items()
        if k.lower() not in HOP | drop | {"content-encoding"}
    }
    if "content-length" in upstream.headers:
        answer_headers["content-length"] = upstream.headers["content-length"]
    if request.method == "HEAD" or upstream.status_code in (204, 304):
        await upstream.aclose()
        return Response(status_code=upstream.status_code, headers=answer_headers)
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=answer_headers,
        background=BackgroundTask(upstream.aclose),
    )


async def _send(
    cluster: ClusterSession,
    method: str,
    account: str,
    path: tuple[str, ...],
    request: Request | None,
    headers: Mapping[str, str],
    body: AsyncIterator[bytes] | None,
    params: list[tuple[str, str]] | None = None,
) -> httpx.Response:
    if params is None and request is not None:
        params = list(request.query_params.multi_items())
    outgoing = cluster.http.build_request(
        method,
        cluster.url(account, *path),
        params=params,
        headers={**headers, "x-auth-token": cluster.token},
        content=body,
    )
    return await cluster.http.send(outgoing, stream=True)


# An account listing of 10,000 containers is about 1.3 MB of JSON.
MAX_LISTING_BYTES = 32 << 20


async def ask(
    parts: StorageParts,
    cluster: StorageCluster,
    method: str,
    account: str,
    params: list[tuple[str, str]] | None = None,
) -> tuple[int, httpx.Headers, Any]:
    """A small request of skyfed's own to a cluster (an account's HEAD or listing):
    status, headers and the JSON body (None when there is none)."""
    try:
        for fresh in (False, True):
            session = await parts.pool.session(cluster, fresh=fresh)
            upstream = await _send(session, method, account, (), None, {}, None, params or [])
            try:
                if upstream.status_code == 401 and not fresh:
                    continue
                chunks, size = [], 0
                async for chunk in upstream.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_LISTING_BYTES:
                        raise unavailable(cluster, "its listing is too large")
                    chunks.append(chunk)
            finally:
                await upstream.aclose()
            body = b"".join(chunks)
            return upstream.status_code, upstream.headers, json.loads(body) if body else None
    except (httpx.HTTPError, OSError, ValueError) as exc:
        raise unavailable(cluster, exc) from exc
    raise unavailable(cluster, "it refused skyfed's token twice")
