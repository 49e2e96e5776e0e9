"""`GET /info`: what this zone's Swift API serves, as Swift describes itself.

Only what skyfed serves for its whole subtree is listed: the limits it checks, the
tiers (as storage policies) its own clusters and its children offer, and the
features that hold across clusters. A backend feature that only works inside one
cluster is not advertised until skyfed makes it hold across them (docs/objects.md).
DLO has no entry, as in Swift (it is always on).

Also Swift's answers for paths that name no account skyfed has: `/v1` alone is
412, an `AUTH_` account that is no project's id is 401 without a token (with
Swift's quoted realm) and 403 with one, an empty account or container is 404.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.convertors import Convertor, register_url_convertor

from skyfed.core import SessionDep
from skyfed.errors import Forbidden, NotFound, PreconditionFailed, Unauthorized
from skyfed.objects import swift_slo, swift_tempurl
from skyfed.objects.api import PartsDep
from skyfed.objects.models import StorageCluster
from skyfed.objects.places import offered_tiers
from skyfed.objects.swift_auth import ACCOUNT_PREFIX
from skyfed.objects.swift_http import swift_route
from skyfed.objects.swift_listing import LISTING_LIMIT
from skyfed.objects.swift_meta import (
    MAX_HEADER_SIZE,
    MAX_META_COUNT,
    MAX_META_NAME_LENGTH,
    MAX_META_OVERALL_SIZE,
    MAX_META_VALUE_LENGTH,
)

router = APIRouter(tags=["swift"])
# Swift's own default, where no cluster says less.
MAX_FILE_SIZE = 5 * 1024**3 + 2


def max_file_size(clusters: Iterable[StorageCluster]) -> int:
    """The largest object every cluster takes (Swift's default where none says)."""
    sizes = [int(c.info.get("max_file_size") or MAX_FILE_SIZE) for c in clusters if c.info]
    return min(sizes, default=MAX_FILE_SIZE)


@router.get("/info", include_in_schema=False)
async def info(parts: PartsDep, session: SessionDep) -> dict[str, Any]:
    tiers = await offered_tiers(session)
    clusters = parts.clusters.values()
    default = parts.core.settings.default_storage_tier
    return {
        "swift": {
            "version": f"skyfed {_version()}",
            "max_file_size": max_file_size(clusters),
            "max_meta_name_length": MAX_META_NAME_LENGTH,
            "max_meta_value_length": MAX_META_VALUE_LENGTH,
            "max_meta_count": MAX_META_COUNT,
            "max_meta_overall_size": MAX_META_OVERALL_SIZE,
            "max_header_size": MAX_HEADER_SIZE,
            "max_object_name_length": 1024,
            "max_container_name_length": 256,
            "max_account_name_length": 256,
            "container_listing_limit": LISTING_LIMIT,
            "account_listing_limit": LISTING_LIMIT,
            "extra_header_count": 0,
            "valid_api_versions": ["v1", "v1.0"],
            "allow_account_management": False,
            "account_autocreate": True,
            "policies": [
                {"name": tier, "aliases": tier} | ({"default": True} if tier == default else {})
                for tier in sorted(tiers)
            ],
        },
        "tempauth": {"account_acls": True},
        # Followed across clusters by skyfed (swift_refs), static links too.
        "symlink": {"symloop_max": 2, "static_links": True},
        # A versions container is placed beside the container it keeps versions of;
        # the new style keeps them in a hidden container on the same cluster.
        "versioned_writes": {"allowed_flags": ["x-versions-location", "x-history-location"]},
        "object_versioning": {},
        # Kept and enforced on the container's own cluster.
        "container_quotas": {},
        # Kept by skyfed, enforced over every cluster holding the account (swift_quota).
        "account_quotas": {},
        # Served by the clusters, for segments beside their manifest (swift_slo).
        "slo": swift_slo.limits(clusters),
        # Checked by the container's cluster, with the account's keys skyfed keeps.
        "tempurl": swift_tempurl.describe(list(clusters)),
    }


class AnyAccount(Convertor[str]):
    """An account segment that is not a project's id (those match the routes first)."""

    regex = f"{ACCOUNT_PREFIX}[^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("swift_any_account", AnyAccount())
_ALL = ["GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "OPTIONS"]


@router.api_route("/v1", methods=_ALL, include_in_schema=False)
@swift_route
async def version_only() -> Response:
    raise PreconditionFailed("Bad URL")


@router.api_route("/v1/{account:swift_any_account}", methods=_ALL, include_in_schema=False)
@router.api_route(
    "/v1/{account:swift_any_account}/{rest:path}", methods=_ALL, include_in_schema=False
)
@swift_route
async def no_such_account(request: Request, account: str) -> Response:
    if not (request.headers.get("x-auth-token") or request.headers.get("x-storage-token")):
        raise Unauthorized("X-Auth-Token is required (GET /auth/v1.0)")
    raise Forbidden("no such account here")


@router.api_route("/v1//{rest:path}", methods=_ALL, include_in_schema=False)
@router.api_route("/v1/{account}//{rest:path}", methods=_ALL, include_in_schema=False)
@swift_route
async def empty_segment() -> Response:
    """A path with an empty account or container names nothing (Swift's 404)."""
    raise NotFound("no account or container is named ''")


@functools.cache
def _version() -> str:
    """skyfed's version, read from its installed metadata once."""
    return importlib.metadata.version("skyfed")
