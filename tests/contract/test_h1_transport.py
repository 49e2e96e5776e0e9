"""The lean HTTP/1.1 pool every skyfed client sends through, against a real socket server
whose misbehaviour each test picks by path."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from skyfed.client import SkyfedClient, ZoneUnreachable
from skyfed.transport.h1_pool import H1Transport


class Server:
    """A loopback HTTP/1.1 server that counts its connections and misbehaves on request."""

    def __init__(self) -> None:
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {
                    k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._answer(method, target, headers, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()

    async def _answer(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        path, _, query = target.partition("?")
        if path == "/hang":
            await asyncio.sleep(3600)
        if path == "/slow":
            await asyncio.sleep(float(query or "0.2"))
        if path == "/cut":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await writer.drain()
            return False
        if path == "/garbage":
            writer.write(b"this is not http\r\n\r\n")
            await writer.drain()
            return False
        if path == "/answer-then-close":  # keep-alive in words, closed right after
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            await asyncio.sleep(float(query or "0"))
            return False
        if path == "/interim":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b'HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\n{"a":1}')
            await writer.drain()
            return True
        if path == "/until-close":  # an answer with no length: its body ends with the socket
            writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"whole": true}')
            await writer.drain()
            return False
        if method == "HEAD":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            await writer.drain()
            return True
        if path == "/chunked":
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/json\r\n\r\n"
                b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
            )
            await writer.drain()
            return True
        answer = json.dumps(
            {"method": method, "target": target, "headers": headers, "length": len(body)}
        ).encode()
        if path == "/echo":
            answer = body
        close = path == "/close"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + (b"Connection: close\r\n" if close else b"")
            + b"Content-Length: %d\r\n\r\n" % len(answer)
            + answer
        )
        await writer.drain()
        return not close


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    served = Server()
    await served.start()
    yield served
    await served.stop()


def client(server: Server, transport: H1Transport, timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=timeout)


async def until(check: Any, what: str, timeout: float = 10.0) -> None:
    """Wait (bounded) for `check()` to hold: a state reached, not a sleep that hopes so."""
    from tests.waiting import until as waiting_until

    await waiting_until(check, timeout, what)


async def test_sequential_requests_share_one_connection(server: Server) -> None:
    async with client(server, H1Transport()) as http:
        for i in range(20):
            answer = await http.post("/", json={"i": i})
            assert answer.status_code == 200
            assert answer.json()["method"] == "POST"
    assert server.connections == 1


async def test_concurrent_requests_never_exceed_the_cap(server: Server) -> None:
    async with client(server, H1Transport(max_connections=3)) as http:
        answers = await asyncio.gather(*(http.get("/slow?0.05") for _ in range(30)))
    assert [a.status_code for a in answers] == [200] * 30
    assert server.most_open == 3
    assert server.connections == 3


async def test_bodies_round_trip_whole_in_both_directions(server: Server) -> None:
    big = {"blob": "x" * 3_000_000, "text": "zoné ☁"}
    async with client(server, H1Transport()) as http:
        answer = await http.post("/echo", json=big)
        assert answer.json() == big
        chunked = await http.get("/chunked")
        assert chunked.json() == {"a": 1}
        query = await http.get("/q", params={"name": "a b&c", "limit": 5})
        assert query.json()["target"] == "/q?name=a+b%26c&limit=5"
    assert server.connections == 1


async def test_answers_without_a_length_or_a_body_end_where_they_should(server: Server) -> None:
    async with client(server, H1Transport(), timeout=2.0) as http:
        assert (await http.get("/until-close")).json() == {"whole": True}
        head = await http.head("/")
        assert head.status_code == 200 and head.content == b""
        assert (await http.get("/")).status_code == 200


async def test_a_server_that_closes_after_answering_gets_a_new_connection(
    server: Server,
) -> None:
    async with client(server, H1Transport()) as http:
        for _ in range(3):
            assert (await http.get("/close")).status_code == 200
            assert (await http.get("/")).status_code == 200
    assert server.connections == 4


async def test_an_idle_connection_the_server_dropped_is_not_reused(server: Server) -> None:
    transport = H1Transport()
    async with client(server, transport) as http:
        assert (await http.get("/")).status_code == 200
        await server.stop()  # closes the listening socket; the open one drops below
        for connection in [c for pool in transport._pools.values() for c in pool.idle]:
            connection.transport.close()  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.ConnectError):
            await http.get("/")


async def test_silence_fails_at_the_read_timeout_and_frees_the_place(server: Server) -> None:
    async with client(server, H1Transport(max_connections=1), timeout=0.3) as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/hang")  # an hour of silence: only the read timeout ends it
        assert loop.time() - started > 0.25  # not sooner (no upper bound: a loaded machine)
        assert (await http.get("/")).status_code == 200  # the hung connection was let go
    assert server.connections == 2


async def test_a_full_pool_fails_at_the_pool_timeout(server: Server) -> None:
    transport = H1Transport(max_connections=1)
    async with client(server, transport) as http:
        slow = asyncio.create_task(http.get("/slow?2"))
        await until(lambda: server.open_now == 1, what="the slow request's connection")
        timeouts = httpx.Timeout(5.0, pool=0.2)
        with pytest.raises(httpx.PoolTimeout):
            await http.get("/", timeout=timeouts)
        assert (await slow).status_code == 200
        assert (await http.get("/")).status_code == 200
    assert server.connections == 1


async def test_broken_answers_are_protocol_errors(server: Server) -> None:
    async with client(server, H1Transport()) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/cut")
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/garbage")
        assert (await http.get("/")).status_code == 200


async def test_nobody_listening_is_a_connect_error() -> None:
    probe = Server()
    await probe.start()
    await probe.stop()  # a port that was just free
    async with httpx.AsyncClient(transport=H1Transport()) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{probe.url}/")


async def test_cancelled_callers_leave_no_place_taken(server: Server) -> None:
    """Callers cancelled while waiting, while handed a connection and mid-answer: the
    pool's one place is free again for the next request."""
    transport = H1Transport(max_connections=1)
    async with client(server, transport) as http:
        for delay in (0.0, 0.001, 0.01, 0.03, 0.06):
            calls = [asyncio.create_task(http.get("/slow?0.02")) for _ in range(8)]
            await asyncio.sleep(delay)
            for call in calls[::2]:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        answer = await http.get("/", timeout=httpx.Timeout(2.0, pool=1.0))
        assert answer.status_code == 200
        [pool] = transport._pools.values()
        assert pool.opened == 1
        assert not pool.waiters


async def test_skyfed_client_maps_transport_failures(server: Server) -> None:
    async with SkyfedClient(server.url, timeout=0.3) as zone:
        assert (await zone.request("GET", "/", params={"on": True}))["target"] == "/?on=true"
        with pytest.raises(ZoneUnreachable) as hung:
            await zone.request("GET", "/hang")
        assert hung.value.timed_out
        with pytest.raises(ZoneUnreachable) as cut:
            await zone.request("GET", "/cut")
        assert not cut.value.timed_out


def test_it_runs_on_uvloop_as_zones_do() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def exchange() -> tuple[int, int]:
        served = Server()
        await served.start()
        try:
            async with client(served, H1Transport()) as http:
                answers = await asyncio.gather(*(http.post("/echo", json=[i]) for i in range(5)))
                assert [a.json() for a in answers] == [[i] for i in range(5)]
                await http.get("/close")
                return (await http.get("/")).status_code, served.connections
        finally:
            await served.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        # five at once open five; /close ends one and the last request takes another
        assert runner.run(exchange()) == (200, 5)


async def test_a_connection_that_closes_on_its_way_to_a_waiter_is_not_used(
    server: Server,
) -> None:
    """The pool's one connection is handed to a queued request, and the server's close
    arrives before that request runs: it must open a new connection, not write into the
    closed one (which hung until the read timeout, or raised RuntimeError on uvloop)."""
    transport = H1Transport(max_connections=1)
    async with client(server, transport, timeout=2.0) as http:
        assert (await http.get("/")).status_code == 200
        [pool] = transport._pools.values()
        held = pool.idle.pop()  # taken, as a request under way would hold it
        queued = asyncio.create_task(http.get("/"))
        await until(lambda: len(pool.waiters) == 1, what="the request queued")
        transport._release(held, reusable=True)  # handed on to the queued request...
        held.close()  # ...and closed by the server in the same turn of the loop
        async with asyncio.timeout(1):
            assert (await queued).status_code == 200
        assert pool.opened == 1
    assert server.connections == 2


async def test_closing_the_transport_fails_its_waiters_with_a_transport_error(
    server: Server,
) -> None:
    transport = H1Transport(max_connections=1)
    http = client(server, transport)
    slow = asyncio.create_task(http.get("/slow?2"))
    await until(lambda: server.open_now == 1, what="the slow request's connection")
    queued = asyncio.create_task(http.get("/"))
    [pool] = transport._pools.values()
    await until(lambda: len(pool.waiters) == 1, what="the request queued")
    await transport.aclose()
    with pytest.raises(httpx.ConnectError):
        await queued
    assert (await slow).status_code == 200  # already under way: it finishes
    await http.aclose()


async def test_an_interim_answer_is_skipped(server: Server) -> None:
    async with client(server, H1Transport()) as http:
        answer = await http.post("/interim", json={})
        assert (answer.status_code, answer.json()) == (201, {"a": 1})
        assert (await http.get("/")).status_code == 200
