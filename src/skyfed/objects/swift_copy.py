"""Server-side copies (`COPY` with `Destination`, `PUT` with `X-Copy-From`), also
between containers on different clusters or in different child zones.

Where source and destination are in one place, the request goes there as is and
the backend's copy does the work. Elsewhere skyfed does what Swift's copy does:
reads the source (as the caller may: read access there, write access at the
destination), streams it into the destination with the source's content type and
metadata (the request's own on top, or alone with `X-Fresh-Metadata`), and
answers as Swift does (201 with X-Copied-From and the rest).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

import httpx
from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import (
    AppError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Unauthorized,
)
from skyfed.identity.identities import Identities
from skyfed.objects import swift_assembly, swift_slo_far, swift_slo_marks
from skyfed.objects.models import Container
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import known_container, upstream_of
from skyfed.objects.swift_access import Access, resolve
from skyfed.objects.swift_account import check_quotas
from skyfed.objects.swift_auth import ACCOUNT_PREFIX
from skyfed.objects.swift_forward import HOP, Upstream, ask, forward, once, open_stream
from skyfed.objects.swift_http import header_path
from skyfed.objects.swift_own_meta import OWN_META
from skyfed.objects.swift_refs import check_source, same_place

# What a copy takes from its source, besides X-Object-Meta-*.
_COPIED = ("content-type", "content-encoding", "content-disposition", "content-language")
# What the request may set on the destination.
_SETTABLE = (*_COPIED, "x-delete-at", "x-delete-after", "etag", "x-symlink-target-account")
# What a manifest or a symlink names, copied with it (read with `_SOURCE_PARAMS`).
_NAMING = ("x-object-manifest", "x-symlink-target", "x-symlink-target-account")
# What the source's read may pass on (copy a manifest or a symlink itself).
_SOURCE_PARAMS = ("multipart-manifest", "symlink")


def is_copy(request: Request) -> bool:
    return request.method == "COPY" or (
        request.method == "PUT" and "x-copy-from" in request.headers
    )


def _split(value: str, header: str) -> tuple[str, str]:
    container, _, obj = header_path(value).lstrip("/").partition("/")
    if not container or not obj:
        raise PreconditionFailed(f"{header} must be of the form <container>/<object>")
    return container, obj


def _account(value: str | None, default: str) -> str:
    account = header_path(value) if value else default
    if not account.startswith(ACCOUNT_PREFIX):
        raise PreconditionFailed(f"'{account}' is not an account of this Swift API")
    return account


async def copy(
    request: Request,
    identities: Identities,
    parts: StorageParts,
    session: AsyncSession,
    account: str,
    container: str,
    obj: str,
) -> Response:
    headers = request.headers
    if request.method == "COPY":
        if "destination" not in headers:
            raise PreconditionFailed("COPY needs a Destination header")
        source = (account, container, obj)
        target = (_account(headers.get("destination-account"), account),
                  *_split(headers["destination"], "Destination"))  # fmt: skip
    else:
        if int(headers.get("content-length") or 0) > 0:
            raise BadRequest("a copy's body is empty (X-Copy-From names what is copied)")
        source = (_account(headers.get("x-copy-from-account"), account),
                  *_split(headers["x-copy-from"], "X-Copy-From"))  # fmt: skip
        target = (account, container, obj)
    source_up, source_container, reader = await _end(
        request, identities, parts, session, source, "GET"
    )
    followed = None
    if source_container.foreign_refs or not (reader.owner or reader.level):
        await session.commit()  # hold no connection while the source's place answers
        followed = await check_source(
            request, identities, session, parts, reader, source_up, source
        )
        if followed is not None:  # a link to an object elsewhere: its target is copied
            source_up, source = followed
    whole_far = None  # a far large object's manifest, read whole (not itself)
    if source_container.foreign_refs and not any(k in request.query_params for k in _SOURCE_PARAMS):
        await session.commit()  # hold no connection while the source's place answers
        status, probed, _ = await ask(
            source_up, "HEAD", source[0], swift_slo_marks.PROBE, source[1:]
        )
        if status < 300 and swift_slo_marks.is_far(probed):
            whole_far = probed
    try:
        target_up, target_container, access = await _end(
            request, identities, parts, session, target, "PUT"
        )
    except AppError:  # as Swift, which reads the source first: a missing one is 404
        status, _, _ = await ask(source_up, "HEAD", source[0], [], source[1:])
        if status == 404:
            raise NotFound(f"object '{source[2]}' not found in '{source[1]}'") from None
        raise
    if not (access.caller and access.caller.is_admin) and await parts.quotas.get(
        session, access.project_id
    ):  # the copy is an upload of the source's length (a manifest's own, when asked)
        await session.commit()  # hold no connection while the source answers
        params = [(k, v) for k, v in request.query_params.multi_items() if k in _SOURCE_PARAMS]
        status, found, _ = await ask(source_up, "HEAD", source[0], params, source[1:])
        length = found.get("content-length", "") if status < 300 else ""
        if whole_far is not None:  # the large object's bytes are what is written
            length = whole_far.get(swift_slo_marks.SLO_BYTES, "")
        await check_quotas(
            session, parts, access, target_container, target[0],
            int(length) if length.isdigit() else 0,
        )  # fmt: skip
    itself = any(k in request.query_params for k in _SOURCE_PARAMS)
    if itself and not target_container.foreign_refs:  # a manifest or a link, copied:
        target_container.foreign_refs = True  # what it names may be elsewhere
        await session.commit()
        parts.locations.forget(target_container.project_id, target_container.name)
    if whole_far is not None:  # a far large object's bytes: assembled by skyfed
        pieces = await swift_slo_far.pieces_of(
            session, parts, reader, source_up, source[0], source[1:]
        )
        described = {**whole_far, "content-length": str(sum(p.size for p in pieces))}
        if "content-type" in described:
            described["content-type"] = swift_slo_marks.clean_kind(described["content-type"])
        return await _write(
            request, target_up, source, target, described, swift_assembly.whole(pieces)
        )
    # (A followed link's target is read by skyfed: the request names the link.)
    if followed is None and same_place(source_up, target_up):
        await session.close()  # hold no connection while an object streams
        return await forward(request, source_up, account, (container, obj), drop=OWN_META)
    if request.query_params.get("multipart-manifest") == "get":
        await session.commit()  # hold no connection while the source answers
        status, found, _ = await ask(source_up, "HEAD", source[0], [], source[1:])
        if status < 300 and found.get("x-static-large-object", "").lower() == "true":
            return await _manifest_across(
                session, access, target_container, source_up, target_up, source, target, found
            )
    await session.close()  # hold no connection while an object streams
    return await _across(request, source_up, target_up, source, target)


async def _manifest_across(
    session: AsyncSession,
    access: Access,
    target_container: Container,
    source_up: Upstream,
    target_up: Upstream,
    source: tuple[str, str, str],
    target: tuple[str, str, str],
    described: Mapping[str, str],
) -> Response:
    """A static large object's manifest itself, copied to a container on another
    cluster: put there as a manifest (Swift's copy does the same on one cluster), so
    its segments are looked for in the destination's account, where its backend
    checks them. The copier must be able to read each (Swift's 400 naming every
    segment it may not), and they must be beside the destination (swift_slo)."""
    raw = [("multipart-manifest", "get"), ("format", "raw")]
    status, _, segments = await ask(source_up, "GET", source[0], raw, source[1:])
    if status >= 300 or not isinstance(segments, list):
        raise NotFound(f"object '{source[2]}' not found in '{source[1]}'")
    by_container: dict[str, list[str]] = {}  # the segments' paths, by their container
    for segment in segments:
        path = segment.get("path") if isinstance(segment, dict) else None
        if isinstance(path, str):
            by_container.setdefault(path.lstrip("/").split("/", 1)[0], []).append(path)
    refused: list[str] = []
    for name, paths in by_container.items():
        try:
            found = await known_container(session, access, name)
            access.object("GET", found)
        except NotFound:
            continue  # the backend answers 404 for each of its segments
        except (Forbidden, Unauthorized):
            refused += paths
            continue
        if (found.cluster_id, found.child_id) != (
            target_container.cluster_id,
            target_container.child_id,
        ):
            raise Conflict(
                f"segments in container '{name}' are on another cluster than "
                f"'{target_container.name}': a static large object's segments must be "
                "beside its manifest"
            )
    await session.close()  # hold no connection while the destination answers
    if refused:
        lines = "\n".join(f"{quote(path)}, 403 Forbidden" for path in refused)
        return Response(f"Errors:\n{lines}", 400, media_type="text/plain")
    sent = {
        k: v
        for k, v in described.items()
        if k.lower().startswith("x-object-meta-") or k.lower() in _COPIED
    }
    sent["content-type"] = described.get("content-type", "application/octet-stream")
    body = json.dumps(segments).encode()
    sent["content-length"] = str(len(body))
    put = [("multipart-manifest", "put")]
    written = await open_stream(target_up, "PUT", target[0], target[1:], sent, put, body=once(body))
    return await _copied(written, source, described.get("last-modified"))


async def _end(
    request: Request,
    identities: Identities,
    parts: StorageParts,
    session: AsyncSession,
    where: tuple[str, str, str],
    method: str,
) -> tuple[Upstream, Container, Access]:
    """Where one end of a copy is, once the caller may `method` there."""
    account, container, _ = where
    access = await resolve(request, identities, session, account.removeprefix(ACCOUNT_PREFIX))
    found = await known_container(session, access, container)
    access.object(method, found)
    return await upstream_of(session, parts, found, access.caller), found, access


async def _across(
    request: Request,
    source_up: Upstream,
    target_up: Upstream,
    source: tuple[str, str, str],
    target: tuple[str, str, str],
) -> Response:
    """The copy between two places, streamed through skyfed."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k in _SOURCE_PARAMS]
    conditional = {
        k: v
        for k, v in request.headers.items()
        if k.lower().startswith("if-") and k.lower() != "if-none-match"
    }
    read = await open_stream(source_up, "GET", source[0], source[1:], conditional, params)
    try:
        if read.status_code >= 300:
            await read.aread()
            kind = read.headers.get("content-type", "text/plain")
            return Response(read.content, read.status_code, {"content-type": kind})
        return await _write(request, target_up, source, target, read.headers, read.aiter_raw())
    finally:
        await read.aclose()


async def _write(
    request: Request,
    target_up: Upstream,
    source: tuple[str, str, str],
    target: tuple[str, str, str],
    described: Mapping[str, str],
    body: AsyncIterator[bytes],
) -> Response:
    """The source's bytes (`body`, as `described`: its content type, metadata and
    length) put at the destination, with the request's metadata on top."""
    params = [k for k in request.query_params if k in _SOURCE_PARAMS]
    fresh = request.headers.get("x-fresh-metadata", "").lower() in ("true", "1", "yes", "on")
    sent: dict[str, str] = {}
    if not fresh:
        sent = {
            k: v
            for k, v in described.items()
            if (k.lower().startswith("x-object-meta-") or k.lower() in _COPIED)
            and (params or k.lower() not in OWN_META)
        }
        if params:  # the manifest or the link itself is copied: what it names too
            for header in _NAMING:
                if header in described:
                    sent[header] = described[header]
    for key, value in request.headers.items():
        low = key.lower()
        if low not in HOP | OWN_META and (
            low.startswith(("x-object-meta-", "x-remove-object-meta-")) or low in _SETTABLE
        ):
            sent[low] = value
    if "content-length" in described:
        sent["content-length"] = described["content-length"]
    written = await open_stream(target_up, "PUT", target[0], target[1:], sent, [], body=body)
    return await _copied(written, source, described.get("last-modified"))


async def _copied(
    written: httpx.Response, source: tuple[str, str, str], modified: str | None
) -> Response:
    """The destination's answer to a copy's PUT, with Swift's X-Copied-From* headers."""
    try:
        await written.aread()
    finally:
        await written.aclose()
    answer = {
        k: v for k, v in written.headers.items() if k.lower() not in HOP | {"content-encoding"}
    }
    if written.status_code < 300:
        answer |= {
            "X-Copied-From": quote(f"{source[1]}/{source[2]}"),
            "X-Copied-From-Account": quote(source[0]),
        }
        if modified is not None:
            answer["X-Copied-From-Last-Modified"] = modified
    return Response(written.content, status_code=written.status_code, headers=answer)
