"""Static large objects (SLO) over a zone's places.

A backend's slo middleware checks a manifest's segments when it is written, and
reads them when it is read, on its own cluster only. Where every segment a
manifest names is in a container on the same cluster (or child zone) as the
manifest's own, as swiftclient's and rclone's `<container>_segments` are (placed
beside their container, places.py), the backend does that work; a manifest
naming segments in a container placed elsewhere is checked, kept and read by
skyfed instead (swift_slo_far). A manifest copied to another cluster is put
there as a manifest, with its segments in the destination's account (swift_copy).

Swift's limits hold as the clusters advertise them (`/info`'s `slo`, the most
restrictive of the zone's clusters).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import PayloadTooLarge
from skyfed.objects.models import Container, StorageCluster
from skyfed.objects.swift_forward import Upstream, ask
from skyfed.objects.swift_slo_marks import is_far

# Swift's defaults (swift/common/middleware/slo.py), where no cluster says otherwise.
DEFAULTS: dict[str, Any] = {
    "max_manifest_segments": 1000,
    "max_manifest_size": 8 * 1024 * 1024,
    "yield_frequency": 10,
    "min_segment_size": 1,
    "allow_async_delete": True,
}
SEGMENTS_SUFFIX = "_segments"  # swiftclient's and rclone's segments containers


def limits(clusters: Iterable[StorageCluster]) -> dict[str, Any]:
    """The most restrictive of the clusters' SLO limits."""
    found = [c.info["slo"] for c in clusters if c.info and isinstance(c.info.get("slo"), dict)]
    out = dict(DEFAULTS)
    for slo in found:
        for key in ("max_manifest_segments", "max_manifest_size"):
            if isinstance(slo.get(key), int):
                out[key] = min(out[key], slo[key])
        if slo.get("allow_async_delete") is False:
            out["allow_async_delete"] = False
    return out


def is_manifest_put(request: Request) -> bool:
    return request.method == "PUT" and request.query_params.get("multipart-manifest") == "put"


async def read_manifest(
    request: Request,
    session: AsyncSession,
    container: Container,
    info: Mapping[str, Any],
    upstream: Upstream,
    account: str,
) -> tuple[bytes, bool]:
    """The manifest's body, read whole (it is small: at most `max_manifest_size`), and
    whether it names segments elsewhere than `container`'s place, or a large object
    skyfed keeps there (then skyfed checks and keeps it: swift_slo_far; else its
    backend does)."""
    limit = int(info["max_manifest_size"])
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"Manifest File > {limit} bytes")
    try:
        segments = json.loads(body)
    except ValueError:
        return bytes(body), False  # the backend says what is wrong with it, as Swift does
    if not isinstance(segments, list):
        return bytes(body), False
    paths = [
        seg["path"]
        for seg in segments
        if isinstance(seg, dict) and isinstance(seg.get("path"), str)
    ]
    marked = set()  # containers beside it whose objects may be skyfed's large objects
    for name in sorted({p.lstrip("/").split("/", 1)[0] for p in paths}):
        found = container if name == container.name else None
        found = found or await session.get(Container, (container.project_id, name))
        if found is None:
            continue
        if (found.cluster_id, found.child_id) != (container.cluster_id, container.child_id):
            return bytes(body), True
        if found.foreign_refs:
            marked.add(name)
    await session.commit()  # hold no connection while the place answers
    for path in paths[: int(info["max_manifest_segments"])]:
        segment = tuple(path.lstrip("/").split("/", 1))
        if segment[0] in marked and len(segment) == 2:
            status, headers, _ = await ask(upstream, "HEAD", account, [], segment)
            if status < 300 and is_far(headers):
                return bytes(body), True
    return bytes(body), False
