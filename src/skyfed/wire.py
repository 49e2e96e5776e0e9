"""The wire protocol between a zone and whoever calls it: header names, the one error
shape, and the errors a caller sees.

Both ends import this module: a zone builds its error answers with `error_body` and
reads the forwarded identity and the request id under these names; the client (and so
every zone link) turns an answer into its JSON or a `SkyfedError` with `read_answer`.

An answer may come from anything at a URL an admin typed, so `read_answer` trusts
nothing in it: whatever the bytes, it returns JSON or raises `SkyfedError`, with the
code and message bounded and stripped of control characters, and never quotes a
foreign (non-skyfed) answer.
"""

from __future__ import annotations

import json
from typing import Any

from skyfed.identity.principal import Principal

# An end user's identity, carried by a parent's service account to a child (and
# honoured there only from such an account; identity/deps.py).
FORWARDED_USER_ID = "X-Skyfed-User-Id"
FORWARDED_USER = "X-Skyfed-User"
FORWARDED_PROJECT = "X-Skyfed-Project-Id"
FORWARDED_ROLES = "X-Skyfed-Roles"
# The id of the request being served, kept across zones (middleware.py sets it).
REQUEST_ID = "X-Request-Id"
# The W3C trace context of the call (observability/tracing.py), kept across zones.
TRACEPARENT = "traceparent"
# Not a header: an httpx request extension saying the call is safe to run twice,
# which a transport may use (the amqp one then batches it with others).
IDEMPOTENT = "skyfed.idempotent"

# Bounds on what an error answer may make a caller hold or print.
MAX_ERROR_BODY = 1024 * 1024  # bytes parsed as an error; a larger one is not read
MAX_CODE = 64
MAX_MESSAGE = 4096


def forwarded_headers(principal: Principal) -> dict[str, str]:
    """Headers that carry an end user's identity to a child (honoured from service accounts)."""
    return {
        FORWARDED_USER_ID: principal.user_id,
        FORWARDED_USER: principal.username,
        FORWARDED_PROJECT: principal.project_id,
        FORWARDED_ROLES: ",".join(sorted(principal.roles)),
    }


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error shape: `{"error": {"code": ..., "message": ..., "details"?: ...}}`.
    The code is stable for scripts, the message is for people."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


class SkyfedError(Exception):
    """An error answer (its status, code, message and details), or a call that failed."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class ZoneUnreachable(SkyfedError):
    """No answer: nothing was reached, or the deadline passed (`timed_out`; the request
    may then have arrived and run)."""

    def __init__(self, url: str, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(0, "unreachable", f"cannot reach {url}: {reason}")
        self.reason = reason
        self.timed_out = timed_out


def read_answer(status: int, content: bytes, content_type: str | None = None) -> Any:
    """A 2xx answer's JSON (None when it has no body or is not JSON); any other answer
    raised as `SkyfedError`."""
    if 200 <= status < 300:
        return _json(content) if content and status != 204 else None
    raise error_from(status, content, content_type)


def error_from(status: int, content: bytes, content_type: str | None = None) -> SkyfedError:
    """The error an answer that is not a success stands for: the peer's own code, message
    and details when it answered in the one error shape, else a plain `http_error`."""
    data = _json(content) if len(content) <= MAX_ERROR_BODY else None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return SkyfedError(
            status,
            _printable(code, MAX_CODE) if isinstance(code, str) and code else "error",
            _printable(_scalar_text(error.get("message")), MAX_MESSAGE),
            error.get("details"),
        )
    # Not a skyfed error: say what came back, never what it said (a parent probing a URL
    # an admin gave it must not echo another service's answer).
    kind = _printable((content_type or "no content type").split(";")[0], 64)
    return SkyfedError(
        status,
        "http_error",
        f"HTTP {status}: not a skyfed answer ({kind}, {len(content)} bytes)",
    )


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        return None


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return ""  # absent, or a structure where text was due


def _printable(text: str, limit: int) -> str:
    """At most `limit` characters, control characters (terminal escapes) made spaces."""
    cut = text[:limit]
    return cut if cut.isprintable() else "".join(c if c.isprintable() else " " for c in cut)
