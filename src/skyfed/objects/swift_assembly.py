"""Answering for an object that skyfed assembles from pieces read elsewhere: a DLO's
segments in a container on another cluster (swift_dlo), a static large object's
segments spread over clusters (swift_slo_far).

What Swift's large objects answer: the conditional requests (`If-Match`,
`If-None-Match` against the large object's ETag, `If-Modified-Since`,
`If-Unmodified-Since`), one range (206), several (206 as `multipart/byteranges`),
none satisfiable (416), HEAD; the body streamed piece by piece, each piece asked
for the part of it that is wanted.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

# Bytes `first`..`last` (inclusive) of one piece.
Reader = Callable[[int, int], AsyncIterator[bytes]]
MAX_RANGES = 50  # swob's bound on the ranges of one request (416 beyond)


@dataclass(frozen=True)
class Piece:
    size: int
    read: Reader


def ranges_wanted(header: str | None, total: int) -> list[tuple[int, int]] | None:
    """The satisfiable (first, last) ranges of a Range header, as swob reads one:
    None for the whole object (no header, or one that does not parse), [] when
    none of them can be satisfied (416)."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    wanted: list[tuple[int, int]] = []
    specs = header.strip()[6:].replace(" ", "").split(",")
    if len(specs) > MAX_RANGES:
        return []
    for spec in specs:
        first_text, sep, last_text = spec.partition("-")
        if not sep or not (_digits(first_text) or first_text == ""):
            return None
        if last_text and not _digits(last_text):
            return None
        if first_text == "":
            if not last_text:
                return None
            length = int(last_text)
            if total == 0:
                return None  # (swob: the whole of an empty object)
            if length > 0:
                wanted.append((max(0, total - length), total - 1))
            continue
        first = int(first_text)
        last = int(last_text) if last_text else total - 1
        if last_text and last < first:
            return None
        if first < total:
            wanted.append((first, min(last, total - 1)))
    return wanted


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return "*" in tags or etag in tags


def _time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def precondition(request: Request, etag: str, modified: str | None) -> int | None:
    """412 or 304 when the request's conditions say so (Swift's order), else None."""
    headers = request.headers
    if (unwanted := headers.get("if-none-match")) is not None and _matches(unwanted, etag):
        return 304
    if (wanted := headers.get("if-match")) is not None and not _matches(wanted, etag):
        return 412
    when = _time(modified)
    if when is not None:
        since = _time(headers.get("if-modified-since"))
        if since is not None and when <= since:
            return 304
        before = _time(headers.get("if-unmodified-since"))
        if before is not None and when > before:
            return 412
    return None


async def stream(pieces: list[Piece], first: int, last: int) -> AsyncIterator[bytes]:
    """Bytes `first`..`last` of the pieces one after another."""
    offset = 0
    for piece in pieces:
        start, end = max(first - offset, 0), min(last - offset, piece.size - 1)
        offset += piece.size
        if piece.size == 0 or end < 0 or start > piece.size - 1:
            continue
        async for chunk in piece.read(start, end):
            yield chunk
        if offset > last:
            return


def whole(pieces: list[Piece]) -> AsyncIterator[bytes]:
    """All the pieces' bytes, one after another."""
    return stream(pieces, 0, sum(p.size for p in pieces) - 1)


async def _parts(
    pieces: list[Piece], ranges: list[tuple[int, int]], heads: list[bytes], tail: bytes
) -> AsyncIterator[bytes]:
    for (first, last), head in zip(ranges, heads, strict=True):
        yield head
        async for chunk in stream(pieces, first, last):
            yield chunk
        yield b"\r\n"
    yield tail


def without_body(
    request: Request, headers: Mapping[str, str], total: int, etag: str
) -> Response | None:
    """The answer when no byte of the object is needed: a HEAD (ranges are not
    applied to one, as swob), a condition that fails; else None."""
    out = {**headers, "etag": f'"{etag}"', "accept-ranges": "bytes"}
    if (status := precondition(request, etag, headers.get("last-modified"))) is not None:
        return Response(status_code=status, headers=out)
    if request.method == "HEAD":
        return Response(headers=out | {"content-length": str(total)})
    return None


def respond(
    request: Request,
    headers: Mapping[str, str],
    pieces: list[Piece],
    etag: str,
    *,
    several: bool = True,
) -> Response:
    """The answer for an object made of `pieces`, with `headers` (its content type and
    metadata; Last-Modified is read from them) and ETag `etag` (unquoted);
    `several`: several ranges answered as such (else the whole object, as Swift's
    DLO does)."""
    total = sum(p.size for p in pieces)
    out = {**headers, "etag": f'"{etag}"', "accept-ranges": "bytes"}
    if (early := without_body(request, headers, total, etag)) is not None:
        return early
    ranges = ranges_wanted(request.headers.get("range"), total)
    if ranges and len(ranges) > 1 and not several:
        ranges = None
    if ranges == []:
        return Response(status_code=416, headers=out | {"content-range": f"bytes */{total}"})
    body: AsyncIterator[bytes]
    if ranges is None or len(ranges) == 1:
        first, last = ranges[0] if ranges else (0, total - 1)
        status = 200 if ranges is None else 206
        if status == 206:
            out["content-range"] = f"bytes {first}-{last}/{total}"
        out["content-length"] = str(max(0, last - first + 1))
        body = stream(pieces, first, last)
    else:  # several: one part each, as swob's multipart/byteranges
        boundary = secrets.token_hex(16)
        kind = out.get("content-type", "application/octet-stream")
        heads = [
            f"--{boundary}\r\nContent-Type: {kind}\r\n"
            f"Content-Range: bytes {first}-{last}/{total}\r\n\r\n".encode()
            for first, last in ranges
        ]
        tail = f"--{boundary}--".encode()
        size = sum(
            len(h) + last - first + 1 + 2 for h, (first, last) in zip(heads, ranges, strict=True)
        )
        status = 206
        out["content-type"] = f"multipart/byteranges;boundary={boundary}"
        out["content-length"] = str(size + len(tail))
        body = _parts(pieces, ranges, heads, tail)
    return StreamingResponse(body, status_code=status, headers=out)
