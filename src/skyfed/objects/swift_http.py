"""What skyfed's own answers on the Swift routes look like: Swift's, not skyfed's API's.

An error is a plain-text body with the status (a 401 carries Swift's
`Www-Authenticate: Swift realm="<account>"`, quoted), and every answer skyfed
makes there carries a transaction id (`X-Trans-Id`, `X-Openstack-Request-Id`,
`tx` + the request id), as Swift's do. Answers relayed from a backend keep its own.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec
from urllib.parse import quote, unquote

from fastapi import Response

from skyfed.errors import AppError, PreconditionFailed, TooManyRequests
from skyfed.logs import request_id

P = ParamSpec("P")


def swift_route(fn: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    @functools.wraps(fn)
    async def route(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            names = [str(kwargs[k]) for k in ("container", "obj") if k in kwargs]
            if not all(valid_name(n) for n in names):
                raise PreconditionFailed("Invalid UTF8 or contains NULL")
            response = await fn(*args, **kwargs)
        except AppError as exc:
            response = error_response(exc, str(kwargs.get("account") or ""))
        if not has_header(response, "x-trans-id"):
            with_trans_id(response)
        return response

    return route


def with_trans_id(response: Response) -> Response:
    """Swift's transaction id on an answer of skyfed's own: `tx` + the request id."""
    trans_id = f"tx{request_id.get() or ''}"
    response.headers["X-Trans-Id"] = trans_id
    response.headers["X-Openstack-Request-Id"] = trans_id
    return response


def error_response(exc: AppError, account: str) -> Response:
    headers: dict[str, Any] = {}
    if exc.status == 401:
        headers["Www-Authenticate"] = f'Swift realm="{quote(account or "unknown")}"'
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    return Response(exc.message.encode(), exc.status, headers, media_type="text/plain")


# Answers relayed from a backend keep its header names' case (Swift's clients and
# tests read them as sent), which Starlette's Headers do not match: these do.
def has_header(response: Response, name: str) -> bool:
    wanted = name.lower().encode("latin-1")
    return any(key.lower() == wanted for key, _ in response.raw_headers)


def drop_headers(response: Response, names: frozenset[str]) -> None:
    wanted = {n.lower().encode("latin-1") for n in names}
    response.raw_headers = [(k, v) for k, v in response.raw_headers if k.lower() not in wanted]


def header_path(value: str) -> str:
    """A path a header names (X-Copy-From, Destination, X-Object-Manifest,
    X-Symlink-Target...), percent-encoded or in raw UTF-8, as text. Starlette reads
    header bytes as Latin-1: encoding them back gives the bytes sent."""
    with contextlib.suppress(UnicodeEncodeError):  # else: text already (httpx read it)
        value = value.encode("latin-1").decode("utf-8", "replace")
    return unquote(value)


def valid_name(name: str) -> bool:
    """A name Swift takes: valid UTF-8 (no replacement of a bad byte) and no NUL."""
    return "\ufffd" not in name and "\x00" not in name
