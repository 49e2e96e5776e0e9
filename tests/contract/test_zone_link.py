"""One contract for every ZoneLink: what a parent zone relies on, whatever carries the call.

Each test runs against every transport the link can hold (`http` over a real
loopback socket through skyfed's HTTP/1.1 pool, `httpx` the same through httpx's
pool, `local` in process, `amqp` on the local RabbitMQ) talking to the same small child
app, which speaks the zone API's conventions: bearer tokens from `POST
/v1/auth/tokens` (over AMQP, the account that signed the call, which the bus
server hands to the app), forwarded identity headers, the request id header and
the one error shape.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from skyfed.federation.process import free_port
from skyfed.identity.principal import Principal
from skyfed.logs import request_id
from skyfed.transport.amqp import amqp_link
from skyfed.transport.amqp_server import ZoneQueueServer
from skyfed.transport.base import ZoneLink, ZoneRequest
from skyfed.transport.http import HttpLink, HttpTransportChoice, api_transport
from skyfed.transport.local import local_link
from skyfed.transport.signing import BUS_CALLER, StaticAccounts
from skyfed.wire import (
    FORWARDED_PROJECT,
    FORWARDED_ROLES,
    FORWARDED_USER,
    FORWARDED_USER_ID,
    REQUEST_ID,
    SkyfedError,
    ZoneUnreachable,
)
from tests.conftest import BROKER_GROUP, ServedApp, broker_url

PASSWORD = "child-service-password"


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class Child:
    """A child zone's API, small: echo, errors, slowness and failures on demand."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}  # token -> account
        self.logins = 0
        self.failures_left: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    async def login(self, request: Request) -> Response:
        body = await request.json()
        if body.get("password") != PASSWORD:
            return error(401, "unauthorized", "bad credentials")
        self.logins += 1
        token = uuid.uuid4().hex
        self.tokens[token] = str(body.get("username"))
        return JSONResponse({"token": token, "expires_at": "2099-01-01T00:00:00Z"}, 201)

    def _caller(self, request: Request) -> str | None:
        """The account calling: the one whose key signed a call from the bus, or the
        bearer token's."""
        signed = request.scope.get(BUS_CALLER)
        if signed is not None:
            return str(signed.username)
        return self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))

    async def echo(self, request: Request) -> Response:
        caller = self._caller(request)
        if caller is None:
            return error(401, "unauthorized", "log in")
        body = await request.body()
        return JSONResponse(
            {
                "caller": caller,
                "method": request.method,
                "query": dict(request.query_params),
                "json": await request.json() if body else None,
                "user": request.headers.get(FORWARDED_USER),
                "user_id": request.headers.get(FORWARDED_USER_ID),
                "project": request.headers.get(FORWARDED_PROJECT),
                "roles": request.headers.get(FORWARDED_ROLES),
                "request_id": request.headers.get(REQUEST_ID),
            }
        )

    async def status(self, request: Request) -> Response:
        code = int(request.path_params["code"])
        if code == 204:
            return Response(status_code=204)
        return error(code, f"code_{code}", f"the child answered {code}")

    async def slow(self, request: Request) -> Response:
        await asyncio.sleep(float(request.query_params["seconds"]))
        return JSONResponse({"slept": True})

    async def flaky(self, request: Request) -> Response:
        """Answers 503 `fail` times per key, then 200; counts every call."""
        key = request.query_params["key"]
        self.calls[key] = self.calls.get(key, 0) + 1
        left = self.failures_left.setdefault(key, int(request.query_params["fail"]))
        if left > 0:
            self.failures_left[key] = left - 1
            return error(503, "unavailable", "database is down")
        return JSONResponse({"calls": self.calls[key]})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/auth/tokens", self.login, methods=["POST"]),
                Route("/v1/echo", self.echo, methods=["GET", "POST", "PUT", "DELETE"]),
                Route("/v1/status/{code}", self.status, methods=["GET", "POST"]),
                Route("/v1/slow", self.slow, methods=["GET"]),
                Route("/v1/flaky", self.flaky, methods=["GET", "POST"]),
            ]
        )


# Its broker tests run with the others on the broker (tests/conftest.py).
ON_THE_BROKER = pytest.mark.xdist_group(BROKER_GROUP)


@pytest.fixture(params=["http", "httpx", "local", pytest.param("amqp", marks=ON_THE_BROKER)])
async def link(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ZoneLink, Child]]:
    child = Child()
    app = child.app()
    if request.param == "amqp":
        broker = await broker_url()
        queue = f"skyfed.test.{uuid.uuid4().hex}"
        accounts = StaticAccounts({"svc": PASSWORD})
        server = ZoneQueueServer(app, broker, queue, zone="child", accounts=accounts)
        await server.start()
        made = amqp_link(
            broker, queue, username="svc", password=PASSWORD, origin="parent", timeout=5
        )
        yield made, child
        await made.aclose()
        await server.delete_queue()
        await server.stop()
        return
    if request.param == "local":
        made: ZoneLink = local_link(app, username="svc", password=PASSWORD, timeout=5)
        yield made, child
        await made.aclose()
        return
    async with ServedApp(app) as served:
        # The pools a zone may choose (link_http_transport), as it builds them for a child.
        transport = api_transport("h1" if request.param == "http" else "httpx", served.url)
        made = HttpLink(served.url, transport, username="svc", password=PASSWORD, timeout=5)
        yield made, child
        await made.aclose()


ALICE = Principal("u-1", "alice", "p-1", frozenset({"member"}))


async def test_success_with_params_body_and_identity(link: tuple[ZoneLink, Child]) -> None:
    zone, child = link
    token = request_id.set("req-42")
    try:
        answer = await zone.call(
            ZoneRequest("POST", "/v1/echo", json={"a": [1, 2]}, params={"q": "x"}, principal=ALICE)
        )
    finally:
        request_id.reset(token)
    assert answer == {
        "caller": "svc",  # the link's account: logged in, or the signer of the call
        "method": "POST",
        "query": {"q": "x"},
        "json": {"a": [1, 2]},
        "user": "alice",
        "user_id": "u-1",
        "project": "p-1",
        "roles": "member",
        "request_id": "req-42",
    }
    assert child.logins == logins_expected(zone)
    # The parent's own calls carry no end user.
    own = await zone.call(ZoneRequest("GET", "/v1/echo"))
    assert own["user"] is None and own["json"] is None and own["caller"] == "svc"
    assert child.logins == logins_expected(zone)  # the token is kept


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422, 500, 503])
async def test_error_answers_keep_their_status_and_code(
    link: tuple[ZoneLink, Child], status: int
) -> None:
    zone, _ = link
    with pytest.raises(SkyfedError) as exc:
        await zone.call(ZoneRequest("POST", f"/v1/status/{status}"))
    assert not isinstance(exc.value, ZoneUnreachable)
    assert (exc.value.status, exc.value.code) == (status, f"code_{status}")
    assert exc.value.message == f"the child answered {status}"


async def test_no_body_is_none(link: tuple[ZoneLink, Child]) -> None:
    zone, _ = link
    assert await zone.call(ZoneRequest("GET", "/v1/status/204")) is None


async def test_a_late_answer_is_a_timeout(link: tuple[ZoneLink, Child]) -> None:
    zone, _ = link
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(ZoneUnreachable) as exc:
        await zone.call(ZoneRequest("GET", "/v1/slow", params={"seconds": 3}, timeout=0.3))
    assert exc.value.timed_out
    assert loop.time() - began < 2.0  # not retried: the caller's deadline is spent


def logins_expected(zone: ZoneLink, tokens: int = 1) -> int:
    """Links that carry a token log in once per token; `amqp` never logs in: each call
    is signed with the account's link key, so nothing in a message opens the child."""
    return 0 if zone.kind == "amqp" else tokens


async def test_a_new_login_when_the_token_is_refused(link: tuple[ZoneLink, Child]) -> None:
    zone, child = link
    await zone.call(ZoneRequest("GET", "/v1/echo"))
    child.tokens.clear()  # the child restarted, say
    assert (await zone.call(ZoneRequest("GET", "/v1/echo")))["method"] == "GET"
    assert child.logins == logins_expected(zone, tokens=2)


async def test_idempotent_calls_are_retried_and_others_are_not(
    link: tuple[ZoneLink, Child],
) -> None:
    zone, child = link
    answer = await zone.call(ZoneRequest("GET", "/v1/flaky", params={"key": "get", "fail": 2}))
    assert answer == {"calls": 3}
    with pytest.raises(SkyfedError) as exc:
        await zone.call(ZoneRequest("POST", "/v1/flaky", params={"key": "post", "fail": 1}))
    assert exc.value.status == 503 and child.calls["post"] == 1
    # A POST the child deduplicates may say it is safe to repeat.
    request = ZoneRequest("POST", "/v1/flaky", params={"key": "dedup", "fail": 1}, idempotent=True)
    assert await zone.call(request) == {"calls": 2}
    # Retries are bounded: a child that keeps failing fails the call.
    with pytest.raises(SkyfedError) as exc:
        await zone.call(ZoneRequest("GET", "/v1/flaky", params={"key": "down", "fail": 100}))
    assert exc.value.status == 503 and child.calls["down"] == 3


async def test_large_payloads_both_ways(link: tuple[ZoneLink, Child]) -> None:
    zone, _ = link
    servers = [
        {"id": str(uuid.uuid4()), "name": f"s{i}", "metadata": {"k": "v" * 200}}
        for i in range(10_000)
    ]
    answer = await zone.call(ZoneRequest("PUT", "/v1/echo", json={"servers": servers}))
    assert answer["json"]["servers"] == servers  # about 3 MB each way


async def test_many_concurrent_calls_each_get_their_own_answer(
    link: tuple[ZoneLink, Child],
) -> None:
    zone, child = link
    answers = await asyncio.gather(
        *(zone.call(ZoneRequest("POST", "/v1/echo", json={"n": n})) for n in range(300))
    )
    assert [a["json"]["n"] for a in answers] == list(range(300))
    assert child.logins == logins_expected(zone)  # one login shared by every call


@pytest.mark.parametrize("choice", ["h1", "httpx"])
async def test_http_to_a_closed_port_is_unreachable_at_once(choice: HttpTransportChoice) -> None:
    """Only `http` can find nobody there: `local` carries its child in process."""
    url = f"http://127.0.0.1:{free_port()}"
    gone = HttpLink(url, api_transport(choice, url), username="svc", password=PASSWORD)
    try:
        with pytest.raises(ZoneUnreachable) as exc:
            await gone.call(ZoneRequest("GET", "/v1/echo"))
        assert not exc.value.timed_out
    finally:
        await gone.aclose()


def test_which_requests_are_retryable() -> None:
    assert ZoneRequest("GET", "/x").retryable
    assert ZoneRequest("DELETE", "/x").retryable
    assert not ZoneRequest("POST", "/x").retryable
    assert ZoneRequest("POST", "/x", idempotent=True).retryable
    assert not ZoneRequest("GET", "/x", idempotent=False).retryable
