"""The `local` link: a child zone served by this process, through its ASGI app.

The same requests, headers, logins and error answers as `http`, with no
socket in between: for tests, and for running a small tree in one process.
Without a socket nothing times out on its own, so the transport keeps the
request's deadline itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from skyfed.transport.http import HttpLink

LOCAL_URL = "http://local.zone"


class LocalTransport(httpx.AsyncBaseTransport):
    """httpx's ASGI transport, with a read timeout: an answer late past it is a ReadTimeout."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        deadline = timeouts.get("read")
        try:
            async with asyncio.timeout(deadline):
                return await self._asgi.handle_async_request(request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within {deadline:g}s", request=request) from exc

    async def aclose(self) -> None:
        await self._asgi.aclose()


def local_link(
    app: Any,
    *,
    username: str | None,
    password: str | None,
    timeout: float = 10.0,
    retries: int = 2,
) -> HttpLink:
    return HttpLink(
        LOCAL_URL,
        LocalTransport(app),
        username=username,
        password=password,
        kind="local",
        timeout=timeout,
        retries=retries,
    )
