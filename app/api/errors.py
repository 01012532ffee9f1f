"""The HTTP edge of every error: which status each code answers, and the one body every error has.

`STATUS` maps each kind of error to its HTTP status, once: the domain's kinds
(app/domain/errors.py, which knows nothing of HTTP) and the errors of HTTP
itself, declared below. A class answers the status of its nearest listed
ancestor, and a code answers the status of the classes that declare it; a
code no class declares is a bug, answered as a 500 and caught by
tests/unit/test_error_codes.py, never guessed as a 400.

`render` builds every error answer, {"error": {"code", "message", "details"}}
with its status and headers: for the Flask handlers below, the rate limiter
(app/api/rate_limits.py), the loopback guard (app/__init__.py) and gunicorn's
own refusals (app/api/gunicorn_errors.py) alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from app.domain.errors import (
    Conflict,
    DomainError,
    NotFound,
    PermissionDenied,
    Refused,
    Unauthenticated,
    ValidationFailed,
)
from app.ports.errors import DependencyUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "2"


# Errors of HTTP itself, raised by the API layer (and gunicorn), never by the services.
class MethodNotAllowed(DomainError):
    code = "METHOD_NOT_ALLOWED"


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"


class UriTooLong(DomainError):
    code = "URI_TOO_LONG"


class UnsupportedMediaType(DomainError):
    code = "UNSUPPORTED_MEDIA_TYPE"


class ExpectationFailed(DomainError):
    """gunicorn: an Expect header other than 100-continue."""

    code = "EXPECTATION_FAILED"


class HeadersTooLarge(DomainError):
    """gunicorn: too many request headers, or one too long."""

    code = "HEADERS_TOO_LARGE"


class RateLimited(DomainError):
    """Too many requests from one caller to one route; retry after `Retry-After` seconds (app/api/rate_limits.py)."""

    code = "RATE_LIMITED"


class InternalError(DomainError):
    code = "INTERNAL_ERROR"


class TransferCodingNotImplemented(DomainError):
    """gunicorn: a Transfer-Encoding other than chunked."""

    code = "NOT_IMPLEMENTED"


class ServiceUnavailable(DomainError):
    """The API's answer to app.ports.errors.DependencyUnavailable."""

    code = "DEPENDENCY_UNAVAILABLE"


# The one home of HTTP statuses.
STATUS: dict[type[DomainError], int] = {
    ValidationFailed: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    PayloadTooLarge: 413,
    UriTooLong: 414,
    UnsupportedMediaType: 415,
    ExpectationFailed: 417,
    Refused: 422,
    RateLimited: 429,
    HeadersTooLarge: 431,
    InternalError: 500,
    TransferCodingNotImplemented: 501,
    ServiceUnavailable: 503,
}


def status_of(cls: type[DomainError]) -> int | None:
    """The status of a class: that of its nearest ancestor in STATUS (None for DomainError itself)."""
    for ancestor in cls.__mro__:
        if ancestor in STATUS:
            return STATUS[ancestor]
    return None


def _subclasses(cls: type[DomainError]) -> list[type[DomainError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def declared_codes(classes: Iterable[type[DomainError]]) -> dict[str, int]:
    """The codes these classes declare, with their statuses; a code declared with two statuses is a bug."""
    codes: dict[str, int] = {}
    for cls in classes:
        status = status_of(cls)
        if "code" not in vars(cls) or status is None:
            continue  # a kind (Conflict, Refused), not a code
        known = codes.setdefault(cls.code, status)
        if known != status:
            raise TypeError(f"error code {cls.code} declared with statuses {known} and {status}")
    return codes


def all_codes() -> dict[str, int]:
    """Every code a client can see, with its status."""
    return declared_codes(_subclasses(DomainError))


def status_of_code(code: str) -> int | None:
    """The status for a code, or None if no class declares it (a bug)."""
    return all_codes().get(code)


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def render(error: DomainError) -> ErrorAnswer:
    """The one error answer: status, headers and JSON body."""
    status = status_of_code(error.code)
    if status is None:
        log.error("error code %s has no HTTP status; answering 500", error.code)
        return render(InternalError("an internal error occurred"))
    payload = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    # As Flask's jsonify writes it: compact, keys sorted, ASCII.
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
    headers = {"Content-Type": "application/json"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    return ErrorAnswer(status, headers, body)


def error_response(error: DomainError) -> Response:
    """`render`, as a Flask response."""
    answer = render(error)
    return Response(answer.body, status=answer.status, headers=answer.headers)


# Werkzeug's own HTTP errors (routing, size), as the service's errors.
_HTTP_ERRORS: dict[int, tuple[type[DomainError], str]] = {
    404: (NotFound, "no such resource"),
    405: (MethodNotAllowed, "method not allowed"),
    413: (PayloadTooLarge, "the body is too large"),
    414: (UriTooLong, "the request URI is too long"),
    415: (UnsupportedMediaType, "the body must be JSON, sent with Content-Type: application/json"),
}


def http_error_response(exc: HTTPException) -> Response:
    """An HTTPException (werkzeug's, or webargs' validation abort) as the service's error."""
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    error: DomainError
    if status in (400, 422):
        # webargs/marshmallow: missing, unknown or mistyped fields.
        fields = {"fields": data.get("messages", {})} if data else {}
        error = ValidationFailed("the request is not valid", **fields)
    elif status in _HTTP_ERRORS:
        cls, message = _HTTP_ERRORS[status]
        error = cls(message)
    elif status < 500:
        error = ValidationFailed(exc.description or "the request is not valid")
    else:
        error = InternalError("an internal error occurred")
    response = error_response(error)
    for name, value in exc.get_headers():
        if name.lower() == "allow":  # 405 names the methods the path has
            response.headers["Allow"] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        return error_response(exc)

    # HTTPException is answered by app.api.openapi.Api.handle_http_exception, flask-smorest's own hook.

    @app.errorhandler(DependencyUnavailable)
    def _dependency(exc: DependencyUnavailable) -> Response:
        log.warning("dependency unavailable: %s", exc)
        details: dict[str, Any] = {"backend": exc.backend}
        if exc.request_id is not None:
            details["request_id"] = str(exc.request_id)
        return error_response(
            ServiceUnavailable("a backend is unavailable; retry with the same Idempotency-Key", **details)
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(InternalError("an internal error occurred"))
