"""A streaming HTTP/1.1 keep-alive pool: the data path of Swift objects, both ways.

Built like h1_pool (the most recently used idle connection of an origin, answers
parsed by httptools, no scan of the pool), but no body is held whole: a request's
body is written as its chunks come (waiting while the socket's buffer is full),
and an answer's body is handed on as the event loop reads it (uvloop reads up to
256 KiB at a time), reading paused while more than `HIGH_WATER` bytes wait for the
consumer. httpx's pool cost skyfed's zone about a quarter of its CPU per small
object request (it scans every connection for every request) and sliced each
large answer into 64 KiB reads; this one costs one dict lookup and a list pop.

Failures are `StreamError` (an OSError): no connection, a connection lost before
the answer's head, a malformed answer. A connection is reused only after an
answer read to its end that allows it.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import httptools

from skyfed.transport.addresses import AddressCheck, checked_addresses
from skyfed.transport.h1_pool import KEEPALIVE_EXPIRY

HIGH_WATER = 1 << 20  # answer bytes buffered before the socket is read no more
LOW_WATER = 256 << 10  # ... and read again below this
JOIN_BELOW = 64 << 10  # pieces smaller than this are handed on joined (fewer sends)
Header = tuple[bytes, bytes]
_FRAMING = (b"content-length", b"transfer-encoding")


@dataclass(frozen=True)
class Origin:
    host: str
    port: int
    tls: bool = False


class StreamError(OSError):
    """The upstream could not be reached, or broke off before answering in full."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one exchange at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reused = False  # it served an exchange before this one
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = False
        self._reset_parser = False
        self.status = 0
        self.headers: list[Header] = []
        self._head: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._wakeup: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._writable: asyncio.Future[None] | None = None
        self.complete = False
        self.keep_alive = False
        self._until_close = False
        self._raw_left = 0  # body bytes still to come past the parser (a known length)
        self.error: StreamError | None = None

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._head is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        if self._raw_left:  # the rest of a body of known length: handed on as read
            self._raw_body(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(StreamError(f"malformed answer: {exc}"))
            self.close()
            return
        if self._reset_parser:  # a HEAD's answer ended with its head
            self._reset_parser = False
            self._parser = httptools.HttpResponseParser(self)

    def _raw_body(self, data: bytes) -> None:
        """A body's bytes past the parser: each read goes on as the very object the
        loop made (the parser would copy it once more), and the next answer gets a
        parser of its own."""
        if len(data) > self._raw_left:  # more than the answer said it would send
            self._fail(StreamError("the upstream sent more than its Content-Length"))
            self.close()
            return
        self._raw_left -= len(data)
        self._take(data)
        if not self._raw_left:
            self._parser = httptools.HttpResponseParser(self)
            self.on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.status and self._until_close and not self.complete:
            self.on_message_complete()  # a body that ends with the connection
        elif not self.complete:
            self._fail(StreamError("the upstream closed the connection before answering in full"))
        self._wake_writer()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    # -- httptools callbacks -------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers = []
            return
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        framing = {n.lower(): v for n, v in self.headers if n.lower() in _FRAMING}
        self._until_close = not framing and status not in (204, 304)
        length = framing.get(b"content-length")
        if (
            length is not None
            and b"transfer-encoding" not in framing
            and length.isdigit()
            and status not in (204, 304)
            and not self._head_only
        ):
            self._raw_left = int(length)  # counted down by the parser, then past it
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._head_only:  # the parser cannot know a HEAD answer has no body
            self._reset_parser = True
            self._until_close = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        if self._raw_left:
            self._raw_left -= len(body)
        self._take(body)

    def _take(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused_reading and self.transport:
            self._paused_reading = True
            self.transport.pause_reading()
        self._wake_reader()

    def on_message_complete(self) -> None:
        if not self.status:
            return  # the end of an interim answer
        self.complete = True
        self._wake_reader()
        self._wake_writer()  # a body still being sent is not wanted any more

    # -- one exchange --------------------------------------------------------------

    def idle(self) -> None:
        self._head = None  # bytes arriving now are nobody's: they close it
        self.idle_since = time.monotonic()
        self.reused = True

    def begin(self, head_only: bool) -> None:
        self._head = asyncio.get_running_loop().create_future()
        self._head_only = head_only
        self.status = 0
        self.headers = []
        self.complete = False
        self.keep_alive = False
        self.error = None
        self._raw_left = 0

    async def write(self, data: bytes) -> None:
        """Sends `data`, waiting while the socket's buffer is full; raises StreamError
        once the connection is gone (the answer may have come: see `answered`)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise StreamError("the connection closed while the request was sent")
        self.transport.write(data)
        while self._writable is not None and not self.closed and not self.complete:
            await self._writable

    @property
    def answered(self) -> bool:
        return self.status >= 200

    async def head(self) -> None:
        assert self._head is not None
        await self._head

    async def read(self) -> bytes:
        """The next piece of the answer's body; b"" at its end."""
        while not self._chunks:
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup
        chunk = self._chunks.popleft()
        if len(chunk) < JOIN_BELOW and self._chunks:  # small pieces go on together
            pieces = [chunk]
            size = len(chunk)
            while self._chunks and size < JOIN_BELOW:
                pieces.append(self._chunks.popleft())
                size += len(pieces[-1])
            chunk = b"".join(pieces)
        self._buffered -= len(chunk)
        if self._paused_reading and self._buffered < LOW_WATER and self.transport:
            self._paused_reading = False
            self.transport.resume_reading()
        return chunk

    @property
    def drained(self) -> bool:
        """The whole answer has been read."""
        return self.complete and not self._chunks

    @property
    def reusable(self) -> bool:
        return not self.closed and self.keep_alive and self.drained

    def _fail(self, exc: StreamError) -> None:
        self.error = exc
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        self._wake_reader()

    def _wake_reader(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        self._wakeup = None

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def abandon(self) -> None:
        """Closes it mid-exchange: nobody waits for the answer any more."""
        head, self._head = self._head, None
        if head is not None and head.done() and not head.cancelled():
            head.exception()  # (seen: a failure nobody awaited is not logged as lost)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Answer:
    """An upstream's answer: its status and headers, and its body as it streams.
    `close()` gives the connection back (reused when read to its end)."""

    def __init__(self, pool: StreamPool, connection: _Connection) -> None:
        self._pool = pool
        self._connection = connection
        self.status = connection.status
        self.headers = connection.headers
        self._released = False

    async def read(self) -> bytes:
        return await self._connection.read()

    @property
    def at_end(self) -> bool:
        """Nothing more will come after what was read."""
        return self._connection.drained

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self._connection.read():
            yield chunk

    def abort(self) -> None:
        """Nobody wants the rest: the connection is closed, and a read fails."""
        if not self._connection.drained:
            self._connection.close()

    def close(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._connection)


class _Idle:
    """An origin's connections: idle ones last in, first out."""

    def __init__(self) -> None:
        self.idle: list[_Connection] = []
        self.opened = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()


class StreamPool:
    """Keep-alive connections by origin, at most `max_connections` to each."""

    def __init__(
        self,
        *,
        max_connections: int = 64,
        connect_timeout: float = 30.0,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
        address_check: AddressCheck | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.keepalive_expiry = keepalive_expiry
        self.ssl_context = ssl_context
        # Every address a host name resolves to is checked when a connection is made,
        # and the connection goes to the checked address (no second lookup to rebind).
        self.address_check = address_check
        self._origins: dict[Origin, _Idle] = {}
        self._closed = False

    async def request(
        self,
        origin: Origin,
        head: bytes,
        body: AsyncIterator[bytes] | None = None,
        *,
        chunked: bool = False,
        head_only: bool = False,
    ) -> Answer:
        """Sends the request (`head`: its line and headers, ending in a blank line;
        `body` written as it comes, chunk-encoded when `chunked`) and returns once the
        answer's head is in. A failure of the body's source closes the connection
        and is raised as it is."""
        for attempt in (1, 2):
            connection = await self._acquire(origin)
            try:
                connection.begin(head_only)
                if body is None:
                    await connection.write(head)
                else:
                    await self._send(connection, head, body, chunked)
                await connection.head()
            except StreamError:
                connection.abandon()
                self.release(connection)
                # A kept-alive connection the server closed as the request went: a
                # request without a body is sent again, once, on a new connection.
                if body is None and connection.reused and attempt == 1:
                    continue
                raise
            except BaseException:
                connection.abandon()
                self.release(connection)
                raise
            return Answer(self, connection)
        raise AssertionError("unreachable")

    @staticmethod
    async def _send(
        connection: _Connection, head: bytes, body: AsyncIterator[bytes], chunked: bool
    ) -> None:
        pending = head  # the head goes with the first piece of the body
        try:
            async for chunk in body:
                if connection.answered:  # answered already (an error): the rest is not read
                    connection.keep_alive = False
                    return
                if not chunk:
                    continue
                if chunked:
                    chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
                await connection.write(pending + chunk if pending else chunk)
                pending = b""
            await connection.write(pending + (b"0\r\n\r\n" if chunked else b""))
        except StreamError:
            if not connection.answered:
                raise
            connection.keep_alive = False  # it answered and closed before taking it all

    async def _acquire(self, origin: Origin) -> _Connection:
        if self._closed:
            raise StreamError("the pool is closed")
        slot = self._origins.get(origin)
        if slot is None:
            slot = self._origins[origin] = _Idle()
        now = time.monotonic()
        while slot.idle:
            connection = slot.idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive_expiry:
                return connection
            connection.close()
            slot.opened -= 1
        while slot.opened >= self.max_connections:
            waiter = asyncio.get_running_loop().create_future()
            slot.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in slot.waiters:
                    slot.waiters.remove(waiter)
            if self._closed:
                raise StreamError("the pool is closed")
            while slot.idle:
                connection = slot.idle.pop()
                if not connection.closed:
                    return connection
                slot.opened -= 1
        slot.opened += 1
        try:
            return await self._open(origin)
        except BaseException:
            slot.opened -= 1
            self._wake(slot)
            raise

    async def _open(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = (self.ssl_context or ssl.create_default_context()) if origin.tls else None
        try:
            async with asyncio.timeout(self.connect_timeout):
                targets = [origin.host]
                if self.address_check is not None:  # (RefusedAddress is an OSError)
                    targets = await checked_addresses(origin.host, origin.port, self.address_check)
                connection = await self._connect(loop, origin, targets, tls)
        except TimeoutError as exc:
            raise StreamError(f"no connection to {origin.host}:{origin.port} in time") from exc
        except (OSError, ssl.SSLError) as exc:
            raise StreamError(str(exc) or type(exc).__name__) from exc
        return connection

    @staticmethod
    async def _connect(
        loop: asyncio.AbstractEventLoop,
        origin: Origin,
        targets: list[str],
        tls: ssl.SSLContext | None,
    ) -> _Connection:
        """A connection to the first of `targets` (checked addresses, or the name
        itself) that takes one."""
        failure: OSError | None = None
        for target in targets:
            try:
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin),
                    target,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
                return connection
            except OSError as exc:  # (ssl.SSLError is one too)
                failure = exc
        assert failure is not None
        raise failure

    def release(self, connection: _Connection) -> None:
        slot = self._origins.get(connection.origin)
        if slot is None:  # the pool was closed meanwhile
            connection.close()
            return
        if self._closed or not connection.reusable:
            connection.close()
            slot.opened -= 1
        else:
            connection.idle()
            slot.idle.append(connection)
        self._wake(slot)

    @staticmethod
    def _wake(slot: _Idle) -> None:
        while slot.waiters:
            waiter = slot.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        origins, self._origins = self._origins, {}
        for slot in origins.values():
            for connection in slot.idle:
                connection.close()
            for waiter in slot.waiters:
                if not waiter.done():
                    waiter.set_result(None)
