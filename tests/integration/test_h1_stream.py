"""The streaming HTTP/1.1 pool (transport/h1_stream.py) against small servers on
loopback that answer as real ones can: kept alive or not, early, slowly, with
interim answers, bodies until the connection closes, or nonsense."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from skyfed.transport import h1_stream
from skyfed.transport.h1_stream import Origin, StreamError, StreamPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]


class Server:
    """Reads request heads and hands them to `handler` (True: keep the connection)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Origin:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return Origin("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not await self.handler(reader, writer, head):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # (the client left, or the test ended)
        finally:
            writer.close()


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    if header(head, b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]
    return await reader.readexactly(int(header(head, b"content-length") or 0))


def request(method: str, path: str = "/", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: test\r\n{extra}\r\n".encode()


async def answer_ok(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
) -> bool:
    body = await read_body(reader, head)
    reply = hashlib.md5(body).hexdigest().encode() if body else b"hello"
    sent = b"" if head.startswith(b"HEAD ") else reply  # a HEAD's answer: its head alone
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(reply), sent))
    await writer.drain()
    return True


async def test_connections_are_kept_alive_and_reused_after_a_head() -> None:
    server = Server(answer_ok)
    pool = StreamPool()
    async with server as origin:
        for method in ("GET", "HEAD", "GET", "DELETE"):
            answer = await pool.request(origin, request(method), head_only=method == "HEAD")
            assert answer.status == 200
            body = b"".join([c async for c in answer.chunks()])
            assert body == (b"" if method == "HEAD" else b"hello")
            answer.close()
        assert server.connections == 1
    await pool.aclose()


async def test_bodies_stream_both_ways_chunked_or_not() -> None:
    server = Server(answer_ok)
    pool = StreamPool()
    payload = b"x" * 300_000 + b"y" * 5

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    async with server as origin:
        for chunked in (True, False):
            extra = "" if chunked else f"content-length: {len(payload)}\r\n"
            head = request("PUT", extra=extra + ("transfer-encoding: chunked\r\n" * chunked))
            answer = await pool.request(origin, head, pieces(), chunked=chunked)
            assert await answer.read() == hashlib.md5(payload).hexdigest().encode()
            answer.close()
    await pool.aclose()


async def test_an_answer_before_the_body_is_taken_is_the_answer() -> None:
    """A server that refuses an upload at once and closes (as Swift's proxy may)."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
        await writer.drain()
        return False

    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(4096):  # up to 256 MiB: far more than any socket buffer holds
            sent += 65536
            yield b"z" * 65536
            await asyncio.sleep(0)

    pool = StreamPool()
    async with Server(refuse) as origin:
        head = request("PUT", extra=f"content-length: {4096 * 65536}\r\n")
        answer = await asyncio.wait_for(pool.request(origin, head, endless()), 30)
        assert answer.status == 413
        assert await answer.read() == b"big"
        answer.close()
    assert sent < 4096 * 65536
    await pool.aclose()


async def test_a_slow_reader_holds_a_bounded_buffer() -> None:
    size = 32 << 20

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"L" * (1 << 20)
        for _ in range(size >> 20):
            writer.write(block)
            await writer.drain()
        return True

    pool = StreamPool()
    async with Server(large) as origin:
        answer = await pool.request(origin, request("GET"))
        connection = answer._connection
        received, peak = 0, 0
        while chunk := await answer.read():
            received += len(chunk)
            await asyncio.sleep(0.001)  # a client slower than loopback
            peak = max(peak, connection._buffered)  # what the pool holds, unread
        answer.close()
        assert received == size
        assert peak <= h1_stream.HIGH_WATER + (1 << 20)
        # The connection serves the next answer (its parser starts afresh).
        again = await pool.request(origin, request("GET"))
        assert sum([len(c) async for c in again.chunks()]) == size
        again.close()
    await pool.aclose()


async def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        await answer_ok(reader, writer, head)
        return False  # keep-alive said, then closed: the next request must not fail

    server = Server(once)
    pool = StreamPool()
    async with server as origin:
        for _ in range(3):
            answer = await pool.request(origin, request("GET"))
            assert await answer.read() == b"hello"
            answer.close()
            await asyncio.sleep(0.05)
    assert server.connections == 3
    await pool.aclose()


async def test_interim_answers_bodies_until_close_and_nonsense() -> None:
    async def odd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        path = head.split(b" ")[1]
        if path == b"/continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await read_body(reader, head)
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return True
        if path == b"/until-close":
            writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
            await writer.drain()
            return False
        writer.write(b"NONSENSE\r\n\r\n")
        await writer.drain()
        return False

    pool = StreamPool()

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    async with Server(odd) as origin:
        head = request("PUT", "/continue", "content-length: 3\r\nexpect: 100-continue\r\n")
        answer = await pool.request(origin, head, body())
        assert answer.status == 201
        assert await answer.read() == b""
        answer.close()
        answer = await pool.request(origin, request("GET", "/until-close"))
        assert b"".join([c async for c in answer.chunks()]) == b"all of it"
        answer.close()
        with pytest.raises(StreamError):
            await pool.request(origin, request("GET", "/nonsense"))
    await pool.aclose()


async def test_more_than_the_length_said_is_an_error() -> None:
    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + b"a" * 10)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"b" * 80000)  # 10,000 bytes too many
        await writer.drain()
        return True

    pool = StreamPool()
    async with Server(liar) as origin:
        answer = await pool.request(origin, request("GET"))
        with pytest.raises(StreamError):
            async for _ in answer.chunks():
                pass
        answer.close()
    await pool.aclose()


async def test_an_aborted_answer_stops_the_download() -> None:
    sent = 0
    stopped = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 << 20))
        try:
            for _ in range(64):
                writer.write(b"s" * (1 << 20))
                await writer.drain()
                sent += 1 << 20
                await asyncio.sleep(0.02)
        except ConnectionError:
            stopped.set()
        return False

    pool = StreamPool()
    async with Server(slow) as origin:
        answer = await pool.request(origin, request("GET"))
        assert await answer.read()
        answer.abort()  # the caller went away
        with pytest.raises(StreamError):
            while await answer.read():
                pass
        answer.close()
        await asyncio.wait_for(stopped.wait(), 10)
    assert sent < 32 << 20
    await pool.aclose()


async def test_no_server_is_a_stream_error() -> None:
    pool = StreamPool(connect_timeout=5)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(StreamError):
        await pool.request(Origin("127.0.0.1", port), request("GET"))
    await pool.aclose()


async def test_addresses_are_checked_when_connecting() -> None:
    """A name that resolves, when the connection is made, to a refused address is
    not connected to (DNS may answer differently from when the cluster was added)."""
    seen: list[bool] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(True)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def refused(address: str) -> str | None:
        return "refused here" if address == "127.0.0.1" else None

    pool = StreamPool(connect_timeout=5, address_check=refused)
    try:
        with pytest.raises(StreamError, match="refused here"):
            await pool.request(Origin("localhost", port), request("GET"))
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
    assert seen == []


async def test_each_checked_address_is_tried_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to ::1 before 127.0.0.1 (as `localhost` often does)
    reaches a server on IPv4 alone: each checked address is tried in turn."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    looked_up: list[str] = []

    async def resolve(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        looked_up.append(host)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolve)
    pool = StreamPool(connect_timeout=5, address_check=lambda address: None)
    try:
        answer = await pool.request(Origin("cluster.test", port), request("GET"))
        assert answer.status == 200 and await answer.read() == b"ok"
        answer.close()
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
    assert looked_up == ["cluster.test"]
