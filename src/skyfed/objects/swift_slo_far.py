"""Static large objects whose segments are not all beside their manifest ("far"):
skyfed does there what a backend's slo middleware does on one cluster.

A backend checks and reads a manifest's segments on its own cluster only. When a
manifest names a container placed elsewhere (another cluster, a child zone),
skyfed checks the manifest as Swift does (its syntax, each segment's HEAD with the
caller's read access, sizes, ETags, ranges, the client's ETag of the whole) and
keeps it on the manifest's cluster as a plain object: Swift's stored form of the
manifest (so its ETag is the manifest's, as Swift lists it), the large object's
ETag and size in metadata of skyfed's own (`MARKS`, never a client's to set or
see), and the container marked as naming objects elsewhere (`foreign_refs`).

Reads of it are skyfed's: the segments streamed from their places (swift_assembly:
ranges, multi-range, conditional requests) with the caller's read access to each
segment's container (409 otherwise, as Swift), `multipart-manifest=get` (with
`format=raw`); `multipart-manifest=delete` is swift_slo_delete's, the marks and
listings swift_slo_marks'.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import mimetypes
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from skyfed.objects import swift_assembly
from skyfed.objects.models import Container
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import known_container, upstream_of
from skyfed.objects.swift_access import Access
from skyfed.objects.swift_assembly import Piece
from skyfed.objects.swift_dlo import read_object
from skyfed.objects.swift_forward import HOP, Upstream, ask, once, open_stream, relay
from skyfed.objects.swift_slo_marks import (
    MARKS,
    PROBE,
    SLO_BYTES,
    SLO_ETAG,
    clean_kind,
    is_far,
    marked_kind,
)

MAX_DEPTH = 10  # Swift's nesting limit of static large objects
HEADS_AT_ONCE = 4  # segments asked about at once while a manifest is checked
_KEYS: dict[str, frozenset[str]] = {  # Swift's: one of these, with what may go beside it
    "data": frozenset(),
    "path": frozenset({"range", "etag", "size_bytes"}),
}
_NOT_SENT = frozenset({"etag", "content-type", "x-static-large-object"}) | MARKS
_NOT_SHOWN = frozenset({"content-length", "content-range", "etag", "content-encoding"}) | MARKS
_FORMATS = ("application/json", "application/xml", "text/xml")


def status_line(status: int) -> str:
    """`404 Not Found`, as Swift names a status (a code HTTP does not name: alone)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _range_ok(spec: str) -> bool:
    return swift_assembly.ranges_wanted(f"bytes={spec}", 1 << 62) is not None


def parse(body: bytes, own_path: str, max_segments: int) -> list[dict[str, Any]]:
    """A manifest as Swift's slo parses one (its errors, 400); `own_path`: the
    manifest's `<container>/<object>`, which may not be one of its segments."""
    try:
        segments = json.loads(body)
    except ValueError:
        raise BadRequest("Manifest must be valid JSON.\n") from None
    if not isinstance(segments, list):
        raise BadRequest("Manifest must be a list.\n")
    errors = []
    last = len(segments) - 1
    for index, seg in enumerate(segments):
        if (problem := _segment_problem(seg, index == last, own_path)) is not None:
            errors.append(f"Index {index}: {problem}")
    if segments and all(isinstance(s, dict) and "data" in s for s in segments):
        errors.append("Inline data segments require at least one object-backed segment.")
    if errors:
        raise BadRequest("".join(e + "\n" for e in errors))
    if sum("path" in s for s in segments) > max_segments:
        raise PayloadTooLarge(f"Number of object-backed segments must be <= {max_segments}")
    return segments


def _segment_problem(seg: Any, last: bool, own_path: str) -> str | None:
    """What is wrong with one of a manifest's entries (normalizing it), or None."""
    if not isinstance(seg, dict):
        return "not a JSON object"
    kind = next((k for k in _KEYS if k in seg), None)
    if kind is None:
        return "expected keys to include one of 'data' or 'path'"
    extra = sorted(k for k in seg if k not in _KEYS[kind] | {kind})
    if extra:
        return "extraneous keys " + ", ".join(json.dumps(k) for k in extra)
    if kind == "data":
        try:
            if not isinstance(seg["data"], str):
                raise ValueError("not a string")
            data = base64.b64decode(seg["data"], validate=True)
        except (binascii.Error, ValueError):
            return "data must be valid base64"
        if not data:
            return "too small; each segment must be at least 1 byte."
        seg["data"] = base64.b64encode(data).decode("ascii")
        return None
    path = seg["path"]
    if not isinstance(path, str):
        return '"path" must be a string'
    if not (seg.get("etag") is None or isinstance(seg["etag"], str)):
        return '"etag" must be a string or null (if provided)'
    if "/" not in path.strip("/"):
        return "path does not refer to an object. Path must be of the form /container/object."
    size = seg.get("size_bytes")
    if size is not None:
        try:
            seg["size_bytes"] = size = int(size)
        except (TypeError, ValueError):
            return "invalid size_bytes"
        if size < 1 and not last:
            return "too small; each segment must be at least 1 byte."
    if path.lstrip("/") == own_path:
        return "manifest must not include itself as a segment"
    if spec := seg.get("range"):
        if not isinstance(spec, str) or not _range_ok(spec):
            return "invalid range"
        if "," in spec:
            return "multiple ranges (only one allowed)"
        if size is not None and len(swift_assembly.ranges_wanted(f"bytes={spec}", size) or []) != 1:
            return "unsatisfiable range"
    return None


def split_path(path: str) -> tuple[str, str]:
    container, _, obj = path.lstrip("/").partition("/")
    return container, obj


@dataclass
class _Place:
    upstream: Upstream | None  # None: `problem` says why not
    problem: str = ""
    foreign_refs: bool = False


async def places_of(
    session: AsyncSession, parts: StorageParts, access: Access, names: set[str], method: str
) -> dict[str, _Place]:
    """Where each container is, once the caller may `method` objects there."""
    out: dict[str, _Place] = {}
    for name in sorted(names):
        try:
            found = await known_container(session, access, name)
            access.object(method, found)
            place = await upstream_of(session, parts, found, access.caller)
        except NotFound:
            out[name] = _Place(None, "404 Not Found")
        except (Forbidden, Unauthorized) as exc:
            out[name] = _Place(None, status_line(exc.status))
        else:
            out[name] = _Place(place, foreign_refs=bool(found.foreign_refs))
    await session.commit()  # hold no connection while the places answer
    return out


def _modified(headers: Mapping[str, str]) -> str:
    try:
        when = parsedate_to_datetime(headers.get("last-modified", ""))
    except (TypeError, ValueError, IndexError):
        return ""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")


async def _head(place: _Place, account: str, path: str) -> tuple[int, Mapping[str, str]]:
    if place.upstream is None:
        return 0, {}
    status, headers, _ = await ask(place.upstream, "HEAD", account, [], split_path(path))
    return status, headers


def _stored(
    seg: dict[str, Any], headers: Mapping[str, str], last: bool
) -> tuple[int, dict[str, Any], list[str]]:
    """(the length it adds, Swift's stored entry, the problems Swift names) of a
    segment as its HEAD answered."""
    if is_far(headers):  # a far large object itself: its manifest's HEAD
        whole, etag, large = int(headers[SLO_BYTES]), headers[SLO_ETAG], True
    else:
        whole = int(headers.get("content-length") or 0)
        etag = headers.get("etag", "").strip('"')
        large = headers.get("x-static-large-object", "").lower() == "true"
    length = whole
    problems = []
    if seg.get("range"):
        ranges = swift_assembly.ranges_wanted(f"bytes={seg['range']}", whole) or []
        if not ranges:
            problems.append("Unsatisfiable Range")
        elif ranges[0] == (0, whole - 1):
            del seg["range"]
        else:
            seg["range"] = f"{ranges[0][0]}-{ranges[0][1]}"
            length = ranges[0][1] - ranges[0][0] + 1
    if length < 1 and not last:
        problems.append("Too small; each segment must be at least 1 byte.")
    if seg.get("size_bytes") is not None and seg["size_bytes"] != whole:
        problems.append("Size Mismatch")
    if seg.get("etag") is not None and seg["etag"] != etag:
        problems.append("Etag Mismatch")
    entry: dict[str, Any] = {
        "name": "/" + seg["path"].lstrip("/"),
        "bytes": whole,
        "hash": etag,
        "content_type": clean_kind(headers.get("content-type", "")).split(";")[0],
        "last_modified": _modified(headers),
    }
    if seg.get("range"):
        entry["range"] = seg["range"]
    if large:
        entry["sub_slo"] = True
    return length, entry, problems


def bulk_body(
    request: Request, status: int, problems: list[tuple[str, str]], fields: dict[str, Any]
) -> Response:
    """Swift's body listing what went wrong (bulk's format: text, JSON or XML)."""
    accept = request.headers.get("accept", "")
    kind = next((f for f in _FORMATS if f in accept), "text/plain")
    if kind == "application/json":
        body = json.dumps(fields | {"Errors": [list(p) for p in problems]})
    elif kind.endswith("/xml"):
        root = "delete" if "Number Deleted" in fields else "upload"
        lines = [f"<{root}>\n"]
        for key in sorted(fields):
            tag = key.replace(" ", "_").lower()
            lines.append(f"<{tag}>{escape(str(fields[key]))}</{tag}>\n")
        lines.append("<errors>\n")
        lines += [
            f"<object><name>{escape(n)}</name><status>{escape(s)}</status></object>\n"
            for n, s in problems
        ]
        lines.append(f"</errors>\n</{root}>\n")
        body = "".join(lines)
    else:
        body = "".join(f"{k}: {fields[k]}\n" for k in sorted(fields)) + "Errors:\n"
        body += "".join(f"{n}, {s}\n" for n, s in problems)
    return Response(body.encode(), status, media_type=kind)


def etag_of(stored: list[dict[str, Any]]) -> str:
    """Swift's ETag of a large object: the MD5 of its segments' ETags (and ranges)."""
    whole = hashlib.md5()
    for entry in stored:
        if "data" in entry:
            part = hashlib.md5(base64.b64decode(entry["data"])).hexdigest()
        elif entry.get("range"):
            part = f"{entry['hash']}:{entry['range']};"
        else:
            part = entry["hash"]
        whole.update(part.encode("ascii"))
    return whole.hexdigest()


async def put(
    request: Request,
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    container: Container,
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
    body: bytes,
    limits: Mapping[str, Any],
) -> Response:
    """A manifest naming segments elsewhere, checked as Swift's slo checks one and
    kept on the manifest's place as a plain object."""
    if request.headers.get("x-copy-from"):
        raise MethodNotAllowed("Multipart Manifest PUTs cannot be COPY requests")
    segments = parse(body, "/".join(path), int(limits["max_manifest_segments"]))
    wanted = [s for s in segments if "path" in s]
    places = await places_of(
        session, parts, access, {split_path(s["path"])[0] for s in wanted}, "GET"
    )
    if not container.foreign_refs:  # reads there ask what an object is first
        container.foreign_refs = True
        await session.commit()
        parts.locations.forget(container.project_id, container.name)  # (the data path's)
    gate = asyncio.Semaphore(HEADS_AT_ONCE)

    async def head(p: str) -> tuple[int, Mapping[str, str]]:
        async with gate:
            return await _head(places[split_path(p)[0]], account, p)

    distinct = sorted({s["path"] for s in wanted})
    heads = dict(zip(distinct, await asyncio.gather(*(head(p) for p in distinct)), strict=True))
    stored: list[dict[str, Any]] = []
    problems: list[tuple[str, str]] = []
    total = 0
    for index, seg in enumerate(segments):
        if "data" in seg:
            stored.append(seg)
            total += len(base64.b64decode(seg["data"]))
            continue
        status, headers = heads[seg["path"]]
        if not 200 <= status < 300:
            problem = places[split_path(seg["path"])[0]].problem
            problems.append((quote(seg["path"]), problem or status_line(status)))
            continue
        length, entry, wrong = _stored(seg, headers, index == len(segments) - 1)
        problems += [(quote(seg["path"]), problem) for problem in wrong]
        stored.append(entry)
        total += length
    if problems:
        return bulk_body(request, 400, problems, {})
    slo_etag = etag_of(stored)
    if (given := request.headers.get("etag")) and given.strip('"') != slo_etag:
        raise Invalid("Unable to process the contained instructions")
    manifest = json.dumps(stored).encode()
    sent = {k: v for k, v in request.headers.items() if k.lower() not in HOP | _NOT_SENT}
    kind = request.headers.get("content-type") or (
        mimetypes.guess_type(path[1])[0] or "application/octet-stream"
    )
    sent |= {
        "content-type": marked_kind(kind, total, slo_etag),
        "content-length": str(len(manifest)),
        "etag": hashlib.md5(manifest).hexdigest(),
        SLO_ETAG: slo_etag,
        SLO_BYTES: str(total),
    }
    written = await open_stream(upstream, "PUT", account, path, sent, [], once(manifest))
    answer = await relay(request, written, MARKS | {"etag"})
    if written.status_code < 300:
        answer.raw_headers.append((b"etag", f'"{slo_etag}"'.encode()))
    return answer


async def manifest(upstream: Upstream, account: str, path: tuple[str, str]) -> list[dict]:
    # (asked as the manifest itself: a backend's own large object is read as one too)
    status, _, stored = await ask(upstream, "GET", account, [("multipart-manifest", "get")], path)
    if status == 404:
        raise NotFound(f"object '{path[1]}' not found in '{path[0]}'")
    if status >= 300 or not isinstance(stored, list) or not all(map(_well_formed, stored)):
        raise upstream.unavailable(f"the manifest answered {status}, not a manifest")
    return stored


def _well_formed(entry: Any) -> bool:
    """A stored entry as skyfed writes one (anything else is not read as one)."""
    if not isinstance(entry, dict):
        return False
    if "data" in entry:
        return isinstance(entry["data"], str)
    return (
        isinstance(entry.get("name"), str)
        and isinstance(entry.get("bytes"), int)
        and isinstance(entry.get("hash"), str)
        and isinstance(entry.get("range", ""), str)
    )


def _raw(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest as one would PUT it (`format=raw`)."""
    out = []
    for entry in stored:
        if "data" in entry:
            out.append({"data": entry["data"]})
            continue
        raw = {"path": entry["name"], "etag": entry["hash"], "size_bytes": entry["bytes"]}
        if entry.get("range"):
            raw["range"] = entry["range"]
        out.append(raw)
    return out


async def serve(
    request: Request,
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
    described: Mapping[str, str],
) -> Response:
    """A GET or HEAD of a far large object (`described`: its manifest's HEAD)."""
    shown = {k: v for k, v in described.items() if k.lower() not in HOP | _NOT_SHOWN}
    shown["x-static-large-object"] = "True"
    if "content-type" in shown:
        shown["content-type"] = clean_kind(shown["content-type"])
    if request.query_params.get("multipart-manifest") == "get":
        stored = await manifest(upstream, account, path)
        raw = request.query_params.get("format") == "raw"
        body = json.dumps(_raw(stored), sort_keys=True) if raw else json.dumps(stored)
        shown |= {  # (raw: the large object's content type, which a copy keeps)
            "etag": hashlib.md5(body.encode()).hexdigest() if raw else described.get("etag", ""),
            "content-length": str(len(body.encode())),
        }
        if not raw:
            shown["content-type"] = "application/json; charset=utf-8"
        if request.method == "HEAD":
            return Response(headers=shown)
        return Response(body.encode(), headers=shown)
    shown["x-manifest-etag"] = described.get("etag", "").strip('"')
    etag, total = described[SLO_ETAG], described.get(SLO_BYTES, "")
    if total.isascii() and total.isdigit():  # (HEAD, a failed condition: no segment read)
        early = swift_assembly.without_body(request, shown, int(total), etag)
        if early is not None:
            return early
    pieces = await pieces_of(session, parts, access, upstream, account, path)
    return swift_assembly.respond(request, shown, pieces, etag)


async def pieces_of(
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
) -> list[Piece]:
    """The pieces of the far large object at `path`, read as `access` may."""
    stored = await manifest(upstream, account, path)
    return await _pieces(session, parts, access, account, stored, 0)


async def _pieces(
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    account: str,
    stored: list[dict[str, Any]],
    depth: int,
) -> list[Piece]:
    """The pieces a stored manifest reads, each from its place; the caller must be
    able to read every segment's container (409, as Swift answers)."""
    names = {split_path(e["name"])[0] for e in stored if "name" in e}
    places = await places_of(session, parts, access, names, "GET")
    pieces: list[Piece] = []
    for entry in stored:
        if "data" in entry:
            pieces.append(_inline(base64.b64decode(entry["data"])))
            continue
        container, obj = split_path(entry["name"])
        place = places[container]
        if place.upstream is None:
            raise Conflict(f"a segment of this object cannot be read: {place.problem}")
        size = int(entry["bytes"])
        first, last = 0, size - 1
        if entry.get("range"):
            first, last = (
                swift_assembly.ranges_wanted(f"bytes={entry['range']}", size) or [(0, -1)]
            )[0]
        by_acl = not (access.owner or access.level)
        if by_acl or (entry.get("sub_slo") and place.foreign_refs):
            status, headers, _ = await ask(place.upstream, "HEAD", account, PROBE, (container, obj))
            if by_acl and _names_more(headers):  # its place would follow it as skyfed
                raise Conflict("a segment of this object names other objects, not read by ACL")
            if status < 300 and is_far(headers):
                if depth >= MAX_DEPTH:
                    raise Conflict(f"Max recursion depth exceeded ({MAX_DEPTH})")
                nested = await manifest(place.upstream, account, (container, obj))
                inner = await _pieces(session, parts, access, account, nested, depth + 1)
                pieces.append(_within(inner, first, last))
                continue
        path = (container, obj)
        etag = None if entry.get("sub_slo") else entry["hash"]  # (changed since: an error)
        pieces.append(
            Piece(last - first + 1, _segment(place.upstream, account, path, first, size, etag))
        )
    return pieces


def _names_more(headers: Mapping[str, str]) -> bool:
    """An object its backend reads by reading others: a link, a DLO, a large object."""
    return (
        any(h in headers for h in ("x-symlink-target", "x-object-manifest"))
        or headers.get("x-static-large-object", "").lower() == "true"
        or is_far(headers)
    )


def _inline(data: bytes) -> Piece:
    async def read(first: int, last: int) -> AsyncIterator[bytes]:
        yield data[first : last + 1]

    return Piece(len(data), read)


def _within(inner: list[Piece], first: int, last: int) -> Piece:
    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        async for chunk in swift_assembly.stream(inner, first + start, first + end):
            yield chunk

    return Piece(last - first + 1, read)


def _segment(
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
    offset: int,
    size: int,
    etag: str | None,
) -> swift_assembly.Reader:
    async def read(first: int, last: int) -> AsyncIterator[bytes]:
        async for chunk in read_object(
            upstream, account, path, offset + first, offset + last, size, etag
        ):
            yield chunk

    return read
