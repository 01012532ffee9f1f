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
