"""Creates passed down in batches: a child refusing a whole batch refuses only the bad server."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from skyfed.compute.forwarding import ChildCreates
from skyfed.identity.principal import Principal
from skyfed.transport.http import HttpLink
from skyfed.transport.local import local_link


class Child:
    """Takes delegated batches, but 422s a whole batch holding a server named 'bad'."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def login(self, request: Request) -> JSONResponse:
        return JSONResponse({"token": "t", "expires_at": "2099-01-01T00:00:00Z"}, 201)

    async def delegated(self, request: Request) -> JSONResponse:
        names = [s["name"] for s in (await request.json())["servers"]]
        self.batches.append(names)
        if "bad" in names:
            error = {"code": "validation_error", "message": "servers.1.name: bad name"}
            return JSONResponse({"error": error}, status_code=422)
        placed = [{"server": {"id": n, "placement": "placed"}} for n in names]
        return JSONResponse({"results": placed})


class Links:
    """What ChildCreates needs of ChildLinks: the child's row and its link."""

    def __init__(self, link: HttpLink) -> None:
        self.link = link

    async def row(self, child_id: str, db: Any) -> Any:
        return type("Row", (), {"id": child_id, "name": child_id})()

    async def link_for(self, child: Any) -> HttpLink:
        return self.link


async def test_one_bad_server_in_a_batch_is_refused_alone() -> None:
    child = Child()
    app = Starlette(
        routes=[
            Route("/v1/auth/tokens", child.login, methods=["POST"]),
            Route("/v1/servers/delegated", child.delegated, methods=["POST"]),
        ]
    )
    link = local_link(app, username="svc", password="pw")
    creates = ChildCreates(Links(link), None, wait=1.0, linger=0.01)  # type: ignore[arg-type]
    row = await Links(link).row("dc1", None)
    who = Principal("u", "alice", "p", frozenset({"member"}))
    outcomes = await asyncio.gather(
        *(creates.create(row, who, {"name": name}) for name in ("a", "bad", "c"))
    )
    assert child.batches == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert outcomes[0]["server"]["placement"] == "placed"
    assert outcomes[1]["error"]["status"] == 422
    assert outcomes[2]["server"]["placement"] == "placed"
    await link.aclose()
