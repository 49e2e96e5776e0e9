"""How a parent reaches its children: one `ZoneLink` per child, built from its `Reach`.

Every call to a child goes through its link (`transport/`), logged in with the
credentials the parent was given for that child, decrypted from the vault only
when a link is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skyfed.identity.vault import Vault
from skyfed.observability.tracing import Tracing
from skyfed.transport.amqp import amqp_link, without_password
from skyfed.transport.base import ZoneLink
from skyfed.transport.http import HttpLink, HttpTransportChoice, api_transport
from skyfed.transport.names import queue_for
from skyfed.transport.observed import LinkMetrics, ObservedLink
from skyfed.zones.models import ChildZone
from skyfed.zones.reach_policy import MAX_CHILD_ANSWER, forbidden_address


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
        self,
        timeout: float,
        origin: str = "",
        max_answer_bytes: int = MAX_CHILD_ANSWER,
        http_transport: HttpTransportChoice = "h1",
        retries: int = 2,
    ) -> ZoneLink:
        if self.transport == "amqp" and self.bus_url:
            return amqp_link(
                self.bus_url,
                self.queue,
                username=self.username,
                password=self.password,
                origin=origin,
                timeout=timeout,
                retries=retries,
            )
        # A child's answers are bounded, and its address is checked at every connect.
        transport = api_transport(
            http_transport,
            self.api_url,
            max_answer_bytes=max_answer_bytes,
            address_check=forbidden_address,
        )
        return HttpLink(
            self.api_url,
            transport,
            username=self.username,
            password=self.password,
            timeout=timeout,
            retries=retries,
        )


class ChildLinks:
    def __init__(
        self,
        vault: Vault,
        timeout: float,
        origin: str = "",
        max_answer_bytes: int = MAX_CHILD_ANSWER,
        http_transport: HttpTransportChoice = "h1",
        *,
        metrics: LinkMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """With `metrics` and `tracing`, each child's calls are counted and traced."""
        self.vault = vault
        self.metrics = metrics
        self.tracing = tracing
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self.http_transport = http_transport
        self.origin = origin  # this zone's name, the first step of a call's route
        self._links: dict[str, tuple[tuple[Any, ...], ZoneLink]] = {}
        # The child rows as last read (by the poller, or an edit here): spares a query
        # per call to a child. An edit in another process shows here after a poll.
        self.rows: dict[str, ChildZone] = {}
        # Called with a removed child's name (its figures go with it).
        self.on_drop: list[Callable[[str], None]] = []

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
        link = self.build(self.reach(child))
        if self.metrics is not None and self.tracing is not None:
            link = ObservedLink(link, child.name, self.metrics, self.tracing)
        self._links[child.id] = (fingerprint, link)
        return link

    def build(self, reach: Reach, timeout: float | None = None, retries: int = 2) -> ZoneLink:
        """A new link to `reach`, made as this zone makes its links; the caller closes it."""
        return reach.link(
            self.timeout if timeout is None else timeout,
            self.origin,
            self.max_answer_bytes,
            self.http_transport,
            retries,
        )

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
        row = self.rows.pop(child_id, None)
        if row is not None:
            for forget in self.on_drop:
                forget(row.name)
        known = self._links.pop(child_id, None)
        if known is not None:
            link = known[1]
            if isinstance(link, ObservedLink):
                link.metrics.forget(link.child, link.kind)
            await link.aclose()

    async def close(self) -> None:
        for _, link in self._links.values():
            await link.aclose()
        self._links.clear()
