"""The outermost layer's bound on request bodies: 413 in the one error shape, the
app never sees the body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from skyfed import error_handlers
from skyfed.middleware import RequestContext

seen: list[int] = []


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    seen.append(len(body))
    return JSONResponse({"bytes": len(body)})


def client(limit: int) -> httpx.AsyncClient:
    """An app put together as a zone's is: the error handlers, this layer outermost."""
    app = Starlette(
        routes=[Route("/", echo, methods=["POST"])],
        middleware=[Middleware(RequestContext, max_body=limit)],
    )
    error_handlers.install(app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zone")


async def chunks(size: int, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


async def test_a_body_within_the_bound_reaches_the_app() -> None:
    seen.clear()
    async with client(1000) as c:
        answer = await c.post("/", content=b"x" * 1000)
        assert (answer.status_code, answer.json()) == (200, {"bytes": 1000})
        streamed = await c.post("/", content=chunks(100, 10))  # no Content-Length
        assert (streamed.status_code, streamed.json()) == (200, {"bytes": 1000})


async def test_a_body_over_the_bound_is_413_and_never_reaches_the_app() -> None:
    seen.clear()
    async with client(1000) as c:
        answer = await c.post("/", content=b"x" * 1001)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large"
        assert answer.headers["x-request-id"]
        streamed = await c.post("/", content=chunks(100, 50))  # grows past it while read
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "payload_too_large"
    assert seen == []


async def test_a_malformed_length_is_400() -> None:
    async with client(1000) as c:
        answer = await c.post("/", content=b"{}", headers={"content-length": "lots"})
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "bad_request"
