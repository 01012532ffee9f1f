"""What the ledger answers, in the domain's terms, and what the service records for each answer.

The ledger is the balance authority; the store records what the service
decided. Two tables live here, each once: the failure cause a refused lock
records (single transfers and batches alike), and the ledger states each
stored status agrees with (the scanner, reconciliation and operators'
reports). Where store and ledger disagree the ledger is right, and someone must look.
"""

from __future__ import annotations

import enum

from app.domain.transfer import FailureReason, Status, Transfer


class LockOutcome(enum.Enum):
    LOCKED = "locked"  # now, or by an earlier attempt with the same id
    INSUFFICIENT_BALANCE = "insufficient_balance"
    FENCED = "fenced"  # the id was fenced by the scanner; it can never lock
    LIMIT_EXCEEDED = "limit_exceeded"  # the day's quota cannot hold it; final for this request id


# A refused lock is recorded failed with its cause; a batch's other legs with BATCH_FAILED.
REFUSAL_CAUSES: dict[LockOutcome, FailureReason] = {
    LockOutcome.INSUFFICIENT_BALANCE: FailureReason.INSUFFICIENT_BALANCE,
    LockOutcome.LIMIT_EXCEEDED: FailureReason.DAILY_LIMIT_EXCEEDED,
}


class LedgerState(enum.Enum):
    """Where a transfer's lock stands in the ledger."""

    ABSENT = "absent"
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    FENCED = "fenced"


AGREEING_STATES: dict[Status, frozenset[LedgerState]] = {
    # Not locked yet (the submit is under way), or locked and `pending` not yet written.
    Status.REQUESTING: frozenset({LedgerState.ABSENT, LedgerState.PENDING}),
    Status.PENDING: frozenset({LedgerState.PENDING}),
    Status.SUCCESS: frozenset({LedgerState.POSTED}),
    # Voided, fenced, or never locked (a refused lock): no money moved and none is held.
    Status.FAILED: frozenset({LedgerState.ABSENT, LedgerState.VOIDED, LedgerState.FENCED}),
}


def agrees(transfer: Transfer, state: LedgerState) -> bool:
    return state in AGREEING_STATES[transfer.status]
