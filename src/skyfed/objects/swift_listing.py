"""Account listings as Swift gives them: the parameters, the merge of several
clusters' listings, and the three formats.

Swift orders names by their UTF-8 bytes; `marker` and `end_marker` bound a page
(both exclusive), `prefix` filters, `delimiter` rolls names up into `subdir`
entries, `reverse` turns the order, `limit` (at most 10,000) cuts the page.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

import orjson

from skyfed.errors import BadRequest, NotAcceptable, PreconditionFailed

LISTING_LIMIT = 10_000
CONTENT_TYPES = {"plain": "text/plain", "json": "application/json", "xml": "application/xml"}
_OFFERS = ("text/plain", "application/json", "application/xml", "text/xml")
_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})

Entry = dict[str, Any]  # {"name", "count", "bytes", "last_modified"} or {"subdir"}


@dataclass(frozen=True)
class ListingQuery:
    marker: str = ""
    end_marker: str = ""
    prefix: str = ""
    delimiter: str = ""
    limit: int = LISTING_LIMIT
    reverse: bool = False

    @classmethod
    def parse(cls, params: dict[str, str]) -> ListingQuery:
        # As Swift: a limit that is not a number is no limit given; above it, 412.
        raw = params.get("limit") or ""
        limit = int(raw) if raw.isdigit() else LISTING_LIMIT
        if limit > LISTING_LIMIT:
            raise PreconditionFailed(f"Maximum limit is {LISTING_LIMIT}")
        delimiter = params.get("delimiter", "")
        return cls(
            marker=params.get("marker", ""),
            end_marker=params.get("end_marker", ""),
            prefix=params.get("prefix", ""),
            delimiter=delimiter,
            limit=limit,
            reverse=params.get("reverse", "").lower() in _TRUE,
        )

    def params(self) -> list[tuple[str, str]]:
        """The same page asked of a cluster, in JSON."""
        asked = [("format", "json"), ("limit", str(self.limit))]
        for key in ("marker", "end_marker", "prefix", "delimiter"):
            if getattr(self, key):
                asked.append((key, getattr(self, key)))
        if self.reverse:
            asked.append(("reverse", "true"))
        return asked


def key(entry: Entry) -> bytes:
    return str(entry.get("name", entry.get("subdir", ""))).encode("utf-8")


def select(names: Iterable[str], query: ListingQuery) -> list[Entry]:
    """The page of `names` (a cluster's or skyfed's own) that `query` asks for, as an
    account server would give it; entries carry no counts."""
    ordered = sorted(names, key=lambda n: n.encode("utf-8"), reverse=query.reverse)
    marker, end = query.marker.encode("utf-8"), query.end_marker.encode("utf-8")
    page: list[Entry] = []
    skip_to: bytes | None = None
    for name in ordered:
        raw = name.encode("utf-8")
        if marker and (raw >= marker if query.reverse else raw <= marker):
            continue
        if end and (raw <= end if query.reverse else raw >= end):
            break
        if not name.startswith(query.prefix):
            continue
        if skip_to is not None and raw.startswith(skip_to):
            continue
        skip_to = None
        if query.delimiter:
            at = name.find(query.delimiter, len(query.prefix))
            if at >= 0:
                subdir = name[: at + len(query.delimiter)]
                skip_to = subdir.encode("utf-8")
                if subdir != query.marker:
                    page.append({"subdir": subdir})
                if len(page) >= query.limit:
                    break
                continue
        page.append({"name": name})
        if len(page) >= query.limit:
            break
    return page


def merge(listings: Sequence[Sequence[Entry]], query: ListingQuery) -> list[Entry]:
    """One page from several clusters' pages of the same query, each already in
    order: a subdir several clusters give is given once."""
    merged: list[Entry] = []
    last: bytes | None = None
    streams = [iter(listing) for listing in listings]
    for entry in heapq.merge(*streams, key=key, reverse=query.reverse):
        k = key(entry)
        if k == last:
            continue
        last = k
        merged.append(entry)
        if len(merged) >= query.limit:
            break
    return merged


def choose_format(format_param: str | None, accept: str | None) -> str:
    """`format=` first, else the Accept header's best match; plain by default."""
    if format_param:
        return format_param.lower() if format_param.lower() in CONTENT_TYPES else "plain"
    offer = _best_offer(accept or "*/*")
    if offer is None:
        raise NotAcceptable("none of text/plain, application/json, application/xml fits Accept")
    return {"text/plain": "plain", "application/json": "json"}.get(offer, "xml")


def _best_offer(accept: str) -> str | None:
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        if not part.strip():
            continue
        media, *options = (p.strip() for p in part.split(";"))
        q = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    raise BadRequest("Invalid Accept header") from None
        if "/" not in media:
            raise BadRequest("Invalid Accept header")
        ranges.append((media.lower(), q))
    best: tuple[float, str] | None = None
    for offer in _OFFERS:
        kind = offer.split("/")[0]
        # The most specific range that matches the offer sets its quality.
        quality = None
        for wanted in (offer, f"{kind}/*", "*/*"):
            matched = [q for media, q in ranges if media == wanted]
            if matched:
                quality = matched[0]
                break
        if quality and quality > 0 and (best is None or quality > best[0]):
            best = (quality, offer)
    return best[1] if best else None


def render(entries: list[Entry], fmt: str, account: str) -> bytes:
    if fmt == "json":
        return orjson.dumps(entries)
    if fmt == "xml":
        doc = Element("account", name=account)
        doc.text = "\n"
        for entry in entries:
            if "subdir" in entry:
                sub = SubElement(doc, "subdir", name=entry["subdir"])
            else:
                sub = SubElement(doc, "container")
                for field in ("name", "count", "bytes", "last_modified", "storage_policy"):
                    if field in entry:
                        SubElement(sub, field).text = str(entry[field])
            sub.tail = "\n"
        return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(
            doc, encoding="unicode"
        ).encode("utf-8")
    return b"".join(str(e.get("name", e.get("subdir"))).encode("utf-8") + b"\n" for e in entries)
