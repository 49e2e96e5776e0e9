"""The `local` link: a child zone served by this process, through its ASGI app.

The same requests, headers, logins and error answers as `http`, with no
socket in between: for tests, and for running a small tree in one process.
Without a socket nothing times out on its own, so the link keeps the deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from skyfed.transport.base import ZoneRequest
from skyfed.transport.http import HttpLink
from skyfed.wire import ZoneUnreachable


class LocalLink(HttpLink):
    kind = "local"

    def __init__(
        self,
        app: Any,
        *,
        username: str | None,
        password: str | None,
        timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        super().__init__(
            "http://local.zone",
            username=username,
            password=password,
            timeout=timeout,
            retries=retries,
            transport=httpx.ASGITransport(app=app),
        )
        self.timeout = timeout

    async def call(self, request: ZoneRequest) -> Any:
        deadline = request.timeout if request.timeout is not None else self.timeout
        try:
            async with asyncio.timeout(deadline):
                return await super().call(request)
        except TimeoutError as exc:
            raise ZoneUnreachable(
                self.base_url, f"no answer within {deadline:g}s", timed_out=True
            ) from exc
