"""`DELETE ?multipart-manifest=delete` of a static large object whose segments are
elsewhere (swift_slo_far): its segments deleted where they are (a nested large
object's too, by its own place or by skyfed), then the manifest; answered as
Swift's bulk delete, with what could not be deleted and why.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.objects.parts import StorageParts
from skyfed.objects.swift_access import Access
from skyfed.objects.swift_forward import Upstream, ask, open_stream
from skyfed.objects.swift_slo_far import (
    MAX_DEPTH,
    bulk_body,
    manifest,
    places_of,
    split_path,
    status_line,
)
from skyfed.objects.swift_slo_marks import PROBE, is_far


async def delete(
    request: Request,
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
) -> Response:
    """`DELETE ?multipart-manifest=delete` of a far large object: its segments where
    they are (nested large objects' too), then the manifest; Swift's bulk answer."""
    tally = {"deleted": 0, "missing": 0}
    problems: list[tuple[str, str]] = []
    stored = await manifest(upstream, account, path)
    await _delete_segments(session, parts, access, account, stored, tally, problems, 0)
    await _delete_one(upstream, account, path, [], tally, problems)
    fields = {
        "Number Deleted": tally["deleted"],
        "Number Not Found": tally["missing"],
        "Response Body": "",
        "Response Status": "400 Bad Request" if problems else "200 OK",
    }
    return bulk_body(request, 200, problems, fields)


async def _delete_segments(
    session: AsyncSession,
    parts: StorageParts,
    access: Access,
    account: str,
    stored: list[dict[str, Any]],
    tally: dict[str, int],
    problems: list[tuple[str, str]],
    depth: int,
) -> None:
    names = {split_path(e["name"])[0] for e in stored if "name" in e}
    places = await places_of(session, parts, access, names, "DELETE")
    for entry in stored:
        if "name" not in entry:
            continue
        container, obj = split_path(entry["name"])
        place = places[container]
        if place.upstream is None:
            if place.problem.startswith("404"):
                tally["missing"] += 1
            else:
                problems.append((quote(entry["name"]), place.problem))
            continue
        params: list[tuple[str, str]] = []
        if entry.get("sub_slo"):
            status, headers, _ = await ask(place.upstream, "HEAD", account, PROBE, (container, obj))
            if status < 300 and is_far(headers) and depth < MAX_DEPTH:
                nested = await manifest(place.upstream, account, (container, obj))
                await _delete_segments(
                    session, parts, access, account, nested, tally, problems, depth + 1
                )
            elif status < 300:
                params = [("multipart-manifest", "delete")]
        await _delete_one(place.upstream, account, (container, obj), params, tally, problems)


async def _delete_one(
    upstream: Upstream,
    account: str,
    path: tuple[str, str],
    params: list[tuple[str, str]],
    tally: dict[str, int],
    problems: list[tuple[str, str]],
) -> None:
    """One object deleted; a backend's large object with its segments (`params`),
    whose bulk answer is added to the tally."""
    headers = {"accept": "application/json"} if params else {}
    answer = await open_stream(upstream, "DELETE", account, path, headers, params)
    try:
        body = await answer.aread()
    finally:
        await answer.aclose()
    name = quote("/" + "/".join(path))
    if params and answer.status_code == 200:
        try:
            report = json.loads(body)
            tally["deleted"] += int(report.get("Number Deleted", 0))
            tally["missing"] += int(report.get("Number Not Found", 0))
            problems.extend((str(n), str(s)) for n, s in report.get("Errors", []))
        except (ValueError, TypeError, AttributeError):
            problems.append((name, "502 Bad Gateway"))
    elif answer.status_code < 300:
        tally["deleted"] += 1
    elif answer.status_code == 404:
        tally["missing"] += 1
    else:
        problems.append((name, status_line(answer.status_code)))
