"""The `http` link: the child's public API over a keep-alive connection pool.

Logs in with the credentials the parent was given for the child (again when
the token expires), passes the end user's identity and the request id as
headers, and retries an idempotent call a bounded number of times when the
child could not be reached or answered 502/503/504. A call that timed out is
not retried: its caller's deadline is already spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from skyfed.client import SkyfedClient
from skyfed.transport.base import ZoneLink, ZoneRequest
from skyfed.wire import SkyfedError, ZoneUnreachable, forwarded_headers

RETRY_STATUSES = frozenset({502, 503, 504})


def roles_of(account: Any) -> list[str]:
    """The roles a zone's answer says an account has (none when it says nothing sane)."""
    roles = account.get("roles") if isinstance(account, dict) else None
    return [str(r) for r in roles] if isinstance(roles, list) else []


class HttpLink(ZoneLink):
    kind = "http"

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None,
        password: str | None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.1,
        max_connections: int | None = 20,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        # Calls beyond the pool's connections wait here, in a plain FIFO, rather than
        # in httpcore's pool queue. A link with no connection pool (amqp) has no cap.
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self.client = SkyfedClient(
            base_url,
            username=username,
            password=password,
            timeout=timeout,
            transport=transport,
            max_connections=max_connections or 20,
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

    async def identify(self) -> list[str]:
        """Log in with the link's credentials; the account's roles at the child."""
        client = self.client
        assert client.username is not None and client.password is not None
        login = await client.login(client.username, client.password)
        return roles_of(login.get("user"))

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
        await self.client.aclose()
