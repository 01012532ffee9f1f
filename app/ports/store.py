"""Where transfer records, idempotency keys and the audit trail live."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

from app.domain.transfer import AuditEntry, Status, Transfer


@dataclass(frozen=True)
class IdempotencyClaim:
    """Who holds an idempotency key: the request it names and the body's fingerprint."""

    request_id: int
    fingerprint: str


@dataclass(frozen=True)
class HistoryPage:
    items: list[Transfer]
    next_cursor: str | None


class TransferStore(abc.ABC):
    @abc.abstractmethod
    def claim_idempotency_key(self, user_id: int, key: str, claim: IdempotencyClaim) -> IdempotencyClaim | None:
        """Claim the key for `claim`. Return None if claimed now, else the holder."""

    @abc.abstractmethod
    def reassign_idempotency_key(
        self, user_id: int, key: str, expected_request_id: int, claim: IdempotencyClaim
    ) -> IdempotencyClaim | None:
        """Point the key at `claim` if it still names `expected_request_id`.

        Return None if it was moved, else whoever holds the key now.
        """

    @abc.abstractmethod
    def insert(self, transfer: Transfer) -> bool:
        """Insert if no transfer has this request id. False if one already does."""

    @abc.abstractmethod
    def get(self, request_id: int) -> Transfer | None: ...

    @abc.abstractmethod
    def transition(
        self,
        transfer: Transfer,
        target: Status,
        *,
        actor: str,
        reason: str,
        now: datetime,
        failure_reason: str | None = None,
    ) -> Transfer | None:
        """Move `transfer` to `target` only if its stored status is still `transfer.status`.

        Returns the updated transfer, or None if another actor changed it first.
        Every successful change is written to the audit trail.
        """

    @abc.abstractmethod
    def history(
        self,
        user_id: int,
        limit: int,
        cursor: str | None = None,
        status: Status | None = None,
        asset: str | None = None,
    ) -> HistoryPage:
        """The user's transfers, newest first."""

    @abc.abstractmethod
    def open_transfers(self, limit: int = 1000, after: int | None = None) -> list[Transfer]:
        """Transfers not yet `success` or `failed`, oldest first, with request ids above `after`."""

    @abc.abstractmethod
    def audit_trail(self, request_id: int) -> list[AuditEntry]: ...

    @abc.abstractmethod
    def append_audit(self, entry: AuditEntry) -> None:
        """Record an action that changed no status (an operator's re-send, say)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise DependencyUnavailable unless the store answers."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; adapters that hold none need not override."""
