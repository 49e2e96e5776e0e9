"""A lean HTTP/1.1 keep-alive pool for httpx: what every skyfed client sends through.

httpx's own pool (httpcore) scans all of its connections for every request, through
anyio's attribute lookups, so a client with 64 connections spent most of its CPU
choosing one (5 ms per request in `skyfed bench e2e`'s load generator). Here a
request takes the most recently used idle connection of its origin, or opens one,
or waits in FIFO order for one to come back; responses are parsed by httptools
(C, the parser uvicorn uses) into a buffered `httpx.Response`.

What it does not do, because skyfed's calls never need it: HTTP/2, proxies,
streamed request or response bodies (both are read whole; calls carry JSON).
A HEAD answer's connection is not reused (the parser would wait for its body).
Errors are httpx's, so callers map them as they did: ConnectError, ConnectTimeout,
PoolTimeout, ReadTimeout, WriteTimeout, RemoteProtocolError, ReadError.

Timeouts follow httpx's meaning: `connect` for the TCP (and TLS) handshake, `pool`
for the wait for a connection, `read` for the longest silence while an answer is
due, `write` for a request's bytes to leave the buffer.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import cast

import httptools
import httpx

from skyfed.transport.addresses import AddressCheck, checked_address

# Uvicorn closes a keep-alive connection after 5 s idle; reusing one that old risks a
# request racing the server's close, so connections idle this long are dropped first.
KEEPALIVE_EXPIRY = 4.0
DEFAULT_PORTS = {b"http": 80, b"https": 443}
Origin = tuple[bytes, bytes, int]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, the answer buffered whole."""

    def __init__(self, origin: Origin, max_answer_bytes: int | None = None) -> None:
        self.origin = origin
        self.max_answer_bytes = max_answer_bytes
        self._answer_bytes = 0
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._complete = False
        self._status = 0
        self._keep_alive = False
        self._until_close = False
        self._head_only = False
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout: float | None = None
        self._writable: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # bytes nobody asked for: the connection is unusable
            return
        self._last_read = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            if self._status and self._until_close:  # a body that ends with the connection
                self.on_message_complete()
                return
            self._fail(httpx.RemoteProtocolError("server disconnected before answering in full"))
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(httpx.WriteError("connection lost while sending"))

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- httptools callbacks -------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._answer_bytes += len(body)
        if self.max_answer_bytes is not None and self._answer_bytes > self.max_answer_bytes:
            # A peer that answers without end must not fill this process's memory.
            self._fail(
                httpx.RemoteProtocolError(f"answer larger than {self.max_answer_bytes} bytes")
            )
            self.close()
            return
        self._body.append(body)

    def on_headers_complete(self) -> None:
        # Read here: after the message the parser has moved on and answers for the next.
        self._status = self._parser.get_status_code()
        if self._status < 200:  # an interim answer (100 Continue): the real one follows
            return
        self._keep_alive = self._parser.should_keep_alive()
        framed = {name.lower() for name, _ in self._headers} & {
            b"content-length",
            b"transfer-encoding",
        }
        self._until_close = not framed and self._status >= 200 and self._status not in (204, 304)
        if self._head_only:  # the parser cannot know a HEAD answer has no body
            self._keep_alive = False
            self.on_message_complete()

    def on_message_complete(self) -> None:
        if self._status < 200:
            self._headers, self._body, self._status = [], [], 0
            return
        self._complete = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(None)

    # -- one exchange --------------------------------------------------------------

    async def exchange(
        self,
        head: bytes,
        body: bytes,
        read_timeout: float | None,
        write_timeout: float | None,
        *,
        head_only: bool = False,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        assert self.transport is not None
        if self.closed or self.transport.is_closing():
            raise httpx.WriteError("the connection closed before the request was sent")
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self._headers = []
        self._body = []
        self._answer_bytes = 0
        self._complete = False
        self._status = 0
        self._head_only = head_only
        try:
            self.transport.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                self.transport.write(body)
        except (RuntimeError, OSError) as exc:  # uvloop: "the handler is closed"
            self.close()
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
        if self._writable is not None:
            try:
                async with asyncio.timeout(write_timeout):
                    await self._writable
            except TimeoutError as exc:
                raise httpx.WriteTimeout("request not sent in time") from exc
        self._last_read = time.monotonic()
        self._read_timeout = read_timeout
        if read_timeout is not None:
            self._timer = loop.call_later(read_timeout, self._check_silence)
        try:
            await self._answer
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._answer = None
        return self._status, self._headers, b"".join(self._body)

    def _check_silence(self) -> None:
        """The read timeout: fail once the server has been silent for that long."""
        assert self._read_timeout is not None
        silent = time.monotonic() - self._last_read
        if silent < self._read_timeout:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._read_timeout - silent, self._check_silence)
            return
        self._timer = None
        if self._answer is not None and not self._answer.done():
            self._fail(httpx.ReadTimeout(f"no answer within {self._read_timeout:g}s"))
            self.close()

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)

    @property
    def reusable(self) -> bool:
        return not self.closed and self._complete and self._keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """The connections of one origin: idle ones last-in first-out, waiters in order."""

    def __init__(self) -> None:
        self.idle: list[_Connection] = []
        self.opened = 0  # connections open or being opened
        self.waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()


class H1Transport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        max_connections: int = 20,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        max_answer_bytes: int | None = None,
        address_check: AddressCheck | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.ssl_context = ssl_context
        self.keepalive_expiry = keepalive_expiry
        # Answers beyond this many body bytes fail (RemoteProtocolError).
        self.max_answer_bytes = max_answer_bytes
        # Every address a host name resolves to is checked when a connection is made, and
        # the connection goes to the checked address (no second lookup to rebind).
        self.address_check = address_check
        self._pools: dict[Origin, _Pool] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport has been closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}")
        origin = (scheme, url.raw_host, url.port or DEFAULT_PORTS[scheme])
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        body = await request.aread()
        head = _head(request, body)
        connection = await self._acquire(origin, timeouts)
        ok = False
        try:
            status, headers, content = await connection.exchange(
                head,
                body,
                timeouts.get("read"),
                timeouts.get("write"),
                head_only=request.method == "HEAD",
            )
            ok = True
        finally:
            # A connection left mid-exchange (an error, a cancelled caller) is closed.
            self._release(connection, reusable=ok and connection.reusable)
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(content),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _acquire(self, origin: Origin, timeouts: dict[str, float | None]) -> _Connection:
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool()
        now = time.monotonic()
        while pool.idle:
            connection = pool.idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive_expiry:
                return connection
            self._discard(pool, connection)
        if pool.opened >= self.max_connections:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    handed = await waiter
            except BaseException as exc:
                self._give_back(pool, waiter)
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout("no connection free in time") from exc
                raise
            if handed is not None:
                if not handed.closed:
                    return handed
                # It closed on its way to us: its place is ours, for a new connection.
                handed.close()
            # None: a connection closed and its place is ours (counted by the closer).
        else:
            pool.opened += 1
        try:
            return await self._open(origin, timeouts.get("connect"))
        except BaseException:
            pool.opened -= 1
            self._wake(pool)
            raise

    async def _open(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == b"https":
            tls = self.ssl_context or ssl.create_default_context()
        name = host.decode("ascii")
        try:
            async with asyncio.timeout(timeout):
                target = name
                if self.address_check is not None:  # (RefusedAddress is an OSError)
                    target = await checked_address(name, port, self.address_check)
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin, self.max_answer_bytes),
                    target,
                    port,
                    ssl=tls,
                    server_hostname=name if tls else None,
                )
        except TimeoutError as exc:  # asyncio's timeout, or the OS's own
            raise httpx.ConnectTimeout(f"no connection to {host.decode()}:{port} in time") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    def _release(self, connection: _Connection, *, reusable: bool) -> None:
        pool = self._pools.get(connection.origin)
        if pool is None:  # the transport was closed meanwhile
            connection.close()
            return
        if not reusable or self._closed or connection.closed:
            self._discard(pool, connection)
            return
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        connection.idle_since = time.monotonic()
        pool.idle.append(connection)

    def _give_back(self, pool: _Pool, waiter: asyncio.Future[_Connection | None]) -> None:
        """A waiter that gave up: what it was handed as it did goes to the next one."""
        if not waiter.done():
            waiter.cancel()  # _release and _wake pass over it
        elif not waiter.cancelled() and waiter.exception() is None:
            handed = waiter.result()
            if handed is None:
                pool.opened -= 1
                self._wake(pool)
            else:
                self._release(handed, reusable=True)

    def _discard(self, pool: _Pool, connection: _Connection) -> None:
        connection.close()
        pool.opened -= 1
        self._wake(pool)

    def _wake(self, pool: _Pool) -> None:
        """A place came free: the first live waiter may open a connection of its own."""
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                pool.opened += 1
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            for connection in pool.idle:
                connection.close()
            for waiter in pool.waiters:
                if not waiter.done():
                    waiter.set_exception(httpx.ConnectError("the transport was closed"))


def _head(request: httpx.Request, body: bytes) -> bytes:
    """The request line and headers, with the body's length in place of any framing."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding"):
            continue
        lines.append(name + b": " + value)
    if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"\r\n")
    return b"\r\n".join(lines)
