"""One error shape for every failure: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from app.domain.errors import (
    DomainError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    UriTooLong,
    http_status_of,
)
from app.ports.errors import DependencyUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "2"


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


# Werkzeug's own HTTP errors (routing, size) in the one shape; the class of each code is in app/domain/errors.py.
_HTTP_ERRORS: dict[int, tuple[type[DomainError], str]] = {
    404: (NotFound, "no such resource"),
    405: (MethodNotAllowed, "method not allowed"),
    413: (PayloadTooLarge, "the body is too large"),
    414: (UriTooLong, "the request URI is too long"),
    415: (UnsupportedMediaType, "the body must be JSON, sent with Content-Type: application/json"),
}


def http_error_response(exc: HTTPException) -> Response:
    """An HTTPException (werkzeug's, or webargs' validation abort) as the service's error shape."""
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    if status in (400, 422):
        # webargs/marshmallow: missing, unknown or mistyped fields.
        return error_response(
            400, "INVALID_REQUEST", "the request is not valid", {"fields": data.get("messages", {})} if data else {}
        )
    known = _HTTP_ERRORS.get(status)
    if known is not None:
        cls, message = known
        response = error_response(cls.http_status, cls.code, message)
    elif status < 500:
        response = error_response(400, "INVALID_REQUEST", exc.description or "the request is not valid")
    else:
        response = error_response(500, "INTERNAL_ERROR", "an internal error occurred")
    for name, value in exc.get_headers():
        if name.lower() == "allow":  # 405 names the methods the path has
            response.headers["Allow"] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        status = http_status_of(exc.code)
        if status is None:
            # A code app/domain/errors.py does not declare is a bug, not a guess at 400.
            log.error("error code %s has no HTTP status; answering 500", exc.code)
            return error_response(InternalError.http_status, InternalError.code, "an internal error occurred")
        return error_response(status, exc.code, exc.message, exc.details)

    # HTTPException is answered by app.api.openapi.Api.handle_http_exception, flask-smorest's own hook.

    @app.errorhandler(DependencyUnavailable)
    def _dependency(exc: DependencyUnavailable) -> Response:
        log.warning("dependency unavailable: %s", exc)
        details: dict[str, Any] = {"backend": exc.backend}
        if exc.request_id is not None:
            details["request_id"] = str(exc.request_id)
        return error_response(
            ServiceUnavailable.http_status,
            ServiceUnavailable.code,
            "a backend is unavailable; retry with the same Idempotency-Key",
            details,
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(InternalError.http_status, InternalError.code, "an internal error occurred")
