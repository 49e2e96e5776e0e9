"""Forwarding a Swift request to where its container is: a storage cluster of this
zone, or the child zone it was placed in.

To a cluster, requests go as its reseller admin, on the project's account there
(`AUTH_<project id>` on the cluster too); to a child, as this zone's service
account for it, with the end user's identity, which the child trusts this zone to
have checked (swift_access). The caller's headers and query go as given except the
hop's and the caller's own; bodies are streamed both ways, never held whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from skyfed.errors import BadRequest, Unavailable
from skyfed.objects.child_pool import ChildLoginFailed
from skyfed.objects.cluster_pool import ClusterSession
from skyfed.objects.swift_backend import BackendError
from skyfed.objects.swift_listing import ListingQuery, merge
from skyfed.wire import FORWARDED_PROJECT, FORWARDED_ROLES, FORWARDED_USER, FORWARDED_USER_ID

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
        # An identity is forwarded by this zone alone, never passed through.
        FORWARDED_USER_ID.lower(),
        FORWARDED_USER.lower(),
        FORWARDED_PROJECT.lower(),
        FORWARDED_ROLES.lower(),
    }
)


CLUSTER = "storage cluster"
ZONE = "zone"


@dataclass
class Upstream:
    """Where requests on a container go: its cluster, or the child zone holding it."""

    kind: str  # "storage cluster" or "zone"
    name: str
    connect: Callable[[bool], Awaitable[ClusterSession]]  # (fresh) -> session
    # skyfed tier -> the name the upstream gives it (a cluster's storage policy).
    tiers: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request
    # While the container moves here (objects/moves): where it comes from. Its
    # objects not copied yet are read there, deleted in both, copied here before a
    # POST changes them (`fill`: copy one from `source` unless here already).
    source: Upstream | None = None
    fill: Callable[[str, tuple[str, ...]], Awaitable[None]] | None = None

    def unavailable(self, exc: BaseException | str) -> Unavailable:
        return Unavailable(
            f"{self.kind} '{self.name}' did not answer: {exc}", code=CLUSTER_UNAVAILABLE
        )


FAILURES = (httpx.HTTPError, OSError, BackendError, ChildLoginFailed)


async def forward(
    request: Request,
    upstream: Upstream,
    account: str,
    path: tuple[str, ...],
    extra: Mapping[str, str] | None = None,
    drop: frozenset[str] = frozenset(),
    body: bytes | None = None,
    *,
    anonymous: bool = False,
) -> Response:
    """The upstream's answer to the request, streamed back; `extra` headers are sent
    with it, `drop` ones are neither sent nor answered; `body`: the request's, read
    already; `anonymous`: sent with no credential of skyfed's (a temporary URL's)."""
    answer = await pass_on(request, upstream, account, path, extra, drop, body, anonymous)
    return await relay(request, answer, drop)


async def pass_on(
    request: Request,
    upstream: Upstream,
    account: str,
    path: tuple[str, ...],
    extra: Mapping[str, str] | None = None,
    drop: frozenset[str] = frozenset(),
    body: bytes | None = None,
    anonymous: bool = False,
) -> httpx.Response:
    """The request sent on as given (but for `drop`, plus `extra`); its answer
    streaming, for `relay` (or the caller, who then closes it)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP | drop}
    headers |= extra or {}
    params = list(request.query_params.multi_items())
    sent: AsyncIterator[bytes] | None
    if body is not None:
        headers["content-length"] = str(len(body))
        sent = once(body)
    else:
        sent = request.stream() if request.method in ("PUT", "POST") else None
        length = request.headers.get("content-length")
        if length is not None:
            headers["content-length"] = length
    return await open_stream(
        upstream, request.method, account, path, headers, params, sent, anonymous=anonymous
    )


async def once(body: bytes) -> AsyncIterator[bytes]:
    """`body` as a stream of one piece."""
    yield body


async def relay(
    request: Request, answer: httpx.Response, drop: frozenset[str] = frozenset()
) -> Response:
    """An upstream's answer, streamed back to the caller, its headers byte for byte
    (names as the backend cased them, values in whatever bytes it sent)."""
    skip = HOP | drop | {"date"}  # (the server sends its own date)
    raw = [(k, v) for k, v in answer.headers.raw if k.decode("latin-1").lower() not in skip]
    if "content-length" in answer.headers:
        raw.append((b"content-length", answer.headers["content-length"].encode()))
    if request.headers.get("connection", "").lower() == "keep-alive":
        raw.append((b"Connection", b"keep-alive"))  # as Swift's proxy answers it
    response: Response
    if request.method == "HEAD" or answer.status_code in (204, 304):
        await answer.aclose()
        response = Response(status_code=answer.status_code)
    else:
        response = StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            background=BackgroundTask(answer.aclose),
        )
    response.raw_headers = raw
    return response


async def open_stream(
    upstream: Upstream,
    method: str,
    account: str,
    path: tuple[str, ...],
    headers: Mapping[str, str],
    params: list[tuple[str, str]],
    body: AsyncIterator[bytes] | None = None,
    *,
    anonymous: bool = False,
    timestamp: str | None = None,
) -> httpx.Response:
    """A request of skyfed's own whose answer is streamed (the caller closes it);
    `anonymous`: without skyfed's credential (nor an identity it forwards). An object
    of a container that moves is read, changed and deleted as `moving` says.

    `X-Timestamp` is skyfed's alone to send (a move's copies keep their objects'
    times with it: a backend that honours it would let a client backdate a write)."""
    headers = {k: v for k, v in headers.items() if k.lower() != "x-timestamp"}
    if timestamp is not None:
        headers["x-timestamp"] = timestamp
    if upstream.source is not None and len(path) == 2:
        return await moving(upstream, method, account, path, headers, params, body, anonymous)
    return await _open(upstream, method, account, path, headers, params, body, anonymous)


async def moving(
    upstream: Upstream,
    method: str,
    account: str,
    path: tuple[str, ...],
    headers: Mapping[str, str],
    params: list[tuple[str, str]],
    body: AsyncIterator[bytes] | None,
    anonymous: bool,
) -> httpx.Response:
    """An object of a container moving to `upstream` from `upstream.source`: writes
    land where it goes (the move's copies carry their objects' timestamps, so Swift
    keeps whichever is newer: a write or a delete made meanwhile wins); a read looks
    there first, then where it comes from; a delete is made in both; a POST first
    copies the object over (it changes metadata where reads look first)."""
    source = upstream.source
    assert source is not None

    async def send(place: Upstream) -> httpx.Response:
        return await _open(place, method, account, path, headers, params, body, anonymous)

    if method == "POST" and upstream.fill is not None:
        await upstream.fill(account, path)
    answer = await send(upstream)
    if method in ("GET", "HEAD") and answer.status_code == 404:
        await answer.aclose()
        return await send(source)
    if method == "DELETE":
        # Acknowledged only once gone from both: a copy left where it comes from
        # would still be read (and copied back by a cancel).
        try:
            there = await send(source)
        except BaseException:
            await answer.aclose()
            raise
        if there.status_code >= 300 and there.status_code not in (404, 409):
            await answer.aclose()
            await there.aclose()
            raise source.unavailable(f"its delete there answered {there.status_code}")
        if answer.status_code == 404 and there.status_code < 300:
            await answer.aclose()
            return there
        await there.aclose()
    return answer


async def _open(
    upstream: Upstream,
    method: str,
    account: str,
    path: tuple[str, ...],
    headers: Mapping[str, str],
    params: list[tuple[str, str]],
    body: AsyncIterator[bytes] | None,
    anonymous: bool,
) -> httpx.Response:
    sent = {} if anonymous else {**upstream.headers}
    sent |= headers
    try:
        session = await upstream.connect(False)
        answer = await _send(session, method, account, path, sent, body, params, anonymous)
        if answer.status_code == 401 and body is None and not anonymous:
            await answer.aclose()
            session = await upstream.connect(True)
            answer = await _send(session, method, account, path, sent, None, params)
    except ClientDisconnect as exc:  # the caller left mid-upload: nobody to answer
        raise BadRequest("the client went away before its body was sent") from exc
    except FAILURES as exc:
        raise upstream.unavailable(exc) from exc
    return answer


async def _send(
    session: ClusterSession,
    method: str,
    account: str,
    path: tuple[str, ...],
    headers: Mapping[str, str],
    body: AsyncIterator[bytes] | None,
    params: list[tuple[str, str]],
    anonymous: bool = False,
) -> httpx.Response:
    # As bytes: a header's value goes on as the caller sent it (Starlette decodes
    # them as Latin-1, which gives every byte back), UTF-8 metadata included.
    raw = [(_bytes(k), _bytes(v)) for k, v in headers.items()]
    if not anonymous:
        raw.append((b"x-auth-token", session.token.encode()))
    outgoing = session.http.build_request(
        method, session.url(account, *path), params=params, headers=raw, content=body
    )
    return await session.http.send(outgoing, stream=True)


def merged(
    there: tuple[int, httpx.Headers, Any],
    here: tuple[int, httpx.Headers, Any],
    params: list[tuple[str, str]],
) -> tuple[int, httpx.Headers, Any]:
    """Two places' answers to one listing, as one: an entry in both is the first's."""
    if there[0] >= 300 and here[0] >= 300:
        return there
    main = there if there[0] < 300 else here
    pages = [a[2] if a[0] < 300 and isinstance(a[2], list) else [] for a in (there, here)]
    return main[0], main[1], merge(pages, ListingQuery.parse(dict(params)))


def _bytes(text: str) -> bytes:
    """A header as bytes: Latin-1 gives back what a caller sent (Starlette's reading);
    text read from a backend's answer by httpx (UTF-8 metadata) goes as UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


# An account listing of 10,000 containers is about 1.3 MB of JSON.
MAX_LISTING_BYTES = 32 << 20


async def ask(
    upstream: Upstream,
    method: str,
    account: str,
    params: list[tuple[str, str]],
    path: tuple[str, ...] = (),
) -> tuple[int, httpx.Headers, Any]:
    """A small request of skyfed's own (an account's HEAD or listing): status,
    headers and the JSON body (None when there is none). A moving container's listing
    is both places' (`merged`)."""
    if upstream.source is not None and len(path) == 1 and method == "GET":
        there, here = await asyncio.gather(
            ask(replace(upstream, source=None), method, account, params, path),
            ask(upstream.source, method, account, params, path),
        )
        return merged(there, here, params)
    answer = await open_stream(upstream, method, account, path, {}, params)
    try:
        chunks, size = [], 0
        async for chunk in answer.aiter_bytes():
            size += len(chunk)
            if size > MAX_LISTING_BYTES:
                raise upstream.unavailable("its listing is too large")
            chunks.append(chunk)
        body = b"".join(chunks)
        return answer.status_code, answer.headers, orjson.loads(body) if body else None
    except (*FAILURES, ValueError) as exc:
        raise upstream.unavailable(exc) from exc
    finally:
        await answer.aclose()
