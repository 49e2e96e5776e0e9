"""`metrics_port`: `/metrics` on a listener of its own, without a token.

For a scraper that holds no account, and for `skyfed worker` processes, which
serve no API. It answers `GET /metrics` and nothing else, one small request per
connection, with bounded reads, so it needs no web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from skyfed.observability.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

_MAX_HEAD = 8192
_READ_TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def metrics_listener(metrics: Metrics, host: str, port: int) -> AsyncIterator[int]:
    """Serves until the block ends; yields the port bound (`port` 0: any free one)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            method, _, rest = head.partition(b" ")
            target = rest.partition(b" ")[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif target != b"/metrics":
                status, body, kind = "404 Not Found", b"see /metrics\n", "text/plain"
            else:
                status, body, kind = "200 OK", await metrics.render(), CONTENT_TYPE
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if method != b"HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a silent, cut or oversized request gets nothing
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, limit=_MAX_HEAD)
    bound = server.sockets[0].getsockname()[1]
    log.info("metrics served", extra={"url": f"http://{host}:{bound}/metrics"})
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()
