"""Requests on a container while it moves (objects/moves): its listing, counts and
metadata from both places.

- A listing merges both places' pages: an object in both (copied, or written
  again) is listed once, as it is where the container goes.
- Its counts are both places' less what the move has copied so far (in both).
- A POST or PUT changes its metadata in both places; a DELETE waits for the move.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

import httpx
import orjson
from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import Conflict
from skyfed.objects.models import ACTIVE_MOVES, Container, ContainerMove
from skyfed.objects.swift_forward import HOP, Upstream, ask, forward, merged, pass_on, relay
from skyfed.objects.swift_listing import CONTENT_TYPES, Entry, ListingQuery, choose_format
from skyfed.objects.swift_slo_marks import relist_entries

_COUNTS = ("x-container-object-count", "x-container-bytes-used")
_SHOWN_NOT = HOP | {"date", "content-type"} | set(_COUNTS)


async def serve(
    request: Request,
    session: AsyncSession,
    upstream: Upstream,
    known: Container,
    account: str,
    drop: frozenset[str],
) -> Response:
    source = upstream.source
    assert source is not None
    method, name = request.method, known.name
    if method == "DELETE":
        raise Conflict(f"container '{name}' is moving; delete it once it has moved")
    if method in ("POST", "PUT"):
        body = await request.body()
        first = await pass_on(request, source, account, (name,), drop=drop, body=body)
        if first.status_code >= 300:  # (changed nowhere)
            return await relay(request, first, drop)
        await first.aclose()
        return await forward(request, upstream, account, (name,), drop=drop, body=body)
    both = await _overlap(session, known)
    await session.commit()  # hold no connection while the places answer
    going = replace(upstream, source=None)
    if method == "HEAD":
        there, here = await asyncio.gather(
            ask(going, "HEAD", account, [], (name,)), ask(source, "HEAD", account, [], (name,))
        )
        headers = _headers(there, here, both)
        return Response(status_code=204, headers=headers)
    query = ListingQuery.parse(dict(request.query_params))
    fmt = choose_format(request.query_params.get("format"), request.headers.get("accept"))
    there, here = await asyncio.gather(
        ask(going, "GET", account, query.params(), (name,)),
        ask(source, "GET", account, query.params(), (name,)),
    )
    _, _, entries = merged(there, here, query.params())  # (where it goes: its entry kept)
    relist_entries(entries)
    headers = _headers(there, here, both)
    if not entries and fmt == "plain":
        return Response(status_code=204, headers=headers)
    kind = f"{CONTENT_TYPES[fmt]}; charset=utf-8"
    return Response(_render(entries, fmt, name), status_code=200, headers=headers, media_type=kind)


async def _overlap(session: AsyncSession, known: Container) -> int:
    """How many objects the move found or made in both places so far."""
    move = await session.scalar(
        select(ContainerMove).where(
            ContainerMove.project_id == known.project_id,
            ContainerMove.container == known.name,
            ContainerMove.state.in_(ACTIVE_MOVES),
        )
    )
    return 0 if move is None else move.objects_copied + move.objects_skipped


def _headers(
    there: tuple[int, httpx.Headers, Any], here: tuple[int, httpx.Headers, Any], both: int
) -> dict[str, str]:
    """Where it goes answers for the container (its metadata is made there first);
    the counts are both places' less what is in both."""
    main = there if there[0] < 300 else here
    out = {k: v for k, v in main[1].items() if k.lower() not in _SHOWN_NOT}
    counts = [_numbers(a[1]) if a[0] < 300 else (0, 0) for a in (there, here)]
    objects = max(counts[0][0], counts[1][0], counts[0][0] + counts[1][0] - both)
    share = objects / max(1, counts[0][0] + counts[1][0])
    used = int((counts[0][1] + counts[1][1]) * share)
    out |= {"X-Container-Object-Count": str(objects), "X-Container-Bytes-Used": str(used)}
    return out


def _numbers(headers: Mapping[str, str]) -> tuple[int, int]:
    return tuple(int(headers.get(k, 0) or 0) for k in _COUNTS)  # type: ignore[return-value]


def _render(entries: list[Entry], fmt: str, container: str) -> bytes:
    """A container's listing in Swift's three formats."""
    if fmt == "json":
        return orjson.dumps(entries)
    if fmt == "xml":
        doc = Element("container", name=container)
        for entry in entries:
            if "subdir" in entry:
                sub = SubElement(doc, "subdir", name=entry["subdir"])
                SubElement(sub, "name").text = entry["subdir"]
                continue
            sub = SubElement(doc, "object")
            for field, value in entry.items():
                SubElement(sub, field).text = str(value)
        return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(
            doc, encoding="unicode"
        ).encode("utf-8")
    return b"".join(str(e.get("name", e.get("subdir"))).encode("utf-8") + b"\n" for e in entries)
