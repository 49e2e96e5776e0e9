"""Temporary URLs (Swift's tempurl): an object request signed with a key of the
account or of the container, carrying no token.

The signature is checked where the container is, by the backend's own tempurl
middleware (its exact semantics: methods, expiry formats, digests, prefix
signatures, `filename`/`inline`, the headers it keeps from the caller and
hides from the answer), and the request goes there without any credential of
skyfed's: a signature the backend does not take gets its 401, and nothing else
is open to a request without a token there. A container's keys are the
container's metadata on its backend already; an account's keys are skyfed's
(account metadata, swift_account), so before a signed request goes to a place
this process makes sure that place's account holds the keys skyfed keeps now
(a key changed or removed stops working on the next signed request anywhere).

An upload is held to the account's quotas (swift_quota) before it goes: one into
an account past its quota is 413 whatever its signature (Swift checks the signature
first; skyfed cannot before the backend does).

A read of a static large object whose segments are elsewhere (swift_slo_far) is
skyfed's once its place took the signature (a signed HEAD: every read's signature
allows one), and a signed POST to one keeps skyfed's marks on it.

Not served: `temp_url_ip_range` (the backend would compare the range with
skyfed's address, not the caller's); such a request is refused (401).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import Unauthorized
from skyfed.objects import swift_slo_far, swift_slo_marks
from skyfed.objects.models import Container, StorageCluster, SwiftAccount
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import upstream_of
from skyfed.objects.swift_access import Access
from skyfed.objects.swift_account import check_quotas
from skyfed.objects.swift_auth import ACCOUNT_PREFIX
from skyfed.objects.swift_forward import Upstream, ask, forward, open_stream
from skyfed.objects.swift_own_meta import OWN_META
from skyfed.objects.swift_refs import kept_marks

KEYS = ("temp-url-key", "temp-url-key-2")
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
# Swift's defaults (swift/common/middleware/tempurl.py), where no cluster says.
DEFAULTS: dict[str, Any] = {
    "methods": sorted(METHODS),
    "incoming_remove_headers": ["x-timestamp", "x-open-expired"],
    "incoming_allow_headers": [],
    "outgoing_remove_headers": ["x-object-meta-*"],
    "outgoing_allow_headers": ["x-object-meta-public-*"],
    "allowed_digests": ["sha1", "sha256", "sha512"],
}


def describe(clusters: list[StorageCluster]) -> dict[str, Any]:
    """`/info`'s tempurl: what every cluster of the zone does (the first's lists)."""
    for cluster in clusters:
        found = (cluster.info or {}).get("tempurl")
        if isinstance(found, dict):
            return found
    return dict(DEFAULTS)


def is_signed(request: Request) -> bool:
    """A temporary URL's request: signed, and with no token (a token wins, as in Swift).
    An empty signature or expiry is no signature: the request needs a token then."""
    query = request.query_params
    headers = request.headers
    return (
        bool(query.get("temp_url_sig"))
        and bool(query.get("temp_url_expires"))
        and not (headers.get("x-auth-token") or headers.get("x-storage-token"))
    )


async def serve(
    request: Request,
    session: AsyncSession,
    parts: StorageParts,
    account: str,
    container: str,
    obj: str,
) -> Response:
    project_id = account.removeprefix(ACCOUNT_PREFIX)
    refused = Unauthorized("the temporary URL is not valid (or has expired)")
    if request.method not in METHODS or "temp_url_ip_range" in request.query_params:
        raise refused
    known = await session.get(Container, (project_id, container))
    if known is None:
        raise refused  # (no name is confirmed to a caller without a valid signature)
    upstream = await upstream_of(session, parts, known, None)
    if request.method == "PUT":  # an upload like any other: the account's quotas hold
        length = request.headers.get("content-length", "")
        nobody = Access(project_id, None, False, None, frozenset(), "")
        await check_quotas(
            session, parts, nobody, known, account, int(length) if length.isdigit() else 0
        )
    row = await session.get(SwiftAccount, project_id)
    foreign_refs = bool(known.foreign_refs)
    await session.commit()  # hold no connection while the place answers
    await _sync_keys(parts, upstream, account, row)
    path = (container, obj)
    kept: dict[str, str] = {}
    if foreign_refs and request.method in ("GET", "HEAD"):
        if (far := await _far(request, upstream, account, path)) is not None:
            owner = Access(project_id, None, True, None, frozenset(), "")  # (Swift's: the
            return await swift_slo_far.serve(  # signature reads the account's segments)
                request, session, parts, owner, upstream, account, path, far
            )
    elif foreign_refs and request.method == "POST":  # a far large object stays one
        kept = await kept_marks(request, upstream, account, path)
    # skyfed's own metadata is neither a signed request's to set nor to see.
    return await forward(request, upstream, account, path, kept, drop=OWN_META, anonymous=True)


async def _far(
    request: Request, upstream: Upstream, account: str, path: tuple[str, str]
) -> Mapping[str, str] | None:
    """A far large object's manifest (swift_slo_far) when the signature is good for a
    read of it (the place's own check, with a HEAD, which every read's signature
    allows); else None (the request goes on as it is, and the place answers)."""
    params = list(request.query_params.multi_items())
    signed = await open_stream(upstream, "HEAD", account, path, {}, params, anonymous=True)
    await signed.aclose()
    if signed.status_code >= 300:
        return None
    status, headers, _ = await ask(upstream, "HEAD", account, swift_slo_marks.PROBE, path)
    return headers if status < 300 and swift_slo_marks.is_far(headers) else None


async def _sync_keys(
    parts: StorageParts, upstream: Upstream, account: str, row: SwiftAccount | None
) -> None:
    """The place's account holds the keys skyfed keeps for the account, no other."""
    metadata = (row.metadata_ if row is not None else None) or {}
    keys = tuple((k, metadata[k]) for k in KEYS if metadata.get(k))
    mark = (upstream.kind, upstream.name, account)
    if parts.tempurl_keys.get(mark) == keys:
        return
    headers = {f"x-account-meta-{k}": v for k, v in keys}
    headers |= {f"x-remove-account-meta-{k}": "x" for k in KEYS if k not in dict(keys)}
    answer = await open_stream(upstream, "POST", account, (), headers, [])
    await answer.aclose()
    if answer.status_code >= 300:
        raise upstream.unavailable(f"its account's keys were not set ({answer.status_code})")
    parts.tempurl_keys[mark] = keys
