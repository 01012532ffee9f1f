"""The balance authority. Operations are in domain terms; ids are derived inside."""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.domain.ledger_answers import LedgerState as LedgerState  # re-exported: the ledger reports them
from app.domain.ledger_answers import LockOutcome as LockOutcome
from app.domain.limits import EffectiveLimit, QuotaBalance, QuotaKey, QuotaOpening
from app.domain.money import Asset
from app.domain.transfer import AccountType, Transfer
from app.ports.backend import Backend


class ResolveOutcome(enum.Enum):
    POSTED = "posted"  # by this call or an earlier one
    VOIDED = "voided"  # by this call or an earlier one
    NOT_LOCKED = "not_locked"  # there is no pending lock to resolve


class FenceOutcome(enum.Enum):
    FENCED = "fenced"  # now, or by an earlier call
    ALREADY_LOCKED = "already_locked"  # the lock exists; it cannot be fenced


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


@dataclass(frozen=True)
class BatchLockOutcome:
    """How a batch's one linked lock went; `leg` is the index of the leg that refused it."""

    outcome: LockOutcome
    leg: int | None = None


@dataclass(frozen=True)
class BatchLeg:
    """One leg of a batch lock: the transfer, its asset and its day's limit (as for `lock`)."""

    transfer: Transfer
    asset: Asset
    limit: LimitSource


# The day's limit, or how to get it (a store read, only when a quota must be opened).
LimitSource = EffectiveLimit | Callable[[], EffectiveLimit]


@dataclass(frozen=True)
class IdempotencyClaim:
    """Who holds an idempotency key: the first id of the block it names and the body's fingerprint."""

    request_id: int
    fingerprint: str


class IdempotencyKeys(abc.ABC):
    """Claims of Idempotency-Keys, kept by the balance authority: a claim is never lost or taken twice."""

    @abc.abstractmethod
    def claim_idempotency_key(self, user_id: int, key: str, claim: IdempotencyClaim) -> IdempotencyClaim | None:
        """Claim the key for `claim`, for good: None if claimed now (or before by this very claim), else the holder.

        The fingerprint is 32 hexadecimal digits (128 bits: TigerBeetle's user_data_128).
        """


class LedgerAccounts(abc.ABC):
    """Every method is idempotent: a retry with the same ids never moves money twice."""

    @abc.abstractmethod
    def open_accounts(self, user_id: int, asset: Asset) -> None: ...

    @abc.abstractmethod
    def deposit(self, deposit_id: int, user_id: int, asset: Asset, amount: int) -> DepositOutcome:
        """Credit the user's funding account from the asset's system account."""

    @abc.abstractmethod
    def balances(self, user_id: int, assets: list[Asset]) -> list[AccountBalance]: ...


class LedgerMoves(abc.ABC):
    """Locks and their resolution. Idempotent: a retry with the same ids never moves money twice."""

    @abc.abstractmethod
    def lock(self, transfer: Transfer, asset: Asset, limit: LimitSource) -> LockOutcome:
        """Create the pending transfer linked to a pending debit of its day's quota, in one request.

        Both land or neither does. The no-overdraft flags are the checks: the
        source account's is the balance check, the quota account's the daily
        limit. `limit` (or what it returns, called only then) opens the day's
        quota if this process has not seen it open yet (`open_quota`: one
        more request, once per quota and process).
        """

    @abc.abstractmethod
    def lock_batch(self, legs: Sequence[BatchLeg]) -> BatchLockOutcome:
        """Lock every leg (each its move and quota debit) in ONE linked chain: all lock or none does.

        A refusal names the first leg the ledger refused (its index) and why:
        INSUFFICIENT_BALANCE, LIMIT_EXCEEDED, or FENCED (the scanner fenced
        that leg's id, so the batch can never lock). A retry of a batch that
        locked answers LOCKED.
        """

    @abc.abstractmethod
    def resolve_many(self, resolutions: Sequence[Resolution]) -> list[ResolveOutcome]:
        """Post or void each pending lock together with its quota debit, in one request to the ledger.

        A void also pays, from what it frees, what a lowering still owes its
        quota (see `LedgerQuotas.adjust_quota`). One outcome per resolution. A
        lock without a quota debit (made before limits existed) is resolved alone.
        """

    @abc.abstractmethod
    def resolve_batch(self, resolutions: Sequence[Resolution]) -> list[ResolveOutcome]:
        """Post or void every leg of a batch in one request, all or nothing.

        Legs are only ever locked and resolved together, so they are always
        in the same ledger state; adapters link the resolutions (TigerBeetle)
        or apply them in one transaction (embedded).
        """

    @abc.abstractmethod
    def fence(self, transfer: Transfer, asset: Asset) -> FenceOutcome:
        """Make sure a lock for this transfer can never succeed from now on."""

    @abc.abstractmethod
    def state_of(self, transfer: Transfer, asset: Asset) -> LedgerState: ...


class LedgerQuotas(abc.ABC):
    """The daily quota accounts (docs/ledger.md)."""

    @abc.abstractmethod
    def open_quota(self, key: QuotaKey, limit: int, version: int) -> None:
        """Create the day's quota account and credit it `limit`, the limit of override `version` (0: default).

        Idempotent; if the quota is already open (with whatever limit), nothing changes.
        """

    @abc.abstractmethod
    def quota_opening(self, key: QuotaKey) -> QuotaOpening | None:
        """The override version and limit the quota was opened with; None if it is not open."""

    @abc.abstractmethod
    def adjust_quota(self, key: QuotaKey, adjustments: Sequence[tuple[int, int]]) -> None:
        """Apply (version, delta) changes of the limit to an open quota, in one request.

        A lowering is recorded whole and takes at once what remains; the rest
        is owed, and taken first from whatever a later void or raise frees. A
        raise pays what is owed first. So the quota always lets a lock take
        exactly max(0, limit - posted - pending) (QuotaBalance). Each version
        has its own transfer ids, so applying a version twice changes nothing.
        """

    @abc.abstractmethod
    def quota_balances(self, keys: Sequence[QuotaKey]) -> dict[QuotaKey, QuotaBalance]:
        """The quota accounts that are open, by key."""


class Ledger(LedgerAccounts, LedgerMoves, LedgerQuotas, IdempotencyKeys, Backend):
    """Every ledger port, as one ledger adapter implements them.

    For the composition root and the ledger contract suite only: handlers
    and services take the narrow ports above, through `Dependencies`.
    """
