"""A project's Swift account: `/v1/AUTH_<project id>`.

GET lists the account's containers over every cluster that holds some, merged in
Swift's order with Swift's paging and formats; HEAD sums their counts. The
container count and names are skyfed's own (the `containers` table); object and
byte counts are what each cluster's account says (its container-updater's lag is
theirs). The account's metadata and ACL are kept by skyfed.

A cluster that does not answer does not break the listing: its containers are
listed from skyfed's table with no counts, and `X-Skyfed-Unavailable-Clusters`
names it; requests on those containers are 503 naming it.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.core import SessionDep
from skyfed.db.base import utcnow
from skyfed.errors import Forbidden, MethodNotAllowed
from skyfed.identity.deps import IdentitiesDep
from skyfed.identity.models import Project
from skyfed.objects import moving_counts, swift_quota
from skyfed.objects.api import PartsDep
from skyfed.objects.locations import INDEX_MAX, Holders, Index, Placed
from skyfed.objects.models import UP, Container, StorageCluster, SwiftAccount
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import child_upstream, cluster_upstream, offered_tiers
from skyfed.objects.storage_planner import ACTIVE
from skyfed.objects.swift_access import Access, check_held_here, parse_account_acl, resolve
from skyfed.objects.swift_auth import ACCOUNT_PREFIX
from skyfed.objects.swift_forward import Upstream, ask
from skyfed.objects.swift_http import swift_route
from skyfed.objects.swift_listing import (
    CONTENT_TYPES,
    Entry,
    ListingQuery,
    choose_format,
    merge,
    render,
)
from skyfed.objects.swift_listing import select as select_page
from skyfed.objects.swift_meta import check_metadata, check_stored, meta_updates
from skyfed.zones.models import ChildZone

router = APIRouter(tags=["swift"])
UNAVAILABLE_HEADER = "X-Skyfed-Unavailable-Clusters"
# Keys that sign temporary URLs: for the account's owners' eyes only.
OWNER_ONLY_META = ("temp-url-key",)


@router.api_route(
    "/v1/{account:swift_account}",
    methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
    include_in_schema=False,
)
@swift_route
async def account_route(
    account: str,
    request: Request,
    identities: IdentitiesDep,
    parts: PartsDep,
    session: SessionDep,
) -> Response:
    project_id = account.removeprefix(ACCOUNT_PREFIX)
    access = await resolve(request, identities, session, project_id)
    access.account(request.method if request.method in ("GET", "HEAD") else "POST")
    if request.method in ("PUT", "DELETE"):
        raise MethodNotAllowed("a Swift account is a skyfed project: made and removed there")
    if request.method == "POST":
        await check_held_here(session, access)
        return await _post(request, parts, session, access)
    return await _read(request, parts, session, access, account)


async def _post(
    request: Request, parts: StorageParts, session: AsyncSession, access: Access
) -> Response:
    headers = {k.lower(): v for k, v in request.headers.items()}
    if swift_quota.asked(headers) and not (access.caller and access.caller.is_admin):
        raise Forbidden("only an admin sets or removes an account's quotas")
    limits = swift_quota.updates(headers, await offered_tiers(session))
    # The old way's quota is a quota, not metadata.
    headers.pop(swift_quota.LEGACY, None)
    headers.pop(swift_quota.LEGACY_REMOVE, None)
    check_metadata(headers, "account-meta")
    acl_header = headers.get("x-account-access-control")
    acl = parse_account_acl(acl_header) if acl_header is not None else None
    if "x-remove-account-access-control" in headers:
        acl = {}
    row = await session.get(SwiftAccount, access.project_id)
    if row is None:
        row = SwiftAccount(project_id=access.project_id, metadata_={}, acl={})
        session.add(row)
    merged = meta_updates(dict(row.metadata_ or {}), headers, "account-meta")
    check_stored(merged)
    row.metadata_ = merged
    if acl is not None:
        row.acl = acl
    swift_quota.apply(row, limits, access.caller)
    row.updated_at = utcnow()
    await session.commit()
    parts.quotas.forget(access.project_id)
    return Response(status_code=204)


async def _read(
    request: Request, parts: StorageParts, session: AsyncSession, access: Access, account: str
) -> Response:
    is_get = request.method == "GET"
    query = ListingQuery.parse(dict(request.query_params)) if is_get else ListingQuery()
    fmt = choose_format(request.query_params.get("format"), request.headers.get("accept"))
    # Every place holding some of the account's containers answers for its counts;
    # only the containers a page can hold are looked at by name.
    holders = parts.account_holders.get(access.project_id)
    if holders is None:
        holders = await _holders(session, parts, access.project_id)
    tiers, keys = holders.tiers, holders.keys
    row = await session.get(SwiftAccount, access.project_id)
    project = await session.get(Project, access.project_id)
    places = await _places(session, parts, access, keys)
    # Known down (by the polls) or gone: not asked, listed from the table.
    asked = {key: up for key, (up, ready) in places.items() if ready}
    unavailable = {places[key][0].name if key in places else key for key in keys} - {
        up.name for up in asked.values()
    }
    params = query.params() if is_get else [("format", "json")]
    held: dict[str, dict[str, str]] = defaultdict(dict)  # place -> name -> tier
    counts = _Counts()
    stats = parts.holder_stats
    skipped: set[str] = set()
    if is_get and holders.index is not None:
        # The names are in memory: a holder with none on this page is not asked for
        # it, where its counts are known from a moment ago (the last page, say).
        _hold(held, holders.index.between(*_bounds(query)))
        for key in [k for k in asked if not held.get(k) and not query.delimiter]:
            known = stats.get(access.project_id, key)
            if known is not None:
                counts.add(asked.pop(key), known)
                skipped.add(key)
                below = known.get(UNAVAILABLE_HEADER.lower())
                unavailable |= set(below.split(",")) if below else set()
    # The holders list their part while skyfed reads which names are its own.
    asking = asyncio.gather(
        *(ask(up, request.method, account, params) for up in asked.values()),
        return_exceptions=True,
    )
    try:
        if is_get and holders.index is None:
            _hold(held, await _in_range(session, parts, access.project_id, holders, query))
        await session.commit()  # hold no connection while the clusters answer
    except BaseException:
        asking.cancel()
        raise
    answers = await asking
    listings: list[list[Entry]] = []
    for (key, upstream), answer in zip(list(asked.items()), answers, strict=True):
        if isinstance(answer, BaseException) or (answer[0] >= 300 and answer[0] != 404):
            unavailable.add(upstream.name)
            del asked[key]
            continue
        _, headers, body = answer
        stats.remember(access.project_id, key, headers)
        counts.add(upstream, headers)
        below = headers.get(UNAVAILABLE_HEADER.lower())
        unavailable |= set(below.split(",")) if below else set()
        if is_get and isinstance(body, list):
            listings.append(_ours(body, held[key]))
    if is_get:
        for key in keys - asked.keys() - skipped:
            names = held.get(key, {})
            listings.append(await _from_table(parts, access.project_id, names, query))
    # Containers that move are in two places: each is counted once (moving_counts).
    fix = await moving_counts.correction(session, parts, access.project_id, asked.keys() | skipped)
    counts.correct(fix)
    out = _account_headers(access, row, project, tiers, counts)
    if unavailable:
        out[UNAVAILABLE_HEADER] = ",".join(sorted(unavailable))
    content_type = f"{CONTENT_TYPES[fmt]}; charset=utf-8"
    if not is_get:
        out |= {"Content-Type": content_type, "Content-Length": "0"}
        return Response(status_code=204, headers=out)
    body = render(merge(listings, query), fmt, account)
    if not body:
        out |= {"Content-Type": content_type, "Content-Length": "0"}
        return Response(status_code=204, headers=out)
    return Response(content=body, status_code=200, headers=out, media_type=content_type)


async def _places(
    session: AsyncSession, parts: StorageParts, access: Access, keys: Iterable[str]
) -> dict[str, tuple[Upstream, bool]]:
    """Each place holding some of the account's containers, and whether it is up."""
    places: dict[str, tuple[Upstream, bool]] = {}
    for key in keys:
        cluster = await session.get(StorageCluster, key)
        if cluster is not None:
            places[key] = (cluster_upstream(parts, cluster), cluster.state == UP)
            continue
        child = await session.get(ChildZone, key)
        if child is not None:
            places[key] = (child_upstream(parts, child, access.caller), child.state == ACTIVE)
    return places


async def _holders(session: AsyncSession, parts: StorageParts, project_id: str) -> Holders:
    tiers: dict[str, int] = defaultdict(int)
    keys: set[str] = set()
    for cluster_id, child_id, tier, count in await session.execute(
        select(Container.cluster_id, Container.child_id, Container.tier, func.count())
        .where(Container.project_id == project_id)
        .group_by(Container.cluster_id, Container.child_id, Container.tier)
    ):
        tiers[tier] += count
        keys.add(child_id or cluster_id or "")
    return parts.account_holders.remember(project_id, tiers, frozenset(keys))


def _hold(held: dict[str, dict[str, str]], rows: Iterable[Placed]) -> None:
    for name, cluster_id, child_id, tier in rows:
        held[child_id or cluster_id or ""][name] = tier


def _bounds(query: ListingQuery) -> tuple[str, str]:
    """The names a page can hold lie after the first and before the second."""
    if query.reverse:
        return query.end_marker, query.marker
    return query.marker, query.end_marker


async def _in_range(
    session: AsyncSession,
    parts: StorageParts,
    project_id: str,
    holders: Holders,
    query: ListingQuery,
) -> Sequence[Placed]:
    """The account's containers a page can hold: those past the marker and before
    the end marker, in Swift's order (UTF-8 bytes), as skyfed placed them: cut from
    the account's index (read once, kept with its holders) when it is small enough,
    else read for the page (all of a large account's names would be, on each page)."""
    after, before = _bounds(query)
    if holders.index is None and holders.count <= INDEX_MAX:
        rows = await _read_placed(session, project_id, "", "")
        index = Index.of(list(rows))
        parts.account_holders.indexed(project_id, holders, index)
        return index.between(after, before)
    if holders.index is not None:
        return holders.index.between(after, before)
    return await _read_placed(session, project_id, after, before)


async def _read_placed(
    session: AsyncSession, project_id: str, after: str, before: str
) -> Sequence[Placed]:
    name = Container.name
    if session.get_bind().dialect.name == "postgresql":
        name = name.collate("C")  # bytes, whatever the database's locale
    found = select(Container.name, Container.cluster_id, Container.child_id, Container.tier)
    found = found.where(Container.project_id == project_id)
    if after:
        found = found.where(name > after)
    if before:
        found = found.where(name < before)
    return [tuple(row) for row in (await session.execute(found)).all()]  # type: ignore[misc]


def _ours(listed: list[Entry], names: dict[str, str]) -> list[Entry]:
    """The entries of a holder's listing that skyfed placed there, with skyfed's tier
    as their storage policy (a cluster names it its own way)."""
    kept = []
    for entry in listed:
        if "subdir" in entry:
            kept.append(entry)
        elif (tier := names.get(entry.get("name", ""))) is not None:
            entry["storage_policy"] = tier
            kept.append(entry)
    return kept


async def _from_table(
    parts: StorageParts, project_id: str, names: dict[str, str], query: ListingQuery
) -> list[Entry]:
    """A page of the containers of a cluster that does not answer: names, no counts."""
    page = select_page(names, query)
    listed = [entry["name"] for entry in page if "name" in entry]
    if not listed:
        return page
    async with parts.core.db.session() as session:
        created = dict(
            (
                await session.execute(
                    select(Container.name, Container.created_at).where(
                        Container.project_id == project_id, Container.name.in_(listed)
                    )
                )
            ).all()
        )
    for entry in page:
        if "name" in entry:
            entry |= {
                "count": 0,
                "bytes": 0,
                "last_modified": _iso(created.get(entry["name"], utcnow())),
                "storage_policy": names[entry["name"]],
            }
    return page


class _Counts:
    """Objects and bytes summed over the clusters' accounts, in all and per tier."""

    def __init__(self) -> None:
        self.objects = 0
        self.bytes = 0
        self.per_tier: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def add(self, upstream: Upstream, headers: Mapping[str, str]) -> None:
        get = headers.get
        self.objects += int(get("x-account-object-count", 0) or 0)
        self.bytes += int(get("x-account-bytes-used", 0) or 0)
        for tier, policy in upstream.tiers.items():
            prefix = f"x-account-storage-policy-{policy.lower()}-"
            self.per_tier[tier][0] += int(get(prefix + "object-count", 0) or 0)
            self.per_tier[tier][1] += int(get(prefix + "bytes-used", 0) or 0)

    def correct(self, twice: moving_counts.Correction) -> None:
        """Take off what was counted twice (containers that move)."""
        self.objects -= twice.objects
        self.bytes -= twice.bytes
        for tier, (objects, used) in twice.per_tier.items():
            self.per_tier[tier][0] -= objects
            self.per_tier[tier][1] -= used


def _account_headers(
    access: Access,
    row: SwiftAccount | None,
    project: Project | None,
    per_tier_containers: Mapping[str, int],
    counts: _Counts,
) -> dict[str, str]:
    created = project.created_at if project is not None else utcnow()
    stamp = f"{created.timestamp():.5f}"
    out = {
        "X-Account-Container-Count": str(sum(per_tier_containers.values())),
        "X-Account-Object-Count": str(counts.objects),
        "X-Account-Bytes-Used": str(counts.bytes),
        "X-Timestamp": stamp,
        "X-Put-Timestamp": stamp,
    }
    for tier, containers in per_tier_containers.items():
        objects, used = counts.per_tier.get(tier, [0, 0])
        prefix = f"X-Account-Storage-Policy-{tier}-"
        out[prefix + "Container-Count"] = str(containers)
        out[prefix + "Object-Count"] = str(objects)
        out[prefix + "Bytes-Used"] = str(used)
    if row is not None:
        for name, value in (row.metadata_ or {}).items():
            if access.owner or not name.startswith(OWNER_ONLY_META):
                out[f"X-Account-Meta-{name}"] = value
        if access.owner and row.acl:
            out["X-Account-Access-Control"] = json.dumps(row.acl, separators=(",", ":"))
        out |= swift_quota.headers(swift_quota.of(row))
    return out


async def check_quotas(
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    container: Container,
    account: str,
    length: int,
) -> None:
    """The account's quotas, for an upload of `length` bytes into `container` by
    anyone but an admin: 413 when it would pass one (swift_quota)."""
    if access.caller is not None and access.caller.is_admin:
        return
    quotas = await parts.quotas.get(session, access.project_id)
    if not quotas:
        return
    usage = await account_usage(session, parts, access, account)
    reason = swift_quota.exceeded(quotas, usage, container.tier, length)
    if reason is not None:
        raise swift_quota.refuse(reason)


async def account_usage(
    session: AsyncSession, parts: StorageParts, access: Access, account: str
) -> swift_quota.Usage:
    """The account's objects and bytes, in all and per tier, as every place holding
    its containers says now (asked in parallel); a place down or not answering counts
    as it last said, if it said anything in the last seconds (else as nothing)."""
    holders = parts.account_holders.get(access.project_id)
    if holders is None:
        holders = await _holders(session, parts, access.project_id)
    places = await _places(session, parts, access, holders.keys)
    await session.commit()  # hold no connection while the places answer
    # A place known down (the polls) is not waited for: it counts as it last said.
    up = {key: upstream for key, (upstream, ready) in places.items() if ready}
    answers = await asyncio.gather(
        *(ask(upstream, "HEAD", account, []) for upstream in up.values()),
        return_exceptions=True,
    )
    said = dict(zip(up, answers, strict=True))
    counts = _Counts()
    stats = parts.holder_stats
    for key, (upstream, _) in places.items():
        answer = said.get(key)
        if answer is not None and not isinstance(answer, BaseException) and answer[0] < 300:
            stats.remember(access.project_id, key, answer[1])
            counts.add(upstream, answer[1])
        elif (known := stats.get(access.project_id, key)) is not None:
            counts.add(upstream, known)
    per_tier = {tier: (objects, used) for tier, (objects, used) in counts.per_tier.items()}
    return counts.objects, counts.bytes, per_tier


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")
