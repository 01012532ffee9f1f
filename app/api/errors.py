"""One error shape for every failure: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from app.domain.errors import DomainError
from app.ports.errors import DependencyUnavailable

log = logging.getLogger(__name__)

STATUS_OF_CODE = {
    "INVALID_REQUEST": 400,
    "INVALID_AMOUNT": 400,
    "INVALID_PRECISION": 400,
    "AMOUNT_TOO_SMALL": 400,
    "AMOUNT_TOO_LARGE": 400,
    "UNSUPPORTED_ASSET": 400,
    "ASSET_MISMATCH": 400,
    "INVALID_ACCOUNT_TYPE": 400,
    "SAME_ACCOUNT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "IDEMPOTENCY_KEY_REUSED": 409,
    "TRANSFER_NOT_PENDING": 409,
    "ILLEGAL_TRANSITION": 409,
    "INSUFFICIENT_BALANCE": 422,
    "DAILY_LIMIT_EXCEEDED": 422,
    "OVERRIDE_CONFLICT": 409,
    "RATE_LIMITED": 429,
    "DEPENDENCY_UNAVAILABLE": 503,
}

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
        return error_response(STATUS_OF_CODE.get(exc.code, 400), exc.code, exc.message, exc.details)

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
