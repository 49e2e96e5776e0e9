"""The outermost ASGI layer: a request id on every call (kept across zones), one access
log line, a bound on request bodies (413), and the error shape for any failure nothing
else handled (logged once, with the request id)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyfed.errors import PayloadTooLarge
from skyfed.logs import request_id
from skyfed.wire import REQUEST_ID, error_body

log = logging.getLogger("skyfed.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REQUEST_ID = REQUEST_ID.lower().encode("latin-1")  # as ASGI spells header names


def _quiet(method: str, path: str) -> bool:
    """Heartbeats, probes and parents' polls arrive constantly: logged at debug level."""
    if path in ("/healthz", "/readyz"):
        return True
    if method == "GET" and path == "/v1/zone":
        return True
    return method == "PUT" and path.startswith("/v1/hosts")


DEFAULT_MAX_BODY = 32 * 1024 * 1024


class RequestContext:
    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        length = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                incoming = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        rid = incoming if _VALID_ID.match(incoming) else f"req-{uuid.uuid4()}"
        token = request_id.set(rid)
        status = 500
        started_response = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = [*message.get("headers", []), (_REQUEST_ID, rid.encode())]
            await send(message)

        limit = self.max_body
        too_large = f"the request body is larger than {limit:,} bytes"
        read = 0

        async def receive_bounded() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:  # (a body sent without a length, or longer than it said)
                    raise PayloadTooLarge(too_large)
            return message

        try:
            if length is not None and not length.isdigit():
                await _answer(send_with_id, 400, "bad_request", "Content-Length is not a number")
                return
            if length is not None and int(length) > limit:  # refused before a byte is read
                await _answer(send_with_id, 413, PayloadTooLarge.code, too_large)
                return
            await self.app(scope, receive_bounded, send_with_id)
        except PayloadTooLarge as exc:  # (the app's handlers answer it where they see it)
            if not started_response:
                await _answer(send_with_id, exc.status, exc.code, exc.message)
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"]})
            if not started_response:
                await _answer(
                    send_with_id,
                    500,
                    "internal_error",
                    "an internal error occurred; see the zone's log",
                )
        finally:
            method, path = scope["method"], scope["path"]
            log.log(
                logging.DEBUG if status < 400 and _quiet(method, path) else logging.INFO,
                "request",
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id.reset(token)


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    """A whole error response in the one error shape."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.body", "body": body})
