"""The outermost ASGI layer: a request id on every call (kept across zones), one access
log line, and the error shape for any failure nothing else handled (logged once, with
the request id)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyfed.errors import error_body
from skyfed.logs import request_id

log = logging.getLogger("skyfed.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _quiet(method: str, path: str) -> bool:
    """Heartbeats, probes and parents' polls arrive constantly: logged at debug level."""
    if path in ("/healthz", "/readyz"):
        return True
    if method == "GET" and path == "/v1/zone":
        return True
    return method == "PUT" and path.startswith("/v1/hosts")


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
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
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"]})
            if not started_response:
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                body = error_body(
                    "internal_error", "an internal error occurred; see the zone's log"
                )
                await send({"type": "http.response.body", "body": json.dumps(body).encode()})
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
