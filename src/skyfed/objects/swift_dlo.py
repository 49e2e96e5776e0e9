"""Dynamic large objects (DLO) whose segments are in a container on another cluster
or in another zone: skyfed reads them as Swift's DLO does.

A manifest (`X-Object-Manifest: <container>/<prefix>`) is read by the backend that
holds it, and the backend looks for the segments on its own cluster only. So when
a manifest is written naming a container that is elsewhere (or not made yet), the
manifest's container is marked (`foreign_manifests`), and reads there first ask
for the manifest itself (`HEAD ?multipart-manifest=get`): a manifest whose
segments are elsewhere is then served by skyfed, from the segments' listing in
name order, with Swift's ETag (the MD5 of the segments' ETags), its
Content-Length, and a single byte range (several ranges get the whole object,
as the HTTP standard allows).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from skyfed.errors import PreconditionFailed, Unavailable
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


def _single_range(header: str | None, total: int) -> tuple[int, int] | str | None:
    """(first, last) of a one-range header; None: the whole object; "unsatisfiable"."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_text, _, last_text = header[6:].strip().partition("-")
    try:
        if first_text == "":
            length = int(last_text)
            if length <= 0:
                return "unsatisfiable"
            return max(0, total - length), total - 1
        first = int(first_text)
        last = int(last_text) if last_text else total - 1
    except ValueError:
        return None
    if first > last or first >= total:
        return "unsatisfiable" if first >= total else None
    return first, min(last, total - 1)


async def answer(
    request: Request,
    manifest_headers: dict[str, str],
    upstream: Upstream,
    account: str,
    container: str,
    prefix: str,
) -> Response:
    listed = await segments(upstream, account, container, prefix)
    total = sum(int(s["bytes"]) for s in listed)
    etag = hashlib.md5("".join(s["hash"].strip('"') for s in listed).encode()).hexdigest()
    headers = {k: v for k, v in manifest_headers.items() if k.lower() not in HOP | _NOT_COPIED} | {
        "etag": f'"{etag}"',
        "accept-ranges": "bytes",
    }
    wanted = _single_range(request.headers.get("range"), total)
    if wanted == "unsatisfiable":
        return Response(status_code=416, headers=headers | {"content-range": f"bytes */{total}"})
    first, last = wanted if isinstance(wanted, tuple) else (0, total - 1)
    status = 206 if isinstance(wanted, tuple) else 200
    if status == 206:
        headers["content-range"] = f"bytes {first}-{last}/{total}"
    headers["content-length"] = str(max(0, last - first + 1))
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    body = _read(upstream, account, container, listed, first, last)
    return StreamingResponse(body, status_code=status, headers=headers)


async def _read(
    upstream: Upstream,
    account: str,
    container: str,
    listed: list[dict],
    first: int,
    last: int,
) -> AsyncIterator[bytes]:
    """Bytes `first`..`last` of the segments one after another, each segment asked
    for the part of it that is wanted."""
    offset = 0
    for segment in listed:
        size = int(segment["bytes"])
        start, end = max(first - offset, 0), min(last - offset, size - 1)
        offset += size
        if size == 0 or end < 0 or start > size - 1:
            continue
        ranged = {"range": f"bytes={start}-{end}"} if (start, end) != (0, size - 1) else {}
        read = await open_stream(upstream, "GET", account, (container, segment["name"]), ranged, [])
        try:
            if read.status_code >= 300:  # gone meanwhile: the answer ends short
                raise upstream.unavailable(
                    f"segment '{segment['name']}' answered {read.status_code}"
                )
            async for chunk in read.aiter_raw():
                yield chunk
        finally:
            await read.aclose()
        if offset > last:
            return
