"""`GET /info`: what this zone's Swift API serves, as Swift describes itself.

Only what skyfed serves for its whole subtree is listed: the limits it checks, the
tiers (as storage policies) its own clusters and its children offer, and the
features that hold across clusters. A backend feature that only works inside one
cluster is not advertised until skyfed makes it hold across them (docs/objects.md).
DLO has no entry, as in Swift (it is always on).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter

from skyfed.core import SessionDep
from skyfed.objects.api import PartsDep
from skyfed.objects.models import StorageCluster
from skyfed.objects.places import offered_tiers
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
    sizes = [int(c.info.get("max_file_size", MAX_FILE_SIZE)) for c in clusters if c.info]
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
        # Followed across clusters by skyfed (swift_refs); a static link must name an
        # object on its own cluster, so they are not offered.
        "symlink": {"symloop_max": 2, "static_links": False},
    }


def _version() -> str:
    from importlib.metadata import version

    return version("skyfed")
