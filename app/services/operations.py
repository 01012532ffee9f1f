"""Operator tools: inspect, void, force-post, re-send, reconcile.

The CLI (`flask --app wsgi transfers ...`) and the admin routes call these
same functions. Every action needs a reason, is written to the audit trail
with the operator's name, refuses anything but `pending`, and is idempotent:
repeating an action that already took effect returns the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain.errors import NotFound, ValidationFailed
from app.domain.errors import NotPending as NotPending  # re-exported for callers
from app.domain.errors import ReasonRequired as ReasonRequired  # re-exported for callers
from app.domain.events import EventKind, StatusEvent
from app.domain.ledger_answers import LedgerState, agrees
from app.domain.transfer import (
    AuditActor,
    AuditEntry,
    FailureReason,
    OperatorAction,
    Status,
    Transfer,
    check_operator_action,
)
from app.services.dependencies import Dependencies
from app.services.settle import Settle
from app.services.submit import send_to_engine

# Far beyond any transfer's life, far inside what a datetime can subtract.
MAX_STUCK_AGE_SECONDS = 10 * 365 * 86_400
MAX_LIST_LIMIT = 1000


def stuck_age(seconds: int) -> timedelta:
    """`--older-than` / `older_than_seconds` as a timedelta, or INVALID_REQUEST."""
    if not 0 <= seconds <= MAX_STUCK_AGE_SECONDS:
        raise ValidationFailed(
            f"older than must be between 0 and {MAX_STUCK_AGE_SECONDS} seconds", field="older_than_seconds"
        )
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class TransferReport:
    transfer: Transfer
    ledger_state: LedgerState
    audit: list[AuditEntry]

    @property
    def agrees(self) -> bool:
        return agrees(self.transfer, self.ledger_state)


class OperatorService:
    def __init__(self, deps: Dependencies, settle: Settle) -> None:
        self.deps = deps
        self.settle = settle

    def _load(self, request_id: int) -> Transfer:
        """The transfer, or for a batch's id its first leg.

        Void, force-post and re-send act on a leg's whole batch (its legs are
        locked and resolved together), so a batch is named by its id or by any leg's.
        """
        transfer = self.deps.transfers.get(request_id)
        if transfer is None:
            batch = self.deps.batches.get_batch(request_id)
            transfer = self.deps.transfers.get(batch.request_ids[0]) if batch is not None else None
        if transfer is None:
            raise NotFound("no such transfer")
        return transfer

    def _state(self, transfer: Transfer) -> LedgerState:
        return self.deps.moves.state_of(transfer, self.deps.catalog.get(transfer.asset))

    def _with_batch(self, transfer: Transfer) -> list[Transfer]:
        """The transfer, or all the legs of its batch (which move together), in order."""
        if transfer.batch_id is None:
            return [transfer]
        batch = self.deps.batches.get_batch(transfer.batch_id)
        if batch is None:
            return [transfer]
        found = self.deps.transfers.get_many(batch.request_ids)
        return [found[i] for i in batch.request_ids if i in found]

    def show(self, request_id: int) -> TransferReport:
        transfer = self._load(request_id)
        return TransferReport(transfer, self._state(transfer), self.deps.transfers.audit_trail(request_id))

    def list_open(self, limit: int, keep: Callable[[Transfer], bool] = lambda _: True) -> list[Transfer]:
        """Up to `limit` open transfers that `keep` accepts, oldest id first; reads only, never moves the scanner."""
        found: list[Transfer] = []
        after = None
        while len(found) < limit:
            # A page may hold fewer open transfers than it read (settled or orphan rows): read on.
            page = self.deps.open_set.open_transfers(limit, after=after)
            found.extend(t for t in page.items if keep(t))
            if page.next_after is None:
                break
            after = page.next_after
        return found[:limit]

    def stuck(self, status: Status | None, older_than: timedelta, limit: int = 1000) -> list[Transfer]:
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValidationFailed(f"limit must be between 1 and {MAX_LIST_LIMIT}", field="limit")
        if not timedelta(0) <= older_than <= timedelta(seconds=MAX_STUCK_AGE_SECONDS):
            raise ValidationFailed("older than is out of range", field="older_than_seconds")
        cutoff = self.deps.clock() - older_than
        return self.list_open(limit, lambda t: (status is None or t.status == status) and t.created_at <= cutoff)

    @staticmethod
    def _check_reason(reason: str) -> str:
        if not reason or not reason.strip():
            raise ReasonRequired("a reason is required for every operator action")
        return reason.strip()

    def _already_done_by_operator(self, transfer: Transfer, wanted: Status) -> bool:
        if transfer.status != wanted:
            return False
        # Racing actors may each have recorded the same change; any operator's entry counts.
        trail = self.deps.transfers.audit_trail(transfer.request_id)
        return any(e.actor.is_operator and e.to_status == wanted for e in trail)

    def void(self, request_id: int, operator: str, reason: str) -> Transfer:
        reason = self._check_reason(reason)
        who = AuditActor.operator(operator)
        transfer = self._load(request_id)
        if self._already_done_by_operator(transfer, Status.FAILED):
            return transfer
        check_operator_action(OperatorAction.VOID, transfer.status, transfer.cause_unknown)
        return self.settle.void(transfer, who, f"void: {reason}", FailureReason.VOIDED_BY_OPERATOR)

    def force_post(self, request_id: int, operator: str, reason: str) -> Transfer:
        reason = self._check_reason(reason)
        transfer = self._load(request_id)
        if self._already_done_by_operator(transfer, Status.SUCCESS):
            return transfer
        check_operator_action(OperatorAction.FORCE_POST, transfer.status, transfer.cause_unknown)
        return self.settle.post(transfer, AuditActor.operator(operator), f"force-post: {reason}")

    def resend(self, request_id: int, operator: str, reason: str) -> Transfer:
        reason = self._check_reason(reason)
        transfer = self._load(request_id)
        check_operator_action(OperatorAction.RESEND, transfer.status, transfer.cause_unknown)
        # Re-sending is harmless by contract: the engine dedupes by request id.
        send_to_engine(self.deps, transfer)
        at, actor, why = self.deps.clock(), AuditActor.operator(operator), f"re-sent to the engine: {reason}"
        # The audit entry and its event are one write: neither is kept without the other.
        self.deps.transfers.append_audit(
            AuditEntry(
                request_id=transfer.request_id,
                at=at,
                actor=actor,
                from_status=transfer.status,
                to_status=transfer.status,
                reason=why,
            ),
            StatusEvent.about(EventKind.OPERATOR_ACTION, transfer, actor, why, at),
        )
        return transfer

    def reconcile(
        self, request_id: int | None = None, user_id: int | None = None, limit: int = 1000
    ) -> list[TransferReport]:
        """Store against ledger for one transfer, one user's latest, or everything open.

        For a leg of a batch, or a batch's id, every leg of the batch: they move together.
        """
        if request_id is not None:
            transfers = self._with_batch(self._load(request_id))
        elif user_id is not None:
            transfers = self.deps.transfers.history(user_id, min(limit, 100)).items
        else:
            transfers = self.list_open(limit)
        return [TransferReport(t, self._state(t), []) for t in transfers]


def report_row(report: TransferReport, now: datetime) -> dict[str, object]:
    transfer = report.transfer
    return {
        "request_id": str(transfer.request_id),
        "user_id": transfer.user_id,
        "asset": transfer.asset,
        "amount_units": str(transfer.amount),
        "store_status": transfer.status.value,
        "ledger_state": report.ledger_state.value,
        "agrees": report.agrees,
        "age_seconds": int((now - transfer.created_at).total_seconds()),
    }
