"""How a parent reaches its children: one `ZoneLink` per child, and the probe run at add.

Every call to a child goes through its link (`transport/`), logged in with the
credentials the parent was given for that child, decrypted from the vault only
when a link is built.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from skyfed.client import SkyfedClient, SkyfedError, ZoneUnreachable
from skyfed.errors import BadRequest
from skyfed.identity.principal import SERVICE
from skyfed.identity.vault import Vault
from skyfed.schema_types import NAME_PATTERN
from skyfed.transport.base import ZoneLink
from skyfed.transport.http import HttpLink
from skyfed.zones.capabilities import CapabilityError, check_capabilities
from skyfed.zones.models import ChildZone
from skyfed.zones.summary import Summary, SummaryError


@dataclass(frozen=True, slots=True)
class ZoneReport:
    """What a child says of itself when polled."""

    id: str
    name: str
    capabilities: dict[str, Any]
    summary: Summary


def parse_report(body: Any) -> ZoneReport:
    """Read a child's `GET /v1/zone` answer; raise SummaryError unless it is well formed."""
    if not isinstance(body, dict):
        raise SummaryError("zone report is not an object")
    zone_id, name, caps = body.get("id"), body.get("name"), body.get("capabilities", {})
    try:
        zone_id = str(uuid.UUID(zone_id))
    except (TypeError, ValueError, AttributeError) as exc:
        raise SummaryError("zone report has no valid id") from exc
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise SummaryError("zone report has no valid name")
    if not isinstance(caps, dict):
        raise SummaryError("zone report capabilities are not an object")
    try:
        caps = check_capabilities(caps)
    except CapabilityError as exc:
        raise SummaryError(f"zone report capabilities: {exc}") from exc
    return ZoneReport(zone_id, name, caps, Summary.from_dict(body.get("summary")))


class ChildLinks:
    def __init__(self, vault: Vault, timeout: float) -> None:
        self.vault = vault
        self.timeout = timeout
        self._links: dict[str, tuple[tuple[str, str, bytes], ZoneLink]] = {}
        # The child rows as last read (by the poller, or an edit here): spares a query
        # per call to a child. An edit in another process shows here after a poll.
        self.rows: dict[str, ChildZone] = {}

    def remember(self, children: list[ChildZone]) -> None:
        self.rows = {child.id: child for child in children}

    async def row(self, child_id: str, db: Any) -> ChildZone | None:
        child = self.rows.get(child_id)
        if child is None:
            async with db.session() as session:
                child = await session.get(ChildZone, child_id)
            if child is not None:
                self.rows[child_id] = child
        return child

    async def link_for(self, child: ChildZone) -> ZoneLink:
        fingerprint = (child.api_url, child.username, child.password_secret)
        known = self._links.get(child.id)
        if known is not None and known[0] == fingerprint:
            return known[1]
        if known is not None:
            await known[1].aclose()  # the URL or the credentials changed
        link = HttpLink(
            child.api_url,
            username=child.username,
            password=self.vault.decrypt(child.password_secret),
            timeout=self.timeout,
        )
        self._links[child.id] = (fingerprint, link)
        return link

    async def drop(self, child_id: str) -> None:
        self.rows.pop(child_id, None)
        known = self._links.pop(child_id, None)
        if known is not None:
            await known[1].aclose()

    async def close(self) -> None:
        for _, link in self._links.values():
            await link.aclose()
        self._links.clear()


async def probe_child(
    name: str, api_url: str, username: str, password: str, timeout: float
) -> ZoneReport:
    """Log in to a would-be child and read its report; a 400 says what went wrong."""
    async with SkyfedClient(api_url, timeout=timeout) as client:
        try:
            login = await client.login(username, password)
        except ZoneUnreachable as exc:
            raise BadRequest(
                f"child zone '{name}' is unreachable at {api_url}: {exc.reason}",
                code="child_unreachable",
            ) from exc
        except SkyfedError as exc:
            if exc.code == "bad_response":
                raise BadRequest(
                    f"{api_url} did not answer the login as a skyfed zone", code="child_invalid"
                ) from exc
            if exc.status in (400, 401, 422):
                raise BadRequest(
                    f"child zone '{name}' at {api_url} refused the credentials "
                    f"of user '{username}'",
                    code="child_auth_failed",
                ) from exc
            raise BadRequest(
                f"child zone '{name}' at {api_url} answered the login with {exc.status} {exc.code}",
                code="child_unreachable",
            ) from exc
        roles = (login.get("user") or {}).get("roles") or []
        if SERVICE not in roles:
            raise BadRequest(
                f"user '{username}' at child zone '{name}' lacks the '{SERVICE}' role "
                f"(has {sorted(roles)}); a parent needs a service account",
                code="child_not_service",
            )
        try:
            return parse_report(await client.zone())
        except ZoneUnreachable as exc:
            raise BadRequest(
                f"child zone '{name}' is unreachable at {api_url}: {exc.reason}",
                code="child_unreachable",
            ) from exc
        except (SkyfedError, SummaryError) as exc:
            raise BadRequest(
                f"{api_url} did not answer as a skyfed zone: {exc}", code="child_invalid"
            ) from exc
