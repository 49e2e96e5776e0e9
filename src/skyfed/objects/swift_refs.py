"""Objects that name other objects, DLO manifests and symlinks, when what they name
is in a container on another cluster or in another zone.

A backend only looks on its own cluster. So a write of such an object naming a
container that is elsewhere (or not made yet) marks its container
(`foreign_refs`), and reads there first ask what the object is
(`HEAD ?multipart-manifest=get&symlink=get`): a DLO manifest whose segments are
elsewhere is assembled by skyfed (swift_dlo); a symlink whose target is
elsewhere is followed by skyfed, one hop, with Swift's `Content-Location`.
Reading through either needs read access where it leads, as in Swift.

A static symlink (`X-Symlink-Target-Etag`) whose target is elsewhere is checked by
skyfed as the backend would check one beside it: the target must exist (409) and
have that ETag (409), read with the caller's access (403). The backend keeps it
as a dynamic link with the target's ETag and size in metadata of skyfed's own
(`STATIC`, never sent by a client nor shown to one, and sent again with a POST to
the link, which replaces its metadata). A link read as itself
(`symlink=get`) shows them as Swift does (`X-Symlink-Target-Etag`,
`X-Symlink-Target-Bytes`); followed, a target whose ETag changed since is 409.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Unauthorized,
)
from skyfed.identity.identities import Identities
from skyfed.objects import swift_dlo, swift_slo_delete, swift_slo_far, swift_slo_marks
from skyfed.objects.models import Container
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import known_container, upstream_of
from skyfed.objects.swift_access import Access, resolve
from skyfed.objects.swift_auth import ACCOUNT_PREFIX
from skyfed.objects.swift_forward import Upstream, ask, forward
from skyfed.objects.swift_http import error_response, header_path
from skyfed.objects.swift_own_meta import OWN_META, STATIC, STATIC_BYTES, STATIC_ETAG

_PROBE = swift_slo_marks.PROBE
_ITSELF = [("symlink", "get")]  # a link's target as a static link sees it: not followed


def same_place(a: Upstream, b: Upstream) -> bool:
    """Whether a backend there reads what is in the other itself (not when one of the
    two moves: its objects are in two places, objects/moves)."""
    if a.source is not None or b.source is not None:
        return False
    return (a.kind, a.name) == (b.kind, b.name)


def symlink_target(value: str) -> tuple[str, str]:
    container, _, obj = header_path(value).lstrip("/").partition("/")
    if not container or not obj:
        raise PreconditionFailed(
            "X-Symlink-Target header must be of the form <container name>/<object name>"
        )
    return container, obj


def _named(request: Request, account: str) -> list[tuple[str, str]]:
    """The (account, container) pairs a write names."""
    headers = request.headers
    named = []
    if "x-object-manifest" in headers:
        named.append((account, swift_dlo.manifest_target(headers["x-object-manifest"])[0]))
    if "x-symlink-target" in headers:
        target_account = header_path(headers.get("x-symlink-target-account") or account)
        named.append((target_account, symlink_target(headers["x-symlink-target"])[0]))
    return named


async def note_write(
    request: Request,
    identities: Identities,
    session: AsyncSession,
    parts: StorageParts,
    container: Container,
    upstream: Upstream,
    account: str,
) -> dict[str, str]:
    """Marks `container` when the object written names a container elsewhere; the
    headers to send instead of the request's `X-Symlink-Target-Etag` for a static
    link to an object elsewhere (checked here), else none."""
    headers = request.headers
    sent: dict[str, str] = {}
    if headers.get("x-symlink-target-etag") and "x-symlink-target" in headers:
        sent = await _static_target(request, identities, session, parts, upstream, account)
    for target_account, name in _named(request, account):
        found = await session.get(Container, (target_account.removeprefix(ACCOUNT_PREFIX), name))
        here = found is not None and same_place(
            await upstream_of(session, parts, found, None), upstream
        )
        if here and target_account == account:
            continue  # the backend follows it, and the access there is the caller's here
        if not container.foreign_refs:
            container.foreign_refs = True
            await session.commit()
    return sent


async def _static_target(
    request: Request,
    identities: Identities,
    session: AsyncSession,
    parts: StorageParts,
    upstream: Upstream,
    account: str,
) -> dict[str, str]:
    """Swift's checks of a static link's target. The caller's read access there comes
    first, wherever it is (403: the backend checks a target beside it as skyfed, who
    may read anything). A target elsewhere is checked here as the backend would: there
    (409), with the ETag named (409), the target itself (a link is not followed; a
    large object's manifest ETag, its whole size). What the link object keeps of it,
    and the target's content type for a link given none; nothing for a target beside
    the link (its backend checks it)."""
    headers = request.headers
    container, obj = symlink_target(headers["x-symlink-target"])
    target_account = header_path(headers.get("x-symlink-target-account") or account)
    reader = await resolve(
        request, identities, session, target_account.removeprefix(ACCOUNT_PREFIX)
    )
    found = await _readable(session, reader, container)
    if found is None:
        raise Conflict(f"X-Symlink-Target {container}/{obj} does not exist")
    place = await upstream_of(session, parts, found, None)
    if same_place(place, upstream):
        return {}
    await session.commit()  # hold no connection while the target's place answers
    status, answered, _ = await ask(place, "HEAD", target_account, _ITSELF, (container, obj))
    if status == 404:
        raise Conflict(f"X-Symlink-Target {container}/{obj} does not exist")
    if status >= 300:
        raise place.unavailable(f"the symlink's target answered {status}")
    etag = _pinned_etag(answered)
    wanted = headers["x-symlink-target-etag"].strip('"')
    if etag != wanted:
        raise _mismatch(etag, wanted)
    sent = {STATIC_ETAG: etag, STATIC_BYTES: answered.get("content-length", "0")}
    if not headers.get("content-type") and answered.get("content-type"):
        sent["content-type"] = answered["content-type"]
    return sent


def _pinned_etag(target: Mapping[str, str]) -> str:
    """The ETag a static link pins, from its target's HEAD with `_ITSELF`: a large
    object's manifest's (Swift's symlink middleware sits below slo), else the
    object's own."""
    return (target.get("x-manifest-etag") or target.get("etag", "")).strip('"')


async def kept_marks(
    request: Request, upstream: Upstream, account: str, path: tuple[str, str]
) -> dict[str, str]:
    """What skyfed keeps on a static link to an object elsewhere or on a far large
    object (none for any other object): a POST replaces an object's metadata, so it
    is sent again with it (and a new content type of a far one's is marked)."""
    status, headers, _ = await ask(upstream, "HEAD", account, _PROBE, path)
    if status >= 300:
        return {}
    kept = {name: headers[name] for name in OWN_META if name in headers}
    if swift_slo_marks.is_far(headers) and (kind := request.headers.get("content-type")):
        etag, total = headers[swift_slo_marks.SLO_ETAG], headers[swift_slo_marks.SLO_BYTES]
        kept["content-type"] = swift_slo_marks.marked_kind(kind, int(total), etag)
    return kept


async def delete_through(
    request: Request,
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
) -> Response | None:
    """skyfed's `DELETE ?multipart-manifest=delete` of a far large object; None for
    any other object (its backend answers)."""
    if "version-id" in request.query_params:
        return None  # (a version's: the backend's, as it keeps versions)
    status, headers, _ = await ask(upstream, "HEAD", account, _PROBE, path)
    if status >= 300 or not swift_slo_marks.is_far(headers):
        return None
    return await swift_slo_delete.delete(request, session, parts, access, upstream, account, path)


async def check_source(
    request: Request,
    identities: Identities,
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    upstream: Upstream,
    source: tuple[str, str, str],
) -> tuple[Upstream, tuple[str, str, str]] | None:
    """A copy's source is read by its backend as skyfed, following what it names: the
    copier must be able to read that too, as in Swift (403; 409 for a large object's
    segments). A link to an object elsewhere is followed here: its target (and its
    place) is what is copied; None when the source is read where it is."""
    account, path = source[0], source[1:]
    by_acl = not (access.owner or access.level)
    params = request.query_params
    status, headers, _ = await ask(upstream, "HEAD", account, _PROBE, path)
    if status >= 300:
        return None  # (the copy's own read answers)
    whole = params.get("multipart-manifest") != "get"
    if whole and by_acl and headers.get("x-static-large-object", "").lower() == "true":
        await _check_segments(session, access, upstream, account, path)
    elif whole and by_acl and (manifest := headers.get("x-object-manifest")):
        await _readable(session, access, swift_dlo.manifest_target(manifest)[0])
    elif params.get("symlink") != "get" and (target := headers.get("x-symlink-target")):
        target_account = header_path(headers.get("x-symlink-target-account") or account)
        if target_account != account:
            project_id = target_account.removeprefix(ACCOUNT_PREFIX)
            access = await resolve(request, identities, session, project_id)
        container, obj = symlink_target(target)
        found = await _readable(session, access, container)
        if found is not None:
            place = await upstream_of(session, parts, found, None)
            await session.commit()
            if not same_place(place, upstream):
                return place, (target_account, container, obj)
    return None


async def _readable(session: AsyncSession, access: Access, name: str) -> Container | None:
    """Container `name`, once the caller may read it (403 otherwise; None: not there)."""
    try:
        found = await known_container(session, access, name)
    except NotFound:
        return None  # (the backend answers for what is not there)
    access.object("GET", found)
    return found


def _mismatch(etag: str, wanted: str) -> Conflict:
    return Conflict(f"Object Etag {etag!r} does not match X-Symlink-Target-Etag header {wanted!r}")


async def read_through(
    request: Request,
    identities: Identities,
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
) -> Response | None:
    """skyfed's answer when the object names something elsewhere; else None (the
    backend answers as it does)."""
    params = dict(request.query_params)
    link_itself = params.get("symlink") == "get"  # (a DLO is still assembled then)
    status, headers, _ = await ask(upstream, "HEAD", account, _PROBE, path)
    version = _version_link(headers.get("x-symlink-target", ""), path)
    if status < 300 and version:  # object versioning's own link to the current version:
        versioned = [*_PROBE, ("version-id", version)]  # what that version is
        status, headers, _ = await ask(upstream, "HEAD", account, versioned, path)
    if status >= 300:
        return None
    if swift_slo_marks.is_far(headers) and "version-id" not in params:
        return await swift_slo_far.serve(
            request, session, parts, access, upstream, account, path, headers
        )
    if params.get("multipart-manifest") == "get":
        return None  # the manifest itself
    if headers.get("x-static-large-object", "").lower() == "true" and "version-id" not in params:
        described = await _backend_slo_elsewhere(session, parts, access, upstream, account, path)
        if described is not None:  # (its segments moved away: skyfed reads them)
            return await swift_slo_far.serve(
                request, session, parts, access, upstream, account, path, described
            )
    if headers.get("x-static-large-object", "").lower() == "true" and not (
        access.owner or access.level
    ):  # an ACL's reader: the backend reads segments as skyfed, who may read them all
        await _check_segments(session, access, upstream, account, path)
        return None
    if manifest := headers.get("x-object-manifest"):  # (a link itself has none)
        segment_container, prefix = swift_dlo.manifest_target(manifest)
        found = await _where(session, parts, access, segment_container, upstream)
        if found is None:
            return None
        return await swift_dlo.answer(
            request, dict(headers), found, account, segment_container, prefix
        )
    if link_itself and STATIC_ETAG in headers and "x-symlink-target" in headers:
        answer = await forward(request, upstream, account, path, drop=STATIC)
        answer.headers["x-symlink-target-etag"] = headers[STATIC_ETAG]
        answer.headers["x-symlink-target-bytes"] = headers.get(STATIC_BYTES, "0")
        return answer
    if (target := headers.get("x-symlink-target")) and not link_itself:
        target_account = header_path(headers.get("x-symlink-target-account") or account)
        container, obj = symlink_target(target)
        if target_account != account:
            access = await resolve(
                request, identities, session, target_account.removeprefix(ACCOUNT_PREFIX)
            )
        location = f"/v1/{quote(target_account)}/{quote(container)}/{quote(obj)}"
        try:
            found = await _where(session, parts, access, container, upstream)
        except (Forbidden, Unauthorized) as exc:  # where it points is still said
            answer = error_response(exc, target_account)
            answer.headers["content-location"] = location
            return answer
        if found is None:  # on this cluster (access checked): the backend follows it
            return None
        if (wanted := headers.get(STATIC_ETAG)) is not None:
            status, now, _ = await ask(found, "HEAD", target_account, _ITSELF, (container, obj))
            etag = _pinned_etag(now)
            if status < 300 and etag != wanted:  # (a missing target: the backend's 404)
                broken = error_response(_mismatch(etag, wanted), target_account)
                broken.headers["content-location"] = location  # where it still points
                return broken
        answer = await forward(request, found, target_account, (container, obj))
        answer.headers["content-location"] = location
        return answer
    return None


async def _backend_slo_elsewhere(
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
) -> dict[str, str] | None:
    """A backend's own large object some of whose segments' containers are elsewhere
    now (moved, or moving: objects/moves), described as skyfed's far ones are
    (swift_slo_far.serve); None when its backend can read them all itself."""
    status, stored_headers, stored = await ask(
        upstream, "GET", account, [("multipart-manifest", "get")], path
    )
    if status >= 300 or not isinstance(stored, list):
        return None
    names = {
        swift_slo_far.split_path(e["name"])[0]
        for e in stored
        if isinstance(e, dict) and isinstance(e.get("name"), str)
    }
    places = await swift_slo_far.places_of(session, parts, access, names, "GET")
    if all(p.upstream is None or same_place(p.upstream, upstream) for p in places.values()):
        return None
    status, whole, _ = await ask(upstream, "HEAD", account, [], path)  # (its own figures)
    if status >= 300:
        return None
    return {
        **dict(whole),
        swift_slo_marks.SLO_ETAG: whole.get("etag", "").strip('"'),
        swift_slo_marks.SLO_BYTES: whole.get("content-length", "0"),
        "etag": stored_headers.get("etag", "").strip('"'),
    }


MAX_SLO_DEPTH = 10  # Swift's nesting limit of static large objects


async def check_segments_deletable(
    session: AsyncSession,
    access: Access,
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
) -> None:
    """A writer by ACL deletes a backend's large object with its segments only where
    it may delete (the backend deletes them as skyfed): 409 before anything is."""
    status, headers, _ = await ask(upstream, "HEAD", account, _PROBE, path)
    if status < 300 and headers.get("x-static-large-object", "").lower() == "true":
        await _check_segments(session, access, upstream, account, path, method="DELETE")


async def _check_segments(
    session: AsyncSession,
    access: Access,
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
    depth: int = 0,
    method: str = "GET",
) -> None:
    """Conflict (Swift's answer) unless the caller may `method` every segment of the
    static large object at `path` (on its cluster, as every segment is: swift_slo)."""
    status, _, segments = await ask(upstream, "GET", account, [("multipart-manifest", "get")], path)
    if status >= 300 or not isinstance(segments, list):
        return  # (gone meanwhile: the backend answers)
    nested = []
    checked: set[str] = set()
    for segment in segments:
        name = segment.get("name") if isinstance(segment, dict) else None
        if not isinstance(name, str):
            continue  # inline data (the manifest as stored: "name", "sub_slo")
        container, _, obj = name.lstrip("/").partition("/")
        if container not in checked:
            checked.add(container)
            try:
                found = await known_container(session, access, container)
                access.object(method, found)
            except (Forbidden, Unauthorized, NotFound) as exc:
                raise Conflict(f"a segment of this object is not yours to {method}: {exc}") from exc
        if segment.get("sub_slo"):
            nested.append((container, obj))
    await session.close()
    if depth < MAX_SLO_DEPTH:
        for container, obj in nested:
            await _check_segments(
                session, access, upstream, account, (container, obj), depth + 1, method
            )


def _version_link(target: str, path: tuple[str, str]) -> str | None:
    """The version id when `target` is object versioning's link from an object to
    its current version (`<container>/<object>?version-id=<id>`), else None."""
    name, sep, query = target.partition("?version-id=")
    if sep and header_path(name) == "/".join(path):
        return query
    return None


async def _where(
    session: AsyncSession, parts: StorageParts, access: Access, name: str, here: Upstream
) -> Upstream | None:
    """Where container `name` is, when it is not `here` and the caller may read it."""
    try:
        found = await known_container(session, access, name)
        access.object("GET", found)
        place = await upstream_of(session, parts, found, access.caller)
    except NotFound:
        return None  # as on one cluster: the backend answers for a missing container
    finally:
        await session.close()
    return None if same_place(place, here) else place
