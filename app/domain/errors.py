"""Every error code a client can see, each with its HTTP status beside it: the one home of both.

A class per code. Raise the class, or (older call sites) `ValidationFailed(msg,
code="X")` with a code some class here declares. The API answers
`http_status_of(code)`; a code no class declares is a bug, answered as a 500
and caught by tests/unit/test_error_codes.py, never guessed as a 400.

Add a new code by adding a class here (and a row in docs/API.md's error table:
a test checks the two agree).
"""

from __future__ import annotations

from typing import Any, ClassVar

# code -> HTTP status, filled by DomainError.__init_subclass__.
_STATUS_OF_CODE: dict[str, int] = {}


def http_status_of(code: str) -> int | None:
    """The status for a code, or None if no class declares it (a bug)."""
    return _STATUS_OF_CODE.get(code)


def all_codes() -> dict[str, int]:
    return dict(_STATUS_OF_CODE)


def declare_code(code: str, http_status: int) -> None:
    """Register a code; two classes may share one only with the same status."""
    known = _STATUS_OF_CODE.setdefault(code, http_status)
    if known != http_status:
        raise TypeError(f"error code {code} declared with statuses {known} and {http_status}")


class DomainError(Exception):
    """A rule of the business was broken; `code` is stable and client-facing."""

    code: ClassVar[str] = "INVALID_REQUEST"
    http_status: ClassVar[int] = 400

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare_code(cls.code, cls.http_status)

    def __init__(self, message: str, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code  # type: ignore[misc]  # per-instance override of the class default
        self.message = message
        self.details = details


declare_code(DomainError.code, DomainError.http_status)


# 400: the request is malformed or breaks a rule of the input.
class ValidationFailed(DomainError):
    code = "INVALID_REQUEST"
    http_status = 400


class InvalidAmount(ValidationFailed):
    code = "INVALID_AMOUNT"


class InvalidPrecision(ValidationFailed):
    code = "INVALID_PRECISION"


class AmountTooSmall(ValidationFailed):
    code = "AMOUNT_TOO_SMALL"


class AmountTooLarge(ValidationFailed):
    code = "AMOUNT_TOO_LARGE"


class UnsupportedAsset(ValidationFailed):
    code = "UNSUPPORTED_ASSET"


class AssetMismatch(ValidationFailed):
    code = "ASSET_MISMATCH"


class InvalidAccountType(ValidationFailed):
    code = "INVALID_ACCOUNT_TYPE"


class SameAccount(ValidationFailed):
    code = "SAME_ACCOUNT"


class ReasonRequired(ValidationFailed):
    code = "INVALID_REQUEST"


# 401 / 403: who is asking, and may they.
class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"
    http_status = 403


# 404
class NotFound(DomainError):
    code = "NOT_FOUND"
    http_status = 404


# 409: the request conflicts with the state of the resource.
class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"
    http_status = 409


class NotPending(DomainError):
    code = "TRANSFER_NOT_PENDING"
    http_status = 409


class IllegalTransition(DomainError):
    code = "ILLEGAL_TRANSITION"
    http_status = 409


# 422: well-formed, refused by the ledger; the transfer is recorded failed.
class InsufficientBalance(DomainError):
    code = "INSUFFICIENT_BALANCE"
    http_status = 422

    # One text for the first answer and its replays (app/api/transfers.py).
    MESSAGE = "the source account does not hold enough available funds"


# Errors of HTTP itself, raised by the API layer (never by the services).
class MethodNotAllowed(DomainError):
    code = "METHOD_NOT_ALLOWED"
    http_status = 405


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class UriTooLong(DomainError):
    code = "URI_TOO_LONG"
    http_status = 414


class ExpectationFailed(DomainError):
    """gunicorn: an Expect header other than 100-continue."""

    code = "EXPECTATION_FAILED"
    http_status = 417


class HeadersTooLarge(DomainError):
    """gunicorn: too many request headers, or one too long."""

    code = "HEADERS_TOO_LARGE"
    http_status = 431


class TransferCodingNotImplemented(DomainError):
    """gunicorn: a Transfer-Encoding other than chunked."""

    code = "NOT_IMPLEMENTED"
    http_status = 501


class UnsupportedMediaType(DomainError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class InternalError(DomainError):
    code = "INTERNAL_ERROR"
    http_status = 500


class ServiceUnavailable(DomainError):
    """The API's answer to app.ports.errors.DependencyUnavailable."""

    code = "DEPENDENCY_UNAVAILABLE"
    http_status = 503


# -- daily transfer limits (app/domain/limits.py, docs/ledger.md) ----------


class DailyLimitExceeded(DomainError):
    """The day's quota for this asset and direction cannot hold the amount; `details` has what remains."""

    code = "DAILY_LIMIT_EXCEEDED"
    http_status = 422


class OverrideConflict(DomainError):
    """Operators kept claiming the same override version at once; nothing was changed."""

    code = "OVERRIDE_CONFLICT"
    http_status = 409


class RateLimited(DomainError):
    """Too many transfer requests from one user; retry after `Retry-After` seconds."""

    code = "RATE_LIMITED"
    http_status = 429
