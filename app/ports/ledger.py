"""The balance authority. Operations are in domain terms; ids are derived inside."""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from app.domain.money import Asset
from app.domain.transfer import AccountType, Transfer


class LockOutcome(enum.Enum):
    LOCKED = "locked"  # now, or by an earlier attempt with the same id
    INSUFFICIENT_BALANCE = "insufficient_balance"
    FENCED = "fenced"  # the id was fenced by the scanner; it can never lock


class ResolveOutcome(enum.Enum):
    POSTED = "posted"  # by this call or an earlier one
    VOIDED = "voided"  # by this call or an earlier one
    NOT_LOCKED = "not_locked"  # there is no pending lock to resolve


class FenceOutcome(enum.Enum):
    FENCED = "fenced"  # now, or by an earlier call
    ALREADY_LOCKED = "already_locked"  # the lock exists; it cannot be fenced


class LedgerState(enum.Enum):
    ABSENT = "absent"
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    FENCED = "fenced"


class DepositOutcome(enum.Enum):
    CREDITED = "credited"  # now, or by an earlier call with the same id
    CONFLICT = "conflict"  # the same id was used for a different deposit


@dataclass(frozen=True)
class AccountBalance:
    asset: str
    account_type: AccountType
    available: int
    locked: int


@dataclass(frozen=True)
class Resolution:
    """Post (`post=True`) or void the pending lock of `transfer`."""

    transfer: Transfer
    asset: Asset
    post: bool


class Ledger(abc.ABC):
    """Every method is idempotent: a retry with the same ids never moves money twice."""

    @abc.abstractmethod
    def open_accounts(self, user_id: int, asset: Asset) -> None: ...

    @abc.abstractmethod
    def deposit(self, deposit_id: int, user_id: int, asset: Asset, amount: int) -> DepositOutcome:
        """Credit the user's funding account from the asset's system account."""

    @abc.abstractmethod
    def lock(self, transfer: Transfer, asset: Asset) -> LockOutcome:
        """Create the pending transfer; the no-overdraft flag is the balance check."""

    @abc.abstractmethod
    def resolve_many(self, resolutions: Sequence[Resolution]) -> list[ResolveOutcome]:
        """Post or void each pending lock, in one request to the ledger; one outcome per resolution."""

    def post(self, transfer: Transfer, asset: Asset) -> ResolveOutcome:
        return self.resolve_many([Resolution(transfer, asset, post=True)])[0]

    def void(self, transfer: Transfer, asset: Asset) -> ResolveOutcome:
        return self.resolve_many([Resolution(transfer, asset, post=False)])[0]

    @abc.abstractmethod
    def fence(self, transfer: Transfer, asset: Asset) -> FenceOutcome:
        """Make sure a lock for this transfer can never succeed from now on."""

    @abc.abstractmethod
    def state_of(self, transfer: Transfer, asset: Asset) -> LedgerState: ...

    @abc.abstractmethod
    def balances(self, user_id: int, assets: list[Asset]) -> list[AccountBalance]: ...

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise DependencyUnavailable unless the ledger answers."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; adapters that hold none need not override."""
