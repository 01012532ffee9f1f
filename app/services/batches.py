"""Atomic batch transfers: submit, and read a batch with its legs.

The path of a batch, step by step (each step idempotent, as for a single transfer):

1. the Idempotency-Key, if any, is claimed for the batch's id;
2. the batch record and every leg, `requesting`, are written (`record_batch`);
3. all legs lock in ONE linked ledger request: every leg locks or none does;
4. a refusal records every leg `failed` (the refused leg with its cause, the
   others BATCH_FAILED) and names the leg; a lock records every leg `pending`
   while the batch goes to the engine as one message.

Settlement, the scanner and operator tools resolve a leg's batch as a whole
(`TransferService._resolve_batch_of`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from app.domain.batch import Batch, BatchCommand, BatchStatus, batch_status
from app.domain.errors import DomainError, InsufficientBalance, NotFound
from app.domain.ids import block_ids
from app.domain.transfer import API, FailureReason, Status, Transfer
from app.observability import metrics as observe
from app.ports.errors import DependencyUnavailable
from app.ports.ledger import BatchLeg, LimitSource, LockOutcome
from app.ports.store import StatusChange
from app.services.crash_points import crash_point
from app.services.transfers import TransferService

# What a refused leg's lock outcome records, and the others' reason.
_REFUSALS = {
    LockOutcome.INSUFFICIENT_BALANCE: FailureReason.INSUFFICIENT_BALANCE,
    LockOutcome.LIMIT_EXCEEDED: FailureReason.DAILY_LIMIT_EXCEEDED,
}


@dataclass(frozen=True)
class BatchView:
    batch: Batch
    legs: list[Transfer | None]  # None: a leg not recorded (its first attempt died before)

    @property
    def status(self) -> BatchStatus:
        return batch_status(self.legs)

    def refused_leg(self) -> tuple[int, Transfer] | None:
        """The leg whose own cause failed the batch (not BATCH_FAILED), with its index."""
        for index, leg in enumerate(self.legs):
            if leg is not None and leg.failure_reason in (
                FailureReason.INSUFFICIENT_BALANCE,
                FailureReason.DAILY_LIMIT_EXCEEDED,
            ):
                return index, leg
        return None


@dataclass(frozen=True)
class BatchSubmitResult:
    view: BatchView
    replayed: bool


class BatchService:
    def __init__(self, transfers: TransferService) -> None:
        self.transfers = transfers
        self.deps = transfers.deps

    # -- submit ---------------------------------------------------------------

    def submit(self, command: BatchCommand, idempotency_key: str | None = None) -> BatchSubmitResult:
        result = self._submit(command, idempotency_key)
        for leg in result.view.legs:
            if leg is not None:
                observe.accepted(leg, result.replayed)
        return result

    def _submit(self, command: BatchCommand, idempotency_key: str | None) -> BatchSubmitResult:
        service = self.transfers
        ids_needed = 1 + len(command.legs)
        if idempotency_key is None:
            batch, legs = self._new(service.ids.next_block(ids_needed), command, None)
            return BatchSubmitResult(self._record_lock_and_send(batch, legs), replayed=False)
        batch_id, claimed_before = service.claim_key(
            command.user_id, idempotency_key, command.fingerprint(), ids_needed
        )
        if not claimed_before:
            batch, legs = self._new(batch_id, command, idempotency_key)
            return BatchSubmitResult(self._record_lock_and_send(batch, legs), replayed=False)
        recorded = self.deps.batches.get_batch(batch_id)
        if recorded is None:
            # The key is claimed but its batch is not recorded: the first
            # attempt died in between (nothing was locked: the lock needs the
            # records) or is still running. Carrying on with the ids the key
            # names (the legs' too) is safe: every step is idempotent.
            fresh, legs = self._new(batch_id, command, idempotency_key)
            return BatchSubmitResult(self._record_lock_and_send(fresh, legs), replayed=True)
        batch = recorded
        view = self.view(batch)
        if all(leg is not None and leg.status != Status.REQUESTING for leg in view.legs):
            return BatchSubmitResult(view, replayed=True)
        # Recorded (perhaps in part) but not finished: carry on with the same ids; every step is idempotent.
        legs = [
            leg if leg is not None else Transfer.new(rid, cmd, batch.created_at, idempotency_key, batch.batch_id)
            for leg, rid, cmd in zip(view.legs, batch.request_ids, command.legs, strict=True)
        ]
        return BatchSubmitResult(self._record_lock_and_send(batch, legs), replayed=True)

    def _new(self, batch_id: int, command: BatchCommand, key: str | None) -> tuple[Batch, list[Transfer]]:
        service = self.transfers
        now = service.clock()
        # Each leg its own request id, the ones after the batch's in its
        # block; legs carry the batch's key only as a note (the key is
        # claimed once, for the batch).
        _, *leg_ids = block_ids(batch_id, 1 + len(command.legs))
        legs = [Transfer.new(i, leg, now, key, batch_id) for i, leg in zip(leg_ids, command.legs, strict=True)]
        batch = Batch(
            batch_id=batch_id,
            user_id=command.user_id,
            request_ids=tuple(leg.request_id for leg in legs),
            created_at=now,
            idempotency_key=key,
            fingerprint=command.fingerprint(),
        )
        return batch, legs

    def _record_lock_and_send(self, batch: Batch, legs: list[Transfer]) -> BatchView:
        service = self.transfers
        try:
            self.deps.batches.record_batch(batch, [leg for leg in legs if leg.status == Status.REQUESTING])
            crash_point("after_batch_record")
            ledger_legs = [BatchLeg(leg, service.catalog.get(leg.asset), self._limit_source(leg)) for leg in legs]
            outcome = self.deps.moves.lock_batch(ledger_legs)
            crash_point("after_batch_lock")
            open_legs = [leg for leg in legs if leg.status == Status.REQUESTING]
            if outcome.outcome in _REFUSALS:
                assert outcome.leg is not None
                self._record_refusal(open_legs, legs[outcome.leg], _REFUSALS[outcome.outcome])
                raise self._refusal(batch, outcome.leg, legs[outcome.leg], _REFUSALS[outcome.outcome])
            if outcome.outcome == LockOutcome.FENCED:
                # The scanner gave up on a leg of this batch before the lock: it can never lock.
                return self.view(batch)
            now = service.clock()
            changes = [StatusChange(leg, leg.moved_to(Status.PENDING, now), API, "funds locked") for leg in open_legs]
            recorded = self.deps.transfers.start_recording(changes)
            pending = [c.after for c in changes] + [leg for leg in legs if leg.status != Status.REQUESTING]
            by_id = {leg.request_id: leg for leg in pending}
            try:
                service.send_batch_to_engine([by_id[leg.request_id] for leg in legs])
            except BaseException:
                with contextlib.suppress(Exception):
                    recorded()
                raise
            recorded()
            crash_point("after_store_update")
            for change in changes:
                observe.reached(change.before, change.after, str(API))
            return BatchView(batch, [by_id[leg.request_id] for leg in legs])
        except DependencyUnavailable as exc:
            exc.request_id = batch.batch_id
            raise

    def _limit_source(self, leg: Transfer) -> LimitSource:
        # Read (from the store) only if this process has not opened the leg's day's quota yet.
        limits = self.transfers.limits
        return lambda: limits.limit_of_transfer(leg)

    def _record_refusal(self, open_legs: Sequence[Transfer], refused: Transfer, cause: FailureReason) -> None:
        service = self.transfers
        now = service.clock()
        changes = []
        for leg in open_legs:
            if leg.request_id == refused.request_id:
                changes.append(
                    StatusChange(leg, leg.moved_to(Status.FAILED, now, cause), API, f"lock refused: {cause}")
                )
            else:
                reason = f"lock refused: leg {refused.request_id} of its batch, {cause}"
                changes.append(
                    StatusChange(leg, leg.moved_to(Status.FAILED, now, FailureReason.BATCH_FAILED), API, reason)
                )
        self.deps.transfers.record_statuses(changes)

    def _refusal(self, batch: Batch, index: int, leg: Transfer, cause: FailureReason) -> Exception:
        """The 422 that names the leg: the same error as a single transfer's, with `leg` and `batch_id`."""
        error: DomainError
        if cause == FailureReason.DAILY_LIMIT_EXCEEDED:
            error = self.transfers.limit_refusal(leg)
        else:
            error = InsufficientBalance(InsufficientBalance.MESSAGE, request_id=str(leg.request_id))
        error.details.update(leg=index, batch_id=str(batch.batch_id))
        error.message = f"leg {index}: {error.message}"
        error.args = (error.message,)
        return error

    def replay_refusal(self, view: BatchView) -> None:
        """A replayed key whose first answer was 422 answers 422 again (as for single transfers)."""
        refused = view.refused_leg()
        if refused is not None:
            index, leg = refused
            assert leg.failure_reason is not None
            raise self._refusal(view.batch, index, leg, FailureReason(leg.failure_reason))

    # -- queries ------------------------------------------------------------

    def view(self, batch: Batch) -> BatchView:
        found = self.deps.transfers.get_many(batch.request_ids)
        return BatchView(batch, [found.get(i) for i in batch.request_ids])

    def get_for_user(self, user_id: int, batch_id: int) -> BatchView:
        batch = self.deps.batches.get_batch(batch_id)
        # Another user's batch looks exactly like a missing one.
        if batch is None or batch.user_id != user_id:
            raise NotFound("no such batch")
        return self.view(batch)
