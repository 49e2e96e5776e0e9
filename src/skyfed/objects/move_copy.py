"""One object of a moving container copied from where it was to where it goes.

A copy keeps what Swift shows of the object: its bytes (checked by ETag on the
way), content type, metadata, expiry and its timestamp (`X-Timestamp`: the same
`Last-Modified` there; with the move's offset, `offsets`). Sent with the object's
own time, the copy loses to anything newer where it lands, as Swift decides: a
write made there during the move, or a delete (a tombstone), is never overwritten;
Swift answers such a copy 202. The clusters must keep the `X-Timestamp` skyfed
sends (a gatekeeper with `shunt_inbound_x_timestamp = false`): checked before a
move (`check_timestamps`) and on each copy.

What an object names is copied as an object of skyfed's: a static large object
becomes a manifest kept by skyfed (swift_slo_far), whose segments are read where
they are; a static link keeps its target's ETag in skyfed's metadata (swift_refs);
dynamic links and large objects are copied as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from skyfed.errors import Unavailable
from skyfed.objects.move_throttle import Take, throttled
from skyfed.objects.swift_forward import Upstream, ask, once, open_stream
from skyfed.objects.swift_own_meta import STATIC_BYTES, STATIC_ETAG
from skyfed.objects.swift_slo_marks import PROBE, SLO_BYTES, SLO_ETAG, is_far, marked_kind

COPIED = "copied"
SKIPPED = "skipped"  # the place it goes holds it, or something newer
GONE = "gone"  # deleted where it was since it was listed
# What a copy carries besides metadata (Swift's object server keeps these).
KEPT = frozenset(
    {
        "content-type",
        "content-encoding",
        "content-disposition",
        "content-language",
        "cache-control",
        "expires",
        "x-delete-at",
        "x-object-manifest",
        "x-symlink-target",
        "x-symlink-target-account",
        "x-robots-tag",
    }
)
_META = ("x-object-meta-", "access-control-")
# What a container keeps that its copy where it goes is made with.
_CONTAINER_KEPT = ("x-container-meta-", "x-container-read", "x-container-write")


class MoveError(Exception):
    """A copy that cannot be made as it must (the move stops, and says why)."""


class NotMovable(LookupError):
    """A container that cannot move (as it is, or to where it was asked)."""


# A container's versioning is the backend's own, bound to its cluster.
_VERSIONING = ("x-versions-location", "x-history-location", "x-versions-enabled")
PROBE_NAME = ".skyfed-timestamp-probe"
_PROBE_TIME = "1000000000.00000"  # (2001-09-09: older than anything a client wrote)


@dataclass(frozen=True)
class Copied:
    outcome: str
    size: int = 0
    names_others: bool = False  # a manifest or a link: its container's reads ask first


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in KEPT or k.lower().startswith(_META)}


def _same_second(sent: str, answered: str | None) -> bool:
    """Whether a PUT's `Last-Modified` is the time it was sent (Swift answers the
    request's timestamp, rounded up to the second)."""
    if not answered:
        return False
    try:
        when = parsedate_to_datetime(answered).timestamp()
    except (TypeError, ValueError):
        return False
    return abs(when - float(sent.split("_")[0])) <= 1.0


async def _newer_there(to: Upstream, account: str, path: tuple[str, ...], timestamp: str) -> bool:
    """Whether `to` holds the object at `timestamp` or later."""
    answer = await open_stream(to, "HEAD", account, path, {}, PROBE)
    await answer.aclose()
    there = answer.headers.get("x-timestamp")
    sent = float(timestamp.split("_")[0])
    return answer.status_code < 300 and there is not None and float(there) >= sent


async def copy_object(
    source: Upstream,
    to: Upstream,
    account: str,
    path: tuple[str, str],
    take: Take | None = None,
    offset: int = 0,
) -> Copied:
    """The object at `path` copied from `source` to `to`, as it is now at `source`;
    `take`: the moves' bandwidth limits (move_throttle); `offset`: the move's
    (`offsets`), sent with the object's timestamp."""
    got = await open_stream(source, "GET", account, path, {}, PROBE)
    try:
        if got.status_code == 404:
            return Copied(GONE)
        if got.status_code >= 300:
            raise MoveError(f"reading {'/'.join(path)} where it was answered {got.status_code}")
        normal = got.headers.get("x-timestamp")
        if normal is None:
            raise MoveError(f"{source.kind} '{source.name}' gave no X-Timestamp for {path[1]}")
        timestamp = with_offset(normal, offset)
        headers = _kept(got.headers)
        if got.headers.get("x-static-large-object", "").lower() == "true":
            body = await got.aread()
            return await _large_object(source, to, account, path, headers, body, timestamp)
        names_others = bool(
            {"x-object-manifest", "x-symlink-target"} & {k.lower() for k in headers}
        ) or is_far({k.lower(): v for k, v in headers.items()})
        if (etag := got.headers.get("x-symlink-target-etag")) is not None:
            headers |= {
                STATIC_ETAG: etag,
                STATIC_BYTES: got.headers.get("x-symlink-target-bytes", "0"),
            }
        length = got.headers.get("content-length", "0")
        headers["content-length"] = length
        if not names_others:
            headers["etag"] = got.headers.get("etag", "").strip('"')
        return await _put(
            to,
            account,
            path,
            headers,
            throttled(got.aiter_raw(), take),
            timestamp,
            int(length),
            names_others,
        )
    finally:
        await got.aclose()


async def copy_if_missing(
    source: Upstream, to: Upstream, account: str, path: tuple[str, str], offset: int
) -> Copied:
    """The object copied unless `to` holds it already (a POST's, before it changes it)."""
    there = await open_stream(to, "HEAD", account, path, {}, PROBE)
    await there.aclose()
    if there.status_code < 300:
        return Copied(SKIPPED)
    return await copy_object(source, to, account, path, offset=offset)


def offsets(generation: int) -> tuple[int, int]:
    """The Swift timestamp offsets of a container's `generation`th move: (its copies',
    its cleaning's deletes and late copies').

    Swift orders two writes of the same timestamp by their offsets (what its own
    reconciler relies on; clients still see the timestamp alone). A copy keeps its
    object's timestamp, so anything written or deleted during the move, later, wins
    over it. Its offset wins over what earlier moves left at the same timestamp:
    the tombstones of an earlier move's cleaning (Swift keeps them a week), and its
    copies. A cleaning delete deletes the object as it was listed, never a newer
    write."""
    return 2 * generation, 2 * generation + 1


def with_offset(normal: str, offset: int) -> str:
    """A Swift timestamp (normal form: seconds, 5 decimals) with an offset."""
    return f"{normal}_{offset:016x}" if offset else normal


async def _large_object(
    source: Upstream,
    to: Upstream,
    account: str,
    path: tuple[str, str],
    headers: dict[str, str],
    stored: bytes,
    timestamp: str,
) -> Copied:
    """A static large object of the backend's, copied as a manifest skyfed keeps:
    its segments stay where they are, read through skyfed (swift_slo_far)."""
    whole = await open_stream(source, "HEAD", account, path, {}, [])
    await whole.aclose()
    if whole.status_code == 404:
        return Copied(GONE)
    manifest_etag = whole.headers.get("x-manifest-etag", "").strip('"')
    if whole.status_code >= 300 or manifest_etag != hashlib.md5(stored).hexdigest():
        raise MoveError(f"{path[1]} changed while it was read; the next attempt copies it again")
    total = int(whole.headers.get("content-length", "0"))
    slo_etag = whole.headers.get("etag", "").strip('"')
    kind = whole.headers.get("content-type", "application/octet-stream")
    headers |= {
        "content-type": marked_kind(kind, total, slo_etag),
        "content-length": str(len(stored)),
        "etag": manifest_etag,
        SLO_ETAG: slo_etag,
        SLO_BYTES: str(total),
    }
    return await _put(to, account, path, headers, once(stored), timestamp, len(stored), True)


async def _put(
    to: Upstream,
    account: str,
    path: tuple[str, str],
    headers: dict[str, str],
    body: AsyncIterator[bytes],
    timestamp: str,
    size: int,
    names_others: bool,
) -> Copied:
    try:
        put = await open_stream(to, "PUT", account, path, headers, [], body, timestamp=timestamp)
    except Unavailable as exc:
        # Swift answers a copy older than what is there 202 before its body is all
        # sent, which may break the upload off: whether it is there says which.
        if await _newer_there(to, account, path, timestamp):
            return Copied(SKIPPED)
        raise MoveError(f"writing {path[1]} where it goes failed: {exc}") from exc
    await put.aclose()
    if put.status_code == 202:
        return Copied(SKIPPED)
    if put.status_code == 400 and "x-delete-at" in {k.lower() for k in headers}:
        return Copied(GONE)  # (it expired while it was read)
    if put.status_code >= 300:
        raise MoveError(f"writing {path[1]} where it goes answered {put.status_code}")
    if not _same_second(timestamp, put.headers.get("last-modified")):
        raise MoveError(
            f"{to.kind} '{to.name}' did not keep the X-Timestamp skyfed sent (its proxy's"
            " gatekeeper must have shunt_inbound_x_timestamp = false); a copy there"
            " could overwrite a newer write"
        )
    return Copied(COPIED, size, names_others)


async def make_container(
    source: Upstream, to: Upstream, account: str, name: str, tier: str
) -> httpx.Headers:
    """The container made where it goes, with its metadata and ACLs, in its tier; its
    headers where it is (LookupError: it is not there, or it cannot be made)."""
    status, headers, _ = await ask(source, "HEAD", account, [], (name,))
    if status == 404:
        raise NotMovable(f"container '{name}' is not where it was")
    if any(headers.get(h, "").lower() not in ("", "false") for h in _VERSIONING):
        raise NotMovable(
            f"container '{name}' keeps versions on its cluster (Swift's own): it cannot move"
        )
    if status >= 300:
        raise MoveError(f"reading container '{name}' where it is answered {status}")
    sent = {k: v for k, v in headers.items() if k.lower().startswith(_CONTAINER_KEPT)}
    sent["x-storage-policy"] = to.tiers.get(tier, tier)
    made = await open_stream(to, "PUT", account, (name,), sent, [])
    await made.aclose()
    if made.status_code == 409:
        raise NotMovable(f"'{name}' exists where it goes in another storage policy")
    if made.status_code >= 300:
        raise MoveError(f"making '{name}' where it goes answered {made.status_code}")
    return headers


async def check_timestamps(to: Upstream, account: str, name: str) -> None:
    """Whether `to` keeps the X-Timestamp skyfed sends, tried on an object of the
    container made there (empty, before anything is written to it): NotMovable if not."""
    path = (name, PROBE_NAME)
    put = await open_stream(
        to, "PUT", account, path, {"content-length": "0"}, [], once(b""), timestamp=_PROBE_TIME
    )
    await put.aclose()
    gone = await open_stream(to, "DELETE", account, path, {}, [], timestamp="1000000000.00001")
    await gone.aclose()
    if put.status_code >= 300:
        raise MoveError(f"trying where it goes answered {put.status_code}")
    if not _same_second(_PROBE_TIME, put.headers.get("last-modified")):
        raise NotMovable(
            f"{to.kind} '{to.name}' does not keep the X-Timestamp skyfed sends (its proxy's"
            " gatekeeper needs shunt_inbound_x_timestamp = false): a move there could"
            " overwrite newer writes"
        )
