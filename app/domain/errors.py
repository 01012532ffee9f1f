"""Errors the domain raises, each with a stable code the API exposes."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule of the business was broken; `code` is stable and client-facing."""

    code = "INVALID_REQUEST"

    def __init__(self, message: str, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details = details


class ValidationFailed(DomainError):
    code = "INVALID_REQUEST"


class IllegalTransition(DomainError):
    code = "ILLEGAL_TRANSITION"


# -- daily transfer limits (app/domain/limits.py, docs/ledger.md) ----------


class DailyLimitExceeded(DomainError):
    """The day's quota for this asset and direction cannot hold the amount; `details` has what remains."""

    code = "DAILY_LIMIT_EXCEEDED"
    http_status = 422


class OverrideConflict(DomainError):
    """Operators kept claiming the same override version at once; nothing was changed."""

    code = "OVERRIDE_CONFLICT"
    http_status = 409
