"""Listing across zones (pure): one sort order everywhere, opaque markers, a k-way merge.

Every listed resource (servers; containers and volumes next) sorts newest first by
(created_at, id). The entry zone fixes created_at
and every zone below keeps it, so all zones agree on the order; a marker
carries the sort key itself, so a zone needs no lookup to resume after it.
Each zone answers at most `limit` servers after the marker; the merge keeps
the first `limit` of all answers, and the last one kept is the next marker.
Every server is listed exactly once across pages.

A resource on its way to a child (the parent asked, the child may not have it yet)
is listed by the parent too, so it never drops out of sight; when both answer
for it, the copy from deeper down (the longer location path) is the current one.
"""

from __future__ import annotations

import base64
import heapq
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

SortKey = tuple[datetime, str]


class MarkerError(ValueError):
    pass


def sort_key(item: dict[str, Any]) -> SortKey:
    created = item["created_at"]
    if isinstance(created, str):
        created = datetime.fromisoformat(created)
    return created, item["id"]


def encode_marker(key: SortKey) -> str:
    raw = json.dumps([key[0].isoformat(), key[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_marker(marker: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4))
        created, ident = json.loads(raw)
        key = (datetime.fromisoformat(created), str(ident))
    except (ValueError, TypeError) as exc:
        raise MarkerError("the marker is not one this API gave out") from exc
    if key[0].tzinfo is None:
        raise MarkerError("the marker is not one this API gave out")
    return key


def after(key: SortKey, marker: SortKey | None) -> bool:
    """Whether `key` comes after `marker` in the listing (newest first)."""
    return marker is None or key < marker


def merge(
    pages: Iterable[Sequence[dict[str, Any]]], limit: int, more: bool
) -> tuple[list[dict[str, Any]], str | None]:
    """The first `limit` items of sorted pages, and the marker of the next page.

    `more` says whether some zone had items beyond its page.
    """
    merged = heapq.merge(*pages, key=sort_key, reverse=True)
    items: list[dict[str, Any]] = []
    for item in merged:
        if items and items[-1]["id"] == item["id"]:  # equal keys come out side by side
            if _depth(item) > _depth(items[-1]):
                items[-1] = item
            continue
        if len(items) == limit:
            more = True
            break
        items.append(item)
    next_marker = encode_marker(sort_key(items[-1])) if more and items else None
    return items, next_marker


def _depth(item: dict[str, Any]) -> int:
    return len((item.get("location") or {}).get("path") or ())
