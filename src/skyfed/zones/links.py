"""How a parent reaches its children: one `ZoneLink` per child, and the probe run at add.

Every call to a child goes through its link (`transport/`), logged in with the
credentials the parent was given for that child, decrypted from the vault only
when a link is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyfed.client import SkyfedError, ZoneUnreachable, tls_context
from skyfed.errors import BadRequest
from skyfed.identity.principal import SERVICE
from skyfed.identity.vault import Vault
from skyfed.transport.amqp import AmqpLink, without_password
from skyfed.transport.base import ZoneLink
from skyfed.transport.h1_pool import H1Transport
from skyfed.transport.http import HttpLink
from skyfed.transport.names import queue_for
from skyfed.zones.models import ChildZone
from skyfed.zones.reach_policy import MAX_CHILD_ANSWER, forbidden_address
from skyfed.zones.report import ZoneReport
from skyfed.zones.summary import SummaryError


@dataclass(frozen=True, slots=True)
class Reach:
    """How a parent calls one child: which transport, where, as whom."""

    name: str
    transport: str
    api_url: str
    username: str
    password: str
    bus_url: str | None = None
    bus_queue: str | None = None

    @property
    def where(self) -> str:
        """For messages: the API URL, or the queue and the broker (without its password)."""
        if self.transport == "amqp" and self.bus_url:
            return f"queue {self.queue} on {without_password(self.bus_url)}"
        return self.api_url

    @property
    def queue(self) -> str:
        return self.bus_queue or queue_for(self.name)

    def link(
        self, timeout: float, origin: str = "", max_answer_bytes: int = MAX_CHILD_ANSWER
    ) -> HttpLink:
        if self.transport == "amqp" and self.bus_url:
            return AmqpLink(
                self.bus_url,
                self.queue,
                username=self.username,
                password=self.password,
                origin=origin,
                timeout=timeout,
            )
        # A child's answers are bounded, and its address is checked at every connect.
        transport = H1Transport(
            max_connections=20,
            ssl_context=tls_context(),
            max_answer_bytes=max_answer_bytes,
            address_check=forbidden_address,
        )
        return HttpLink(
            self.api_url,
            username=self.username,
            password=self.password,
            timeout=timeout,
            transport=transport,
        )


class ChildLinks:
    def __init__(
        self,
        vault: Vault,
        timeout: float,
        origin: str = "",
        max_answer_bytes: int = MAX_CHILD_ANSWER,
    ) -> None:
        self.vault = vault
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self.origin = origin  # this zone's name, the first step of a call's route
        self._links: dict[str, tuple[tuple[Any, ...], ZoneLink]] = {}
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
        fingerprint = (
            child.transport,
            child.api_url,
            child.username,
            child.password_secret,
            child.bus_url_secret,
            child.bus_queue,
        )
        known = self._links.get(child.id)
        if known is not None and known[0] == fingerprint:
            return known[1]
        if known is not None:
            await known[1].aclose()  # the transport, address or credentials changed
        link = self.reach(child).link(self.timeout, self.origin, self.max_answer_bytes)
        self._links[child.id] = (fingerprint, link)
        return link

    def reach(self, child: ChildZone, password: str | None = None) -> Reach:
        secret = child.bus_url_secret
        return Reach(
            name=child.name,
            transport=child.transport,
            api_url=child.api_url,
            username=child.username,
            password=password
            if password is not None
            else self.vault.decrypt(child.password_secret),
            bus_url=self.vault.decrypt(secret) if secret is not None else None,
            bus_queue=child.bus_queue,
        )

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
    reach: Reach, timeout: float, origin: str = "", max_answer_bytes: int = MAX_CHILD_ANSWER
) -> ZoneReport:
    """Authenticate to a would-be child over its link (a login over HTTP, a signed call
    over AMQP) and read its report; a 400 says what failed."""
    name, where, username = reach.name, reach.where, reach.username
    link = reach.link(timeout, origin, max_answer_bytes)
    try:
        client = link.client
        try:
            roles = await link.identify()
        except ZoneUnreachable as exc:
            raise BadRequest(
                f"child zone '{name}' is unreachable at {where}: {exc.reason}",
                code="child_unreachable",
            ) from exc
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
            return ZoneReport.from_dict(await client.zone())
        except ZoneUnreachable as exc:
            raise BadRequest(
                f"child zone '{name}' is unreachable at {where}: {exc.reason}",
                code="child_unreachable",
            ) from exc
        except (SkyfedError, SummaryError) as exc:
            raise BadRequest(
                f"{where} did not answer as a skyfed zone: {exc}", code="child_invalid"
            ) from exc
    finally:
        await link.aclose()
