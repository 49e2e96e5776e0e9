"""httpx's own transport (httpcore's pool) for a child's API, under the H1 pool's guards.

Chosen with `link_http_transport = "httpx"` where skyfed's own pool (h1_pool.py,
faster, HTTP/1.1 only) will not do: an HTTP proxy between a parent and its children
(`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` from the environment, read
as curl reads them), HTTP/2 (when the `h2` package is installed), or TLS as httpx
sets it up (certifi's CA bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).

The guards are the H1 pool's: an answer past `max_answer_bytes` fails the call
(RemoteProtocolError), and every address a child's name resolves to is checked when
a connection is made, which then goes to the checked address. Through a proxy the
proxy makes that connection, so the child's address is the proxy's to check (its
host still had to be in `allowed_child_hosts` when the child was added).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import ssl
import urllib.request
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from skyfed.transport.addresses import AddressCheck, checked_address
from skyfed.transport.h1_pool import KEEPALIVE_EXPIRY


class HttpxTransport(httpx.AsyncBaseTransport):
    """httpx's pool; answers bounded and buffered whole, addresses checked at connect."""

    def __init__(
        self,
        *,
        max_connections: int = 20,
        max_answer_bytes: int | None = None,
        address_check: AddressCheck | None = None,
        proxy: str | None = None,
        http2: bool | None = None,
    ) -> None:
        self.max_answer_bytes = max_answer_bytes
        http2 = importlib.util.find_spec("h2") is not None if http2 is None else http2
        tls = _tls_context(http2)
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY,  # before uvicorn drops an idle connection
        )
        self._inner = httpx.AsyncHTTPTransport(
            verify=tls, http2=http2, limits=limits, proxy=proxy, trust_env=True
        )
        if address_check is not None and proxy is None:
            _guard(self._inner, tls, limits, http2, address_check)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        try:
            body = await self._read(response)
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(body),  # buffered whole, as the H1 pool does
            request=request,
            extensions={"http_version": response.extensions.get("http_version", b"HTTP/1.1")},
        )

    async def _read(self, response: httpx.Response) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for part in response.aiter_raw():
            size += len(part)
            if self.max_answer_bytes is not None and size > self.max_answer_bytes:
                # A peer that answers without end must not fill this process's memory.
                raise httpx.RemoteProtocolError(f"answer larger than {self.max_answer_bytes} bytes")
            parts.append(part)
        return b"".join(parts)

    async def aclose(self) -> None:
        await self._inner.aclose()


def checked_transport(
    address_check: AddressCheck, *, max_connections: int = 100, keepalive: int = 20
) -> httpx.AsyncHTTPTransport:
    """httpx's own streaming transport (answers not buffered: the Swift routes' bodies
    stream through it) whose connections go only to addresses the check allows."""
    tls = _tls_context(False)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=keepalive,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits, trust_env=False)
    _guard(transport, tls, limits, False, address_check)
    return transport


def _guard(
    transport: httpx.AsyncHTTPTransport,
    tls: ssl.SSLContext,
    limits: httpx.Limits,
    http2: bool,
    check: AddressCheck,
) -> None:
    """httpx takes no network backend, so its pool is made again with one that checks;
    should a later httpx keep its pool elsewhere, refuse to run unguarded."""
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("this httpx keeps no httpcore pool where skyfed can guard it")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=http2,
        network_backend=_CheckedBackend(check),
    )


@functools.cache
def _tls_context(http2: bool) -> ssl.SSLContext:
    """httpx's TLS set-up, made once: loading a CA bundle costs ~20 ms each time. One per
    `http2`, since httpcore sets the context's ALPN protocols from it at each connect."""
    return httpx.create_ssl_context(trust_env=True)


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (None: none, or NO_PROXY exempts it)."""
    parsed = httpx.URL(url)
    if urllib.request.proxy_bypass(parsed.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parsed.scheme) or proxies.get("all")


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network I/O, connecting only to addresses the check allows."""

    def __init__(self, check: AddressCheck) -> None:
        self._check = check
        self._io = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with asyncio.timeout(timeout):  # the lookup counts toward the connect
                address = await checked_address(host, port, self._check)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} in time") from exc
        except OSError as exc:  # refused, or the name does not resolve
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        left = None if timeout is None else max(0.001, timeout - (loop.time() - began))
        return await self._io.connect_tcp(
            address,
            port,
            timeout=left,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("children are reached over TCP")

    async def sleep(self, seconds: float) -> None:
        await self._io.sleep(seconds)
