"""`HttpLink`: the child's public API, over whichever httpx transport carries it.

The link logs in with the credentials the parent was given for the child (again
when the token expires), passes the end user's identity and the request id as
headers, and retries an idempotent call a bounded number of times when the child
could not be reached or answered 502/503/504. A call that timed out is not
retried: its caller's deadline is already spent.

What carries the bytes is the transport it holds (httpx's interface under the
client): for `http`, skyfed's HTTP/1.1 pool (h1_pool.py) or httpx's own
(httpx_pool.py), as `link_http_transport` says; for `amqp`, the child's broker
(`amqp_link`); for `local`, the child's ASGI app in this process (`local_link`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from skyfed.client import SkyfedClient, tls_context
from skyfed.transport.addresses import AddressCheck
from skyfed.transport.base import ZoneLink, ZoneRequest
from skyfed.transport.h1_pool import H1Transport
from skyfed.transport.httpx_pool import HttpxTransport, environment_proxy
from skyfed.wire import SkyfedError, ZoneUnreachable, forwarded_headers

RETRY_STATUSES = frozenset({502, 503, 504})
# Which pool carries calls to a child's API: skyfed's own (fastest; HTTP/1.1) or
# httpx's (proxies, HTTP/2, httpx's TLS set-up).
HttpTransportChoice = Literal["h1", "httpx"]


class HttpLink(ZoneLink):
    def __init__(
        self,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        username: str | None,
        password: str | None,
        kind: str = "http",
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.1,
        max_connections: int | None = 20,
    ) -> None:
        """Without credentials the link never logs in (the transport authenticates each
        call: amqp signs them). `max_connections`: calls in flight at once, the others
        waiting in the link (None: no cap, for a transport with no pool to wait for)."""
        self.kind = kind
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.transport = transport or H1Transport(
            max_connections=max_connections or 20, ssl_context=tls_context()
        )
        # Calls beyond the pool's connections wait here, in a plain FIFO, rather than
        # in the transport's own queue.
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self.client = SkyfedClient(
            base_url,
            username=username,
            password=password,
            timeout=timeout,
            transport=self.transport,
        )

    @property
    def base_url(self) -> str:
        return self.client.base_url

    async def call(self, request: ZoneRequest) -> Any:
        headers = forwarded_headers(request.principal) if request.principal else None
        attempt = 0
        while True:
            try:
                async with self._slot(request) as timeout:
                    return await self.client.request(
                        request.method,
                        request.path,
                        json=request.json,
                        params=request.params,
                        headers=headers,
                        timeout=timeout,
                        idempotent=request.retryable,
                    )
            except ZoneUnreachable as exc:
                if exc.timed_out or not request.retryable or attempt >= self.retries:
                    raise
            except SkyfedError as exc:
                if exc.status not in RETRY_STATUSES or not request.retryable:
                    raise
                if attempt >= self.retries:
                    raise
            attempt += 1
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1) * random.uniform(0.8, 1.2))

    @contextlib.asynccontextmanager
    async def _slot(self, request: ZoneRequest) -> AsyncIterator[float | None]:
        """A connection's turn, and what is left of the call's timeout once it came."""
        if self._slots is None:
            yield request.timeout
            return
        wait = request.timeout if request.timeout is not None else self.timeout
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._slots.acquire(), wait)
        except TimeoutError as exc:
            raise ZoneUnreachable(
                self.base_url, f"no connection free within {wait:g}s", timed_out=True
            ) from exc
        try:
            yield max(0.001, wait - (time.monotonic() - started))
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        await self.client.aclose()  # and its transport


def api_transport(
    choice: HttpTransportChoice,
    base_url: str,
    *,
    max_connections: int = 20,
    max_answer_bytes: int | None = None,
    address_check: AddressCheck | None = None,
) -> httpx.AsyncBaseTransport:
    """The pool for calls to one child's API, bounded and address-checked either way."""
    if choice == "httpx":
        return HttpxTransport(
            max_connections=max_connections,
            max_answer_bytes=max_answer_bytes,
            address_check=address_check,
            proxy=environment_proxy(base_url),
        )
    return H1Transport(
        max_connections=max_connections,
        ssl_context=tls_context(),
        max_answer_bytes=max_answer_bytes,
        address_check=address_check,
    )
