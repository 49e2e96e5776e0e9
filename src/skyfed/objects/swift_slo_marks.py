"""skyfed's own marks on a static large object whose segments are elsewhere
(swift_slo_far), and the container listings that show them as Swift lists a
large object.

The manifest object keeps the large object's ETag and size in metadata of
skyfed's own (`MARKS`: never a client's to set or see), and in its content type
too (`marked_kind`): the one field of an object that its container's listing
shows, where Swift lists a large object's size and ETag (a client cannot set the
backend's fields that hold them). A client's content type naming the marks is
refused.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from typing import Any

from fastapi import Response
from fastapi.responses import StreamingResponse

from skyfed.errors import Unavailable

# What skyfed keeps on a far manifest: the large object's ETag and size.
SLO_ETAG = "x-object-meta-skyfed-slo-etag"
SLO_BYTES = "x-object-meta-skyfed-slo-bytes"
MARKS = frozenset({SLO_ETAG, SLO_BYTES})
# The large object's size and ETag, also in its manifest's content type: the one
# field of an object's that its container's listing shows (Swift lists a large
# object's size and ETag; a client cannot set the backend's fields that hold them).
_KIND_BYTES, _KIND_ETAG = "skyfed_slo_bytes", "skyfed_slo_etag"
_KIND_MARK = re.compile(r"\s*;\s*skyfed_slo_(bytes|etag)=([0-9a-f]*)")
_XML_OBJECT = re.compile(rb"<object>.*?</object>", re.S)
# A HEAD asking what an object is (a manifest, a link), not what it names.
PROBE = [("multipart-manifest", "get"), ("symlink", "get")]
LISTING_BOUND = 64 << 20  # a container page of 10,000 names is a few MB


def marked_kind(kind: str, total: int, etag: str) -> str:
    return f"{kind};{_KIND_BYTES}={total};{_KIND_ETAG}={etag}"


def clean_kind(kind: str) -> str:
    """A content type without skyfed's marks."""
    return _KIND_MARK.sub("", kind)


def forged_kind(kind: str | None) -> bool:
    """A client's content type naming skyfed's marks (refused: they are skyfed's)."""
    return bool(kind) and "skyfed_slo_" in str(kind)


def is_far(headers: Mapping[str, str]) -> bool:
    return SLO_ETAG in headers


def _relisted_json(body: bytes) -> bytes:
    listing = json.loads(body)
    relist_entries(listing)
    return json.dumps(listing).encode()


def relist_entries(listing: list[Any]) -> None:
    """A container's listing (JSON entries) as Swift lists large objects: a far one's
    size and ETag, and its own content type."""
    for entry in listing:
        kind = entry.get("content_type") if isinstance(entry, dict) else None
        if not isinstance(kind, str) or _KIND_BYTES not in kind:
            continue
        marks = dict(_KIND_MARK.findall(kind))
        entry["content_type"] = clean_kind(kind)
        if marks.get("bytes", "").isdigit():
            entry["bytes"] = int(marks["bytes"])
        if marks.get("etag"):
            entry["slo_etag"] = f'"{marks["etag"]}"'


def _relisted_xml(body: bytes) -> bytes:
    def one(found: re.Match[bytes]) -> bytes:
        block = found.group(0).decode()
        kind = re.search(r"<content_type>([^<]*)</content_type>", block)
        if kind is None or _KIND_BYTES not in kind.group(1):
            return found.group(0)
        marks = dict(_KIND_MARK.findall(kind.group(1)))
        block = block.replace(
            kind.group(0), f"<content_type>{clean_kind(kind.group(1))}</content_type>"
        )
        if marks.get("bytes", "").isdigit():
            block = re.sub(r"<bytes>\d+</bytes>", f"<bytes>{marks['bytes']}</bytes>", block)
        return block.encode()

    return _XML_OBJECT.sub(one, body)


async def relist(answer: Response) -> Response:
    """A container listing (JSON or XML) as Swift lists large objects: a far one's
    size and ETag (`slo_etag`), not its manifest's, and its own content type."""
    kind = next(  # (relayed headers keep the backend's case, which Headers do not match)
        (v.decode("latin-1") for k, v in answer.raw_headers if k.lower() == b"content-type"), ""
    )
    if answer.status_code != 200 or not isinstance(answer, StreamingResponse):
        return answer
    if not kind.startswith(("application/json", "application/xml", "text/xml")):
        return answer
    body = bytearray()
    try:
        async for chunk in answer.body_iterator:
            body += chunk if isinstance(chunk, bytes) else str(chunk).encode()
            if len(body) > LISTING_BOUND:
                raise Unavailable("the container's listing is too large to read")
    finally:
        if answer.background is not None:
            await answer.background()
    if _KIND_BYTES.encode() in body:
        with contextlib.suppress(ValueError, TypeError, UnicodeDecodeError):  # (as listed)
            body = bytearray(_relisted_json(body) if "json" in kind else _relisted_xml(body))
    relisted = Response(bytes(body), status_code=200)
    relisted.raw_headers = [
        (k, v) for k, v in answer.raw_headers if k.lower() != b"content-length"
    ] + [(b"content-length", str(len(body)).encode())]
    return relisted
