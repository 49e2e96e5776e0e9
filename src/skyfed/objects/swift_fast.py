"""The data path of Swift objects, served before FastAPI's routing.

Through FastAPI, a 4 KiB object request cost the zone more CPU than the Swift
cluster it was forwarded to (routing, dependencies, two queries, httpx, a
streaming response's task group). Most object requests are plain: an owner of the
account reads or writes an object of a container that this process looked up a
moment ago. This layer serves exactly those, as the route would (the same
forwarding, the same answer), on the streaming pool of h1_stream:

- GET, HEAD, PUT or DELETE of `/v1/AUTH_<project id>/<container>/<object>`, with a
  token this process resolved lately (identity's token cache) of an owner: a
  member of the project, an admin, or a parent zone's service account;
- a container on one of the zone's own clusters or in a child zone (sent to the
  child's API as this zone's service account there, with the caller's identity,
  as the routes send it), as the routes recorded it (objects.locations), whose
  objects name nothing elsewhere (swift_refs);
- no copy (`X-Copy-From`), no write naming other objects (`X-Object-Manifest`,
  `X-Symlink-Target`), an upload of a declared or chunked length the clusters
  take, into an account without quotas (swift_quota) unless an admin sends it.

Anything else, and anything it is unsure of, goes on to the routes (swift_api),
which check and forward it in full and record what this layer needs next time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyfed.errors import AppError, BadRequest, Unauthorized
from skyfed.identity.identities import Identities
from skyfed.identity.principal import Principal
from skyfed.identity.service import token_digest
from skyfed.objects.cluster_pool import ClusterSession
from skyfed.objects.locations import Location
from skyfed.objects.models import Container, StorageCluster
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import child_upstream, cluster_upstream
from skyfed.objects.swift_access import owns
from skyfed.objects.swift_api import object_route, router
from skyfed.objects.swift_forward import FAILURES, HOP, ZONE
from skyfed.objects.swift_http import error_response, valid_name, with_trans_id
from skyfed.objects.swift_info import max_file_size
from skyfed.objects.swift_own_meta import OWN_META
from skyfed.objects.swift_quota import Quotas
from skyfed.transport.h1_stream import Answer, Origin, StreamError
from skyfed.wire import forwarded_headers
from skyfed.zones.models import ChildZone

_OBJECT = re.compile(r"/v1/(AUTH_[0-9a-f-]{36})/([^/]+)/(.+)", re.DOTALL)
METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# A request with one of these is the routes' to serve: copies, objects naming
# others, and skyfed's own metadata of static links (which the routes drop).
_OWN_META = frozenset(name.encode() for name in OWN_META)
ROUTES_ONLY = frozenset({b"x-copy-from", b"x-object-manifest", b"x-symlink-target"}) | _OWN_META
_HOP = frozenset(h.encode("latin-1") for h in HOP)
_SENT_NOT = _HOP | {b"expect", b"x-timestamp"}  # (a time is skyfed's to give: swift_forward)
# Headers of an answer that are the hop's (the server sends its own date), or skyfed's.
_ANSWERED_NOT = (_HOP - {b"content-length"}) | {b"expect", b"date"} | _OWN_META
WATCHED_SIZE = 1 << 20  # answers from this size on stop when the caller leaves
OBJECT_ROUTE = next(r for r in router.routes if getattr(r, "endpoint", None) is object_route)


class ClientGone(Exception):
    """The caller went away before its upload was all sent."""


class FastObjects:
    """An ASGI layer: plain object requests straight to their cluster."""

    def __init__(self, app: ASGIApp, *, parts: StorageParts, identities: Identities) -> None:
        self.app = app
        self.parts = parts
        self.identities = identities
        self._origins: dict[str, tuple[Origin, str, bytes]] = {}
        self.served = parts.core.metrics.counter(
            "skyfed_swift_fast_requests",
            "Object requests served by the data path (swift_fast), not the routes.",
            ("method",),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in METHODS:
            matched = _OBJECT.fullmatch(scope["path"])
            if matched is not None and await self._serve(scope, receive, send, matched):
                return
        await self.app(scope, receive, send)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, matched: re.Match[str]
    ) -> bool:
        """True when served here; False (nothing sent, nothing read) for the routes."""
        account, container, obj = matched.groups()
        if not (valid_name(container) and valid_name(obj)):
            return False
        project_id = account[5:]
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in headers:  # a repeated header: the routes join them
                return False
            headers[name] = value
        if not ROUTES_ONLY.isdisjoint(headers):
            return False
        if b"skyfed_slo_" in headers.get(b"content-type", b""):
            return False  # the routes refuse skyfed's own marks (swift_slo_marks)
        token = headers.get(b"x-auth-token") or headers.get(b"x-storage-token")
        if not token:
            return False
        caller = await self._caller(token.decode("latin-1"))
        if caller is None or not owns(caller, project_id):
            return False
        location = self.parts.locations.get(project_id, container)
        if location is None:
            location = await self._locate(project_id, container)
        if location is None or location.foreign_refs:
            return False
        method = scope["method"]
        length = headers.get(b"content-length")
        chunked = False
        if method == "PUT":
            if scope.get("query_string"):  # a manifest (SLO) is checked by the routes
                return False
            coding = headers.get(b"transfer-encoding", b"").lower()
            chunked = coding == b"chunked"
            if (coding and not chunked) or (length is None and not chunked):
                return False  # 501, 411: the routes' answers
            if length is not None and (
                not length.isdigit() or int(length) > max_file_size(self.parts.clusters.values())
            ):
                return False
            if not caller.is_admin and await self._quotas(project_id):
                return False  # the routes check them
        scope["route"] = OBJECT_ROUTE  # counted under the route's template
        self.served.labels(method).inc()
        path = (container, obj)
        await self._forward(scope, receive, send, location, account, path, headers, caller)
        return True

    async def _quotas(self, project_id: str) -> Quotas:
        known = self.parts.quotas.cached(project_id)
        if known is not None:
            return known
        async with self.parts.core.db.session() as session:
            return await self.parts.quotas.get(session, project_id)

    async def _caller(self, token: str) -> Principal | None:
        """Who the token is, from identity's cache or (a few times a minute) its table;
        None for a token that is not valid (the routes give the 401)."""
        caller = self.identities.tokens.get(token_digest(token))
        if caller is not None:
            return caller
        try:
            return await self.identities.principal(token)
        except Unauthorized:
            return None

    async def _locate(self, project_id: str, name: str) -> Location | None:
        """A container's place, looked up again once its entry is older than the
        entries' life (objects.locations): None when it is not there."""
        async with self.parts.core.db.session() as session:
            found = await session.get(Container, (project_id, name))
            if found is None or found.moving_to is not None:  # (a move: the routes')
                return None
            if found.child_id is not None:
                child = await session.get(ChildZone, found.child_id)
                upstream = child_upstream(self.parts, child, None) if child else None
            elif found.cluster_id is not None:
                cluster = await session.get(StorageCluster, found.cluster_id)
                upstream = cluster_upstream(self.parts, cluster) if cluster else None
            else:
                upstream = None
        if upstream is None:
            return None
        place_id = found.child_id or found.cluster_id or ""
        return self.parts.locations.remember(
            project_id, name, upstream, place_id, found.foreign_refs
        )

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        location: Location,
        account: str,
        path: tuple[str, str],
        headers: dict[bytes, bytes],
        caller: Principal,
    ) -> None:
        upstream = location.upstream
        # A child zone gets the caller's identity (it trusts this zone's checks).
        identity = _identity(caller) if upstream.kind == ZONE else b""
        method = scope["method"]
        upload = method == "PUT"
        body = _body(receive) if upload else None
        try:
            session = await upstream.connect(False)
            answer = await self._send(session, scope, account, path, headers, body, identity)
            if answer.status == 401 and body is None:  # the cluster's token expired
                answer.close()
                session = await upstream.connect(True)
                answer = await self._send(session, scope, account, path, headers, None, identity)
        except ClientGone:
            await _error(send, BadRequest("the client went away before its body was sent"), account)
            return
        except FAILURES as exc:  # (StreamError is an OSError)
            await _error(send, upstream.unavailable(exc), account)
            return
        # A caller that leaves a large download stops it (uvicorn drops what is sent
        # after a disconnect without a word): a task waits for the disconnect.
        watcher = None
        if method == "GET" and _large(answer):
            watcher = asyncio.create_task(_abort_on_disconnect(receive, answer))
        try:
            await _relay(scope, send, answer, headers, method)
        except StreamError:
            if watcher is None or not watcher.done() or watcher.cancelled():
                raise  # the cluster broke off: the caller sees its answer cut
        finally:
            if watcher is not None:
                watcher.cancel()
            answer.close()

    async def _send(
        self,
        session: ClusterSession,
        scope: Scope,
        account: str,
        path: tuple[str, str],
        headers: dict[bytes, bytes],
        body: AsyncIterator[bytes] | None,
        identity: bytes,
    ) -> Answer:
        origin, prefix, host = self._origin(session.base)
        target = "/".join(
            [prefix, quote(account, safe="")] + [quote(p, safe="/") for p in path]
        ).encode("ascii")
        query = scope.get("query_string") or b""
        if query:
            target += b"?" + query
        method = scope["method"]
        lines = [b"%s %s HTTP/1.1" % (method.encode("ascii"), target), b"host: " + host]
        lines += [n + b": " + v for n, v in headers.items() if n not in _SENT_NOT]
        lines.append(b"x-auth-token: " + session.token.encode("latin-1"))
        if identity:
            lines.append(identity)
        chunked = False
        if body is not None:
            length = headers.get(b"content-length")
            if length is not None:
                lines.append(b"content-length: " + length)
            else:
                chunked = True
                lines.append(b"transfer-encoding: chunked")
        lines.append(b"\r\n")
        return await self.parts.stream.request(
            origin, b"\r\n".join(lines), body, chunked=chunked, head_only=method == "HEAD"
        )

    def _origin(self, base: str) -> tuple[Origin, str, bytes]:
        """A cluster's `/v1` base as (where to connect, the path before the account,
        the Host header)."""
        known = self._origins.get(base)
        if known is None:
            url = urlsplit(base)
            tls = url.scheme == "https"
            port = url.port or (443 if tls else 80)
            host = url.hostname or ""
            known = (Origin(host, port, tls), url.path.rstrip("/"), url.netloc.encode("ascii"))
            self._origins[base] = known
        return known


def _identity(caller: Principal) -> bytes:
    """The caller's identity as forwarded header lines (swift_forward's for children)."""
    return b"\r\n".join(
        f"{name}: {value}".encode() for name, value in forwarded_headers(caller).items()
    )


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _large(answer: Answer) -> bool:
    for name, value in answer.headers:
        if name.lower() == b"content-length":
            return not value.isdigit() or int(value) >= WATCHED_SIZE
    return True


async def _abort_on_disconnect(receive: Receive, answer: Answer) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    answer.abort()


async def _relay(
    scope: Scope, send: Send, answer: Answer, headers: dict[bytes, bytes], method: str
) -> None:
    """The cluster's answer, its headers byte for byte (names as it cased them)."""
    raw = [(n, v) for n, v in answer.headers if n.lower() not in _ANSWERED_NOT]
    if headers.get(b"connection", b"").lower() == b"keep-alive":
        raw.append((b"Connection", b"keep-alive"))  # as Swift's proxy answers it
    await send({"type": "http.response.start", "status": answer.status, "headers": raw})
    if method == "HEAD" or answer.status in (204, 304):
        await send({"type": "http.response.body", "body": b""})
        return
    while True:
        chunk = await answer.read()
        last = not chunk or answer.at_end
        message: Message = {"type": "http.response.body", "body": chunk, "more_body": not last}
        await send(message)
        if last:
            return


async def _error(send: Send, exc: AppError, account: str) -> None:
    response = with_trans_id(error_response(exc, account))
    start = {"type": "http.response.start", "status": response.status_code}
    await send({**start, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
