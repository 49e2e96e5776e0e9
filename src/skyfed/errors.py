"""Errors the service raises; each answers in the one error shape (`wire.error_body`)
with a 4xx or 503. Callers of a zone see them as `wire.SkyfedError`."""

from __future__ import annotations

from typing import Any

from skyfed.wire import error_body


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class MethodNotAllowed(AppError):
    status = 405
    code = "method_not_allowed"


class NotAcceptable(AppError):
    status = 406
    code = "not_acceptable"


class Conflict(AppError):
    status = 409
    code = "conflict"


class LengthRequired(AppError):
    status = 411
    code = "length_required"


class PreconditionFailed(AppError):
    status = 412
    code = "precondition_failed"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class Invalid(AppError):
    status = 422
    code = "validation_error"


class TooManyRequests(AppError):
    """Refused for now; `retry_after` says in how many seconds to try again."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after + 0.999))


class Unsupported(AppError):
    """A request the server does not implement (501), such as a transfer coding."""

    status = 501
    code = "not_implemented"


class Unavailable(AppError):
    status = 503
    code = "unavailable"
