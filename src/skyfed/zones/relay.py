"""Asking a child zone on a caller's behalf, and what its failures mean here.

Written once for every feature: a request that follows the location index to a
child relays the child's answer; a refusal (4xx) keeps its meaning at this zone;
a child that cannot answer (unreachable, or failing itself) makes this zone
unavailable for that request (503), or makes a task try again later.
"""

from __future__ import annotations

from typing import Any

from skyfed.client import SkyfedError, ZoneUnreachable
from skyfed.errors import AppError, BadRequest, Conflict, Forbidden, NotFound, Unavailable
from skyfed.transport.base import ZoneRequest
from skyfed.zones.links import ChildLinks
from skyfed.zones.models import ChildZone

_KEPT = {403: Forbidden, 404: NotFound, 409: Conflict}


def refused(exc: Exception) -> bool:
    """The child read the request and said no (not: unreachable, login, its own fault)."""
    return isinstance(exc, SkyfedError) and 400 <= exc.status < 500 and exc.status not in (401, 403)


def said(child: str, exc: SkyfedError) -> str:
    """What went wrong with asking `child`, for people."""
    if isinstance(exc, ZoneUnreachable):
        return f"zone {child} did not answer: {exc.reason}"
    return f"zone {child} answered {exc.status}: {exc.message}"


def fault(child: str, exc: SkyfedError) -> str | None:
    """Why `child` could not answer (unreachable, or its own 5xx): a reason to try again
    later. None when it answered with a refusal."""
    if isinstance(exc, ZoneUnreachable) or exc.status >= 500:
        return said(child, exc)
    return None


def relayed(child: str, exc: SkyfedError) -> AppError:
    """The child's failure as this zone's answer: a 4xx keeps its meaning and code."""
    if isinstance(exc, ZoneUnreachable):
        return Unavailable(f"zone {child} is unavailable: {exc.reason}", code="zone_unavailable")
    if 400 <= exc.status < 500:
        error = _KEPT.get(exc.status, BadRequest)
        return error(exc.message, code=exc.code, details=exc.details)
    return Unavailable(
        f"zone {child} answered {exc.status}: {exc.message}", code="zone_unavailable"
    )


async def ask(links: ChildLinks, child: ChildZone, request: ZoneRequest) -> Any:
    """The child's answer to `request`; its failure raised as this zone's (`relayed`)."""
    link = await links.link_for(child)
    try:
        return await link.call(request)
    except SkyfedError as exc:
        raise relayed(child.name, exc) from exc
