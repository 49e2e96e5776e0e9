"""Dynamic large objects (DLO) whose segments are in a container on another cluster
or in another zone: skyfed reads them as Swift's DLO does.

A manifest (`X-Object-Manifest: <container>/<prefix>`) is read by the backend that
holds it, and the backend looks for the segments on its own cluster only. So when
a manifest is written naming a container that is elsewhere (or not made yet), the
manifest's container is marked (`foreign_manifests`), and reads there first ask
for the manifest itself (`HEAD ?multipart-manifest=get`): a manifest whose
segments are elsewhere is then served by skyfed, from the segments' listing in
name order, with Swift's ETag (the MD5 of the segments' ETags), its
Content-Length, ranges and conditional requests (swift_assembly).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from fastapi import Request, Response

from skyfed.errors import PreconditionFailed, Unavailable
from skyfed.objects import swift_assembly
from skyfed.objects.swift_assembly import Piece, Reader
from skyfed.objects.swift_forward import HOP, Upstream, ask, open_stream
from skyfed.objects.swift_http import header_path
from skyfed.objects.swift_listing import LISTING_LIMIT

# A bound on one manifest's listing: 1,000 pages of 10,000 segments.
MAX_PAGES = 1000
_NOT_COPIED = frozenset({"content-length", "content-range", "etag", "content-encoding"})


def manifest_target(value: str) -> tuple[str, str]:
    """`<container>/<prefix>` of an X-Object-Manifest header."""
    container, sep, prefix = header_path(value).lstrip("/").partition("/")
    if not container or not sep:
        raise PreconditionFailed("X-Object-Manifest must be in the form <container>/<prefix>")
    return container, prefix


async def segments(upstream: Upstream, account: str, container: str, prefix: str) -> list[dict]:
    """The segments' listing, all pages of it, in name order."""
    listed: list[dict] = []
    marker = ""
    for _ in range(MAX_PAGES):
        params = [("format", "json"), ("prefix", prefix)]
        if marker:
            params.append(("marker", marker))
        status, _, page = await ask(upstream, "GET", account, params, (container,))
        if status == 404:
            return listed
        if status >= 300 or not isinstance(page, list):
            raise upstream.unavailable(f"its listing of '{container}' answered {status}")
        listed += page
        if len(page) < LISTING_LIMIT:
            return listed
        marker = page[-1]["name"]
    raise Unavailable(f"the manifest's segments in '{container}' run past {MAX_PAGES} pages")


async def answer(
    request: Request,
    manifest_headers: dict[str, str],
    upstream: Upstream,
    account: str,
    container: str,
    prefix: str,
) -> Response:
    listed = await segments(upstream, account, container, prefix)
    etag = hashlib.md5("".join(s["hash"].strip('"') for s in listed).encode()).hexdigest()
    headers = {k: v for k, v in manifest_headers.items() if k.lower() not in HOP | _NOT_COPIED}
    pieces = [
        Piece(int(s["bytes"]), _reader(upstream, account, container, s["name"], int(s["bytes"])))
        for s in listed
    ]
    return swift_assembly.respond(request, headers, pieces, etag, several=False)


def _reader(upstream: Upstream, account: str, container: str, name: str, size: int) -> Reader:
    async def read(first: int, last: int) -> AsyncIterator[bytes]:
        async for chunk in read_object(upstream, account, (container, name), first, last, size):
            yield chunk

    return read


async def read_object(
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
    first: int,
    last: int,
    size: int,
    etag: str | None = None,
) -> AsyncIterator[bytes]:
    """Bytes `first`..`last` of the object at `path` (of `size` bytes, and ETag `etag`
    when known), as its place reads it; one gone or changed meanwhile ends the
    answer short (an error, as in Swift)."""
    asked = {"range": f"bytes={first}-{last}"} if (first, last) != (0, size - 1) else {}
    if etag:
        asked["if-match"] = f'"{etag}"'
    read = await open_stream(upstream, "GET", account, path, asked, [])
    try:
        if read.status_code >= 300:
            raise upstream.unavailable(f"segment '{path[1]}' answered {read.status_code}")
        async for chunk in read.aiter_raw():
            yield chunk
    finally:
        await read.aclose()
