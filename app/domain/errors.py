"""Every error the domain can refuse with: a class per stable, client-facing code.

A class per code. Raise the class, or (older call sites) `ValidationFailed(msg,
code="X")` with a code some class here declares. The domain says what kind of
failure it is, by the base class (ValidationFailed, Unauthenticated,
PermissionDenied, NotFound, Conflict, Refused); it knows nothing of HTTP. The
HTTP edge, app/api/errors.py, maps each kind to a status, once, and a code no
class declares is answered as a 500 there, never guessed (tests/unit/test_error_codes.py).

Add a new code by adding a class here (and a row in docs/API.md's error table:
a test checks the two agree).
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A rule of the business was broken; `code` is stable and client-facing."""

    code: ClassVar[str] = "INVALID_REQUEST"

    def __init__(self, message: str, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code  # type: ignore[misc]  # per-instance override of the class default
        self.message = message
        self.details = details


# The request is malformed or breaks a rule of the input.
class ValidationFailed(DomainError):
    code = "INVALID_REQUEST"


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


# Who is asking, and may they.
class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    """The request conflicts with the state of the resource; a kind, no code of its own."""


class IdempotencyKeyReused(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"


class NotPending(Conflict):
    code = "TRANSFER_NOT_PENDING"


class IllegalTransition(Conflict):
    code = "ILLEGAL_TRANSITION"


class OverrideConflict(Conflict):
    """Operators kept claiming the same override version at once; nothing was changed."""

    code = "OVERRIDE_CONFLICT"


class Refused(DomainError):
    """Well-formed, refused by the ledger; the transfer is recorded failed. A kind, no code of its own."""


class InsufficientBalance(Refused):
    code = "INSUFFICIENT_BALANCE"

    # One text for the first answer and its replays (app/api/transfers.py).
    MESSAGE = "the source account does not hold enough available funds"


class DailyLimitExceeded(Refused):
    """The day's quota for this asset and direction cannot hold the amount (app/domain/limits.py,
    docs/ledger.md); `details` has what remains."""

    code = "DAILY_LIMIT_EXCEEDED"
