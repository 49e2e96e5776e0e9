"""ZoneLink: how a zone calls a child, whatever carries the call.

Modelled on httpx's transports: a strict cut between what a zone asks of a
child and how the bytes travel. A caller builds a `ZoneRequest` and gets the
child's JSON answer back; or a `SkyfedError` carrying the child's own status
and error (a 4xx from below keeps its meaning above); or `ZoneUnreachable`
when no answer came in time. The end user's identity (spoken for by the
parent's service account) and the request id travel with every request.

The one implementation, `HttpLink` (http.py), speaks the child's API over an
httpx transport it holds: skyfed's HTTP/1.1 pool or httpx's own (http), the
child's broker (amqp.py), or its ASGI app in this process (local.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from skyfed.identity.principal import Principal

# Methods whose repetition changes nothing more than the first call did.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class ZoneRequest:
    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    # The end user the call is made for; None for the parent's own calls (polls).
    principal: Principal | None = None
    timeout: float | None = None  # seconds for the whole call; None: the link's default
    # Safe to send again after a failure that may have reached the child. By default
    # the method says; a POST the child deduplicates (creates carry their id) may say so.
    idempotent: bool | None = None

    @property
    def retryable(self) -> bool:
        return self.method in IDEMPOTENT_METHODS if self.idempotent is None else self.idempotent


class ZoneLink(ABC):
    """One child zone, reached one way; `kind` names the way ("http", "amqp", "local")."""

    kind: str

    @abstractmethod
    async def call(self, request: ZoneRequest) -> Any:
        """The child's JSON answer (None when it has no body).

        Raises `SkyfedError` with the child's status for an error answer and
        `ZoneUnreachable` when the child could not be reached in time.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections; the link is not used again."""

    async def __aenter__(self) -> ZoneLink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
