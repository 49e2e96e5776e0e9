"""A lean HTTP/1.1 load generator for `skyfed bench objects`.

One keep-alive connection per `HttpConnection`, one request at a time. A request
body is either a few bytes or `size` bytes sent from a reused buffer (a memoryview
of it, slice after slice: no body is ever built whole), with the transport's flow
control; an answer is parsed by httptools (C) and its body counted and dropped,
unless the caller keeps it (listings). So the client costs little next to what it
measures, the same on both sides of a comparison.

Not a general client: no redirects, no HEAD, no interim answers (it sends no
`Expect: 100-continue`), no TLS.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import cast

import httptools

WRITE_HIGH_WATER = 4 * 1024 * 1024  # bytes queued in the transport before we wait


class HttpFailure(Exception):
    """The connection failed or the answer was malformed."""


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    received: int  # body bytes
    body: bytes = b""  # only when kept


class HttpConnection(asyncio.Protocol):
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._status = 0
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._keep_body = False
        self._received = 0
        self._sent = 0
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(lambda: cls(host, port), host, port)
        return connection

    @property
    def usable(self) -> bool:
        return self.reusable and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # bytes nobody asked for
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpFailure(f"malformed answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(HttpFailure(f"connection lost: {exc or 'closed by the server'}"))
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(HttpFailure("connection lost while sending"))

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- httptools callbacks ---------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        if self._keep_body:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.reusable and self._parser.should_keep_alive()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)

    # -- one exchange ----------------------------------------------------------------

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        *,
        body: bytes = b"",
        source: memoryview | None = None,
        size: int = 0,
        keep_body: bool = False,
    ) -> Answer:
        """Send a request (a body of `size` bytes from `source`, over and over, or
        `body`) and wait for its whole answer."""
        if not self.usable:
            raise HttpFailure("connection not usable")
        transport = self.transport
        assert transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._status, self._headers, self._chunks, self._received = 0, {}, [], 0
        self._keep_body = keep_body
        length = size if source is not None else len(body)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if method in ("PUT", "POST") or length:
            lines.append(f"Content-Length: {length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            transport.write(head + body)
            if source is not None:
                await self._stream(transport, source, size)
            await self._answer
        except BaseException:
            self.close()  # cancelled or failed half way: nothing else may follow
            raise
        if source is not None and self._sent < size:
            self.close()  # answered before the body was sent in full (an error)
        return Answer(self._status, self._headers, self._received, b"".join(self._chunks))

    async def _stream(self, transport: asyncio.Transport, source: memoryview, size: int) -> None:
        self._sent = 0
        step = len(source)
        assert self._answer is not None
        while self._sent < size and not self._answer.done():
            n = min(step, size - self._sent)
            transport.write(source[:n])
            self._sent += n
            writable = self._writable
            if writable is not None:  # wait for room, or for an early answer
                await asyncio.wait((writable, self._answer), return_when=asyncio.FIRST_COMPLETED)
                if writable.done() and not writable.cancelled():
                    writable.exception()  # seen; the answer says what went wrong
