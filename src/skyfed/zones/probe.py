"""The probe run before a child is added (or its reach changed): through the link the
parent would use, who the parent's account is there, and what the child says of itself.

Only `ZoneLink.call` is used, so the probe is the same for every transport: the link
authenticates as it always does (a login over HTTP, a signed call over AMQP), and a
400 says what failed, in words an admin can act on.
"""

from __future__ import annotations

from typing import Any

from skyfed.errors import BadRequest
from skyfed.identity.principal import SERVICE
from skyfed.transport.base import ZoneLink, ZoneRequest
from skyfed.wire import SkyfedError, ZoneUnreachable
from skyfed.zones.links import Reach
from skyfed.zones.report import ZoneReport
from skyfed.zones.summary import SummaryError


async def probe_child(link: ZoneLink, reach: Reach) -> ZoneReport:
    """Ask the would-be child, over `link` (built for `reach`), who the parent's account
    is there, then for its report."""
    name, where, username = reach.name, reach.where, reach.username
    try:
        roles = roles_of(await link.call(ZoneRequest("GET", "/v1/auth/whoami")))
    except ZoneUnreachable as exc:
        raise _unreachable(reach, exc) from exc
    except SkyfedError as exc:
        if exc.code == "bad_response":
            raise BadRequest(
                f"{where} did not answer the login as a skyfed zone", code="child_invalid"
            ) from exc
        if exc.status in (400, 401, 422):
            raise BadRequest(
                f"child zone '{name}' at {where} refused the credentials of user '{username}'",
                code="child_auth_failed",
            ) from exc
        if exc.status in (404, 405):  # every zone has the route: this is something else
            raise BadRequest(
                f"{where} did not answer as a skyfed zone (no /v1/auth/whoami: "
                f"{exc.status} {exc.code})",
                code="child_invalid",
            ) from exc
        raise BadRequest(
            f"child zone '{name}' at {where} answered the login with {exc.status} {exc.code}",
            code="child_unreachable",
        ) from exc
    if SERVICE not in roles:
        raise BadRequest(
            f"user '{username}' at child zone '{name}' lacks the '{SERVICE}' role "
            f"(has {sorted(roles)}); a parent needs a service account",
            code="child_not_service",
        )
    try:
        return ZoneReport.from_dict(await link.call(ZoneRequest("GET", "/v1/zone")))
    except ZoneUnreachable as exc:
        raise _unreachable(reach, exc) from exc
    except (SkyfedError, SummaryError) as exc:
        raise BadRequest(
            f"{where} did not answer as a skyfed zone: {exc}", code="child_invalid"
        ) from exc


def roles_of(account: Any) -> list[str]:
    """The roles a zone's answer says an account has (none when it says nothing sane)."""
    roles = account.get("roles") if isinstance(account, dict) else None
    return [str(r) for r in roles] if isinstance(roles, list) else []


def _unreachable(reach: Reach, exc: ZoneUnreachable) -> BadRequest:
    return BadRequest(
        f"child zone '{reach.name}' is unreachable at {reach.where}: {exc.reason}",
        code="child_unreachable",
    )
