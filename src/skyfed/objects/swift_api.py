"""The storage URL's container and object routes: `/v1/AUTH_<project id>/<container>[/<object>]`.

With `X-Auth-Token` (a skyfed token from `/auth/v1.0`), or none where a container's
read ACL lets anyone in (swift_access). A new container is placed in this
zone's subtree with room in its tier (`X-Storage-Policy`, else the zone's
`default_storage_tier`; places.py); the `containers` table remembers where, with
the container's ACLs and attributes, and every request on it is forwarded there
(swift_forward).
"""

from __future__ import annotations

import time
from dataclasses import replace

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.core import SessionDep
from skyfed.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LengthRequired,
    PayloadTooLarge,
    Unsupported,
)
from skyfed.identity.deps import IdentitiesDep
from skyfed.objects import (
    moves,
    moving_container,
    swift_refs,
    swift_slo,
    swift_slo_far,
    swift_slo_marks,
    swift_tempurl,
)
from skyfed.objects.api import PartsDep
from skyfed.objects.models import Container
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import known_container, place, upstream_of
from skyfed.objects.swift_access import Access, check_held_here, clean_acl, resolve
from skyfed.objects.swift_account import check_quotas
from skyfed.objects.swift_auth import ACCOUNT_PREFIX
from skyfed.objects.swift_copy import copy, is_copy
from skyfed.objects.swift_forward import forward
from skyfed.objects.swift_http import (
    drop_headers,
    header_path,
    swift_route,
)
from skyfed.objects.swift_info import max_file_size
from skyfed.objects.swift_meta import check_metadata, has_updates, meta_updates

ATTR = "container-attr"
ACL_HEADERS = ("x-container-read", "x-container-write")
# Set by owners only: from others, dropped (Swift's answer is the same).
OWNER_SET = frozenset(
    {
        "x-container-read",
        "x-container-write",
        "x-remove-container-read",
        "x-remove-container-write",
        "x-container-sync-key",
        "x-remove-container-sync-key",
        "x-container-sync-to",
        "x-remove-container-sync-to",
    }
)
# Never shown to whom an ACL lets in: the ACLs and where the container syncs to.
OWNER_ONLY = frozenset(
    {
        "x-container-read",
        "x-container-write",
        "x-container-sync-to",
        "x-container-sync-key",
        "x-container-meta-temp-url-key",
        "x-container-meta-temp-url-key-2",
    }
)


# Swift's API, as Swift documents it: not part of skyfed's OpenAPI document (its
# JSON error shape and fuzzing are for skyfed's own API).
router = APIRouter(tags=["swift"])
# A static link elsewhere goes to its backend as a dynamic one (swift_refs).
_STATIC_SENT = frozenset({"x-symlink-target-etag"})
METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE"]


async def _forget(session: AsyncSession, parts: StorageParts, container: Container) -> None:
    await session.delete(container)
    await session.commit()
    parts.locations.forget(container.project_id, container.name)
    parts.account_holders.forget(container.project_id)
    parts.placed.removed((container.cluster_id, container.child_id))


async def _versions_container(
    session: AsyncSession, project_id: str, headers: dict[str, str]
) -> Container | None:
    """The container named to keep this one's old versions (Swift's versioned_writes
    moves them there on the backend: the two must share a cluster)."""
    name = headers.get("x-versions-location") or headers.get("x-history-location")
    if not name:
        return None
    return await session.get(Container, (project_id, header_path(name)))


async def _segments_of(session: AsyncSession, project_id: str, name: str) -> Container | None:
    """`x_segments` goes beside `x` (where swiftclient and rclone put large objects'
    segments): a static large object's segments must be on its manifest's cluster."""
    base = name.removesuffix(swift_slo.SEGMENTS_SUFFIX)
    if base == name or not base:
        return None
    return await session.get(Container, (project_id, base))


def _check_beside(container: Container, versions: Container | None) -> None:
    if versions is not None and (versions.cluster_id, versions.child_id) != (
        container.cluster_id,
        container.child_id,
    ):
        raise Conflict(
            f"'{versions.name}' is on another cluster than '{container.name}': a versions "
            "container must share its cluster (name one made beside it)"
        )


def _names_others(request: Request) -> bool:
    """A write that may make an object naming others (a manifest, a link, a copy)."""
    if request.method not in ("PUT", "COPY"):
        return False
    headers = request.headers
    return (
        request.method == "COPY"
        or "x-copy-from" in headers
        or "x-object-manifest" in headers
        or "x-symlink-target" in headers
        or swift_slo.is_manifest_put(request)
    )


def _deletes_segments(request: Request) -> bool:
    return request.method == "DELETE" and request.query_params.get("multipart-manifest") == "delete"


def _check_length(request: Request, parts: StorageParts) -> None:
    """An upload says how long it is (or is chunked), within what the clusters take."""
    length = request.headers.get("content-length")
    coding = request.headers.get("transfer-encoding", "").lower()
    if coding and coding != "chunked":
        raise Unsupported(f"Transfer-Encoding {coding} is not supported")
    if length is None and not coding:
        raise LengthRequired("Missing Content-Length header.")
    if length is not None and int(length) > max_file_size(parts.clusters.values()):
        raise PayloadTooLarge("Your request is too large.")


def _remember(container: Container, headers: dict[str, str]) -> None:
    """What a successful PUT or POST set of the container's ACLs and attributes."""
    for header in ACL_HEADERS:
        value = headers.get(header)
        if f"x-remove-{header.removeprefix('x-')}" in headers:
            value = ""
        if value is not None:
            setattr(
                container, header.removeprefix("x-container-") + "_acl", clean_acl(header, value)
            )
    if has_updates(headers, ATTR):
        container.attributes = meta_updates(dict(container.attributes or {}), headers, ATTR)


def _with_attributes(answer: Response, container: Container, access: Access) -> Response:
    for name, value in (container.attributes or {}).items():
        answer.headers[f"X-Container-Attr-{name}"] = value
    if not access.owner:
        drop_headers(answer, OWNER_ONLY)
    return answer


@router.api_route(
    "/v1/{account:swift_account}/{container}", methods=METHODS, include_in_schema=False
)
@swift_route
async def container_route(
    account: str,
    container: str,
    request: Request,
    identities: IdentitiesDep,
    parts: PartsDep,
    session: SessionDep,
) -> Response:
    project_id = account.removeprefix(ACCOUNT_PREFIX)
    access = await resolve(request, identities, session, project_id)
    headers = {k.lower(): v for k, v in request.headers.items()}
    method = request.method
    if method != "GET" and method != "HEAD":  # where it is, what it names: asked anew
        parts.locations.forget(project_id, container)
        parts.account_holders.forget(project_id)
    if method in ("PUT", "POST"):
        access.container(method, None)
        await check_held_here(session, access)
        check_metadata(headers, ATTR)
        for header in ACL_HEADERS:
            if header in headers:
                clean_acl(header, headers[header])
    drop = frozenset(
        k for k in headers if k.startswith(("x-container-attr-", "x-remove-container-attr-"))
    )
    if not access.owner:  # what only owners set is not sent, nor remembered
        drop |= OWNER_SET
        headers = {k: v for k, v in headers.items() if k not in OWNER_SET}
    if method == "PUT":
        known = await session.get(Container, (project_id, container))
        asked = headers.get("x-storage-policy")
        placed_now = False
        versions = await _versions_container(session, project_id, headers)
        if known is None:
            tier = asked or parts.core.settings.default_storage_tier
            beside = versions or await _segments_of(session, project_id, container)
            try:
                known, placed_now = await place(session, parts, project_id, container, tier, beside)
            except Conflict:
                if beside is versions:
                    raise
                # No room beside its container: DLOs still read across (swift_refs).
                known, placed_now = await place(session, parts, project_id, container, tier)
        elif asked is not None and asked != known.tier:
            raise Conflict(f"container '{container}' is in tier '{known.tier}'")
        _check_beside(known, versions)
        upstream = await upstream_of(session, parts, known, access.caller)
        if upstream.source is not None:
            answer = await moving_container.serve(request, session, upstream, known, account, drop)
            if answer.status_code < 300:
                _remember(known, headers)
                await session.commit()
            return answer
        policy = upstream.tiers.get(known.tier, known.tier)
        await session.commit()  # hold no connection while the cluster answers
        try:
            answer = await forward(
                request, upstream, account, (container,), {"x-storage-policy": policy}, drop
            )
        except BaseException:
            if placed_now:
                await _forget(session, parts, known)
            raise
        if answer.status_code >= 300:
            if placed_now:  # a failed create leaves nothing
                await _forget(session, parts, known)
            return answer
        _remember(known, headers)
        await session.commit()
        return answer
    known = await known_container(session, access, container)
    access.container(method, known)
    if method == "DELETE":
        await check_held_here(session, access)
        if await moves.active_move(session, project_id, container):  # (emptying its old place)
            raise Conflict(f"container '{container}' is moving; delete it once it has moved")
    if method == "POST":
        _check_beside(known, await _versions_container(session, project_id, headers))
    upstream = await upstream_of(session, parts, known, access.caller)
    if upstream.source is not None:
        answer = await moving_container.serve(request, session, upstream, known, account, drop)
        if method == "POST" and answer.status_code < 300:
            _remember(known, headers)
            await session.commit()
        return _with_attributes(answer, known, access) if method != "POST" else answer
    await session.commit()  # hold no connection while the cluster answers
    answer = await forward(request, upstream, account, (container,), drop=drop)
    if method == "DELETE" and answer.status_code in (204, 404):
        await _forget(session, parts, known)
    elif method == "POST" and answer.status_code < 300:
        _remember(known, headers)
        await session.commit()
    elif method in ("GET", "HEAD"):
        _with_attributes(answer, known, access)
        if method == "GET" and known.foreign_refs:  # far large objects listed as Swift's
            answer = await swift_slo_marks.relist(answer)
    return answer


@router.api_route(
    "/v1/{account:swift_account}/{container}/{obj:path}",
    methods=[*METHODS, "COPY"],
    include_in_schema=False,
)
@swift_route
async def object_route(
    account: str,
    container: str,
    obj: str,
    request: Request,
    identities: IdentitiesDep,
    parts: PartsDep,
    session: SessionDep,
) -> Response:
    if swift_tempurl.is_signed(request):
        return await swift_tempurl.serve(request, session, parts, account, container, obj)
    if swift_slo_marks.forged_kind(request.headers.get("content-type")):
        raise BadRequest("a content type may not name skyfed_slo_ parameters (skyfed's own)")
    if _names_others(request):  # into a moving container: it keeps reading them so
        await moves.note_refs(session, account.removeprefix(ACCOUNT_PREFIX), container)
    if is_copy(request):
        return await copy(request, identities, parts, session, account, container, obj)
    project_id = account.removeprefix(ACCOUNT_PREFIX)
    access = await resolve(request, identities, session, project_id)
    read_at = time.monotonic()
    known = await known_container(session, access, container)
    access.object(request.method, known)
    if "version-id" in request.query_params and not access.owner:
        raise Forbidden("a version of an object is its owners' to read")
    upstream = await upstream_of(session, parts, known, access.caller)
    manifest = None
    static: dict[str, str] = {}  # a static link's target elsewhere, as skyfed checked it
    if request.method == "PUT":
        _check_length(request, parts)
        length = request.headers.get("content-length", "")
        await check_quotas(
            session, parts, access, known, account, int(length) if length.isdigit() else 0
        )
        static = await swift_refs.note_write(
            request, identities, session, parts, known, upstream, account
        )
        if swift_slo.is_manifest_put(request):
            info = swift_slo.limits(parts.clusters.values())
            manifest, far = await swift_slo.read_manifest(
                request, session, known, info, upstream, account
            )
            if far:  # segments elsewhere: skyfed checks and keeps it
                return await swift_slo_far.put(
                    request, session, parts, access, known, upstream, account,
                    (container, obj), manifest, info,
                )  # fmt: skip
    if request.method == "POST" and known.foreign_refs:  # skyfed's marks are kept
        await session.commit()  # hold no connection while the place answers
        if upstream.fill is not None:  # (moving: its marks are read where it goes)
            await upstream.fill(account, (container, obj))
        static = await swift_refs.kept_marks(request, upstream, account, (container, obj))
    if _deletes_segments(request) and known.foreign_refs:
        await session.commit()  # hold no connection while the place answers
        answer = await swift_refs.delete_through(
            request, session, parts, access, upstream, account, (container, obj)
        )
        if answer is not None:
            return answer
    if _deletes_segments(request) and not (access.owner or access.level):
        await session.commit()  # hold no connection while the place answers
        await swift_refs.check_segments_deletable(
            session, access, upstream, account, (container, obj)
        )
    place_id = known.cluster_id or known.child_id
    if place_id is not None and known.moving_to is None:  # for the data path (swift_fast)
        parts.locations.remember(
            project_id,
            container,
            replace(upstream, headers={}),
            place_id,
            known.foreign_refs,
            read_at,
        )
    await session.close()  # hold no connection while an object streams
    # What an object names (DLO segments, a symlink's target) is read through skyfed
    # when it is elsewhere, or when the caller's access there must be checked.
    by_acl = not (access.owner or access.level)
    if request.method in ("GET", "HEAD") and (known.foreign_refs or by_acl):
        answer = await swift_refs.read_through(
            request, identities, session, parts, access, upstream, account, (container, obj)
        )
        if answer is not None:
            return answer
    # skyfed's own metadata (static links, far large objects) is neither a client's
    # to set nor to see.
    drop = swift_refs.OWN_META | (_STATIC_SENT if static else frozenset())
    return await forward(request, upstream, account, (container, obj), static, drop, manifest)
