"""One error shape for every failure: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from app.domain.errors import DomainError, http_status_of
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


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    if status in (400, 422):
        # webargs/marshmallow: malformed JSON, missing, unknown or mistyped fields.
        return error_response(
            400, "INVALID_REQUEST", "the request is not valid", {"fields": data.get("messages", {})} if data else {}
        )
    if status == 404:
        return error_response(404, "NOT_FOUND", "no such resource")
    if status == 405:
        return error_response(405, "METHOD_NOT_ALLOWED", "method not allowed")
    if status == 415:
        return error_response(400, "INVALID_REQUEST", "the body must be JSON")
    return error_response(status, "HTTP_ERROR", exc.name)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        status = http_status_of(exc.code)
        if status is None:
            # A code app/domain/errors.py does not declare is a bug, not a guess at 400.
            log.error("error code %s has no HTTP status; answering 500", exc.code)
            return error_response(500, "INTERNAL_ERROR", "an internal error occurred")
        return error_response(status, exc.code, exc.message, exc.details)

    @app.errorhandler(DependencyUnavailable)
    def _dependency(exc: DependencyUnavailable) -> Response:
        log.warning("dependency unavailable: %s", exc)
        details: dict[str, Any] = {"backend": exc.backend}
        if exc.request_id is not None:
            details["request_id"] = str(exc.request_id)
        return error_response(
            503, "DEPENDENCY_UNAVAILABLE", "a backend is unavailable; retry with the same Idempotency-Key", details
        )

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return _http_error(exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "INTERNAL_ERROR", "an internal error occurred")
