"""Submit a transfer or a batch: claim its key, record it, lock it, record `pending`, send it.

Single transfers and batches take the same steps, each idempotent:

1. the Idempotency-Key, if any, is claimed for a block of ids (a transfer:
   one; a batch: its own and one per leg); a retry under the key uses the
   same ids, whatever the first attempt left behind (`_claimed`, the one
   claim/resume/replay of the service);
2. the transfer, or the batch and every leg, is recorded `requesting`;
3. the ledger locks it in ONE request (a batch: one linked chain, every leg
   locks or none does);
4. a refusal is recorded `failed` (app/services/settle.py: the one writer
   of terminal statuses) and answered 422; a lock is recorded `pending`
   while the request goes to the engine.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from app.domain.account_model import Direction
from app.domain.batch import BatchCommand, BatchView, new_batch
from app.domain.errors import (
    DailyLimitExceeded,
    DomainError,
    IdempotencyKeyReused,
    InsufficientBalance,
    PermissionDenied,
    ValidationFailed,
)
from app.domain.ledger_answers import REFUSAL_CAUSES, LockOutcome
from app.domain.money import AssetCatalog
from app.domain.transfer import API, AccountType, FailureReason, Status, Transfer, TransferCommand
from app.observability import metrics as observe
from app.observability.context import current_trace_id, request_id_var
from app.ports.bus import EngineBatchRequest, EngineLeg, EngineRequest
from app.ports.errors import DependencyUnavailable
from app.ports.ledger import BatchLeg, IdempotencyClaim, LimitSource
from app.ports.store import StatusChange
from app.services.alerts import raise_alert
from app.services.crash_points import crash_point
from app.services.dependencies import Dependencies
from app.services.limits import LimitService
from app.services.settle import Settle, batch_legs

log = logging.getLogger(__name__)

Submitted = TypeVar("Submitted", Transfer, BatchView)


@dataclass(frozen=True)
class SubmitResult:
    transfer: Transfer
    replayed: bool


@dataclass(frozen=True)
class BatchSubmitResult:
    view: BatchView
    replayed: bool


class _Submission(Protocol[Submitted]):
    """What `_claimed` needs to know of one kind of submission."""

    user_id: int
    fingerprint: str
    ids_needed: int

    def fresh(self, first_id: int, key: str | None) -> Submitted:
        """The submission, new, with the ids of the block that starts at `first_id`."""

    def recorded(self, first_id: int) -> Submitted | None:
        """What is recorded under those ids; None if nothing is."""

    def finished(self, recorded: Submitted) -> bool:
        """Whether every part is past `requesting`: a replay then only answers."""

    def carry_on(self, submitted: Submitted) -> Submitted:
        """Record, lock, record `pending` and send: each step idempotent, so it may run again."""


def build_command(
    catalog: AssetCatalog,
    user_id: int,
    from_account: Mapping[str, object],
    to_account: Mapping[str, object],
    amount: object,
) -> TransferCommand:
    """Turn the request's shape into a command, checking ownership and the asset."""
    for side in (from_account, to_account):
        owner = side.get("user_id")
        if owner is not None and owner != user_id:
            raise PermissionDenied("you can only move funds between your own accounts")
    account_types = []
    for side in (from_account, to_account):
        try:
            account_types.append(AccountType(str(side.get("account_type"))))
        except ValueError:
            raise ValidationFailed("account_type must be 'funding' or 'spot'", code="INVALID_ACCOUNT_TYPE") from None
    asset = catalog.get(from_account.get("asset"))
    if to_account.get("asset") != from_account.get("asset"):
        raise ValidationFailed("both accounts must hold the same asset", code="ASSET_MISMATCH")
    if account_types[0] == account_types[1]:
        raise ValidationFailed("from_account and to_account must differ", code="SAME_ACCOUNT")
    return TransferCommand(
        user_id=user_id,
        asset=asset.symbol,
        from_type=account_types[0],
        to_type=account_types[1],
        amount=asset.parse(amount),
    )


def send_to_engine(deps: Dependencies, transfer: Transfer) -> None:
    """Send a pending transfer to the engine; a leg goes with its whole batch. Safe to repeat: the engine dedupes."""
    if transfer.batch_id is not None:
        send_batch_to_engine(deps, batch_legs(deps, transfer.batch_id))
        return
    crash_point("before_publish")
    deps.bus.publish_request(
        EngineRequest(
            request_id=transfer.request_id,
            user_id=transfer.user_id,
            asset=transfer.asset,
            from_account_type=transfer.from_type.value,
            to_account_type=transfer.to_type.value,
            amount_units=transfer.amount,
            trace_id=current_trace_id(),
        )
    )
    crash_point("after_publish")


def send_batch_to_engine(deps: Dependencies, legs: Sequence[Transfer]) -> None:
    batch_id = legs[0].batch_id
    if batch_id is None:
        raise ValueError("not the legs of a batch")
    crash_point("before_publish")
    deps.bus.publish_request(
        EngineBatchRequest(
            batch_id=batch_id,
            user_id=legs[0].user_id,
            legs=tuple(
                EngineLeg(
                    request_id=leg.request_id,
                    asset=leg.asset,
                    from_account_type=leg.from_type.value,
                    to_account_type=leg.to_type.value,
                    amount_units=leg.amount,
                )
                for leg in legs
            ),
            trace_id=current_trace_id(),
        )
    )
    crash_point("after_publish")


class Submit:
    def __init__(self, deps: Dependencies, limits: LimitService, settle: Settle) -> None:
        self.deps = deps
        self.limits = limits
        self.settle = settle

    def transfer(self, command: TransferCommand, idempotency_key: str | None = None) -> SubmitResult:
        # Log lines of this submission name its transfer once it has an id; none after.
        token = request_id_var.set(None)
        try:
            transfer, replayed = self._claimed(_Single(self, command, idempotency_key), idempotency_key)
            observe.accepted(transfer, replayed)
            return SubmitResult(transfer, replayed)
        finally:
            request_id_var.reset(token)

    def batch(self, command: BatchCommand, idempotency_key: str | None = None) -> BatchSubmitResult:
        view, replayed = self._claimed(_Batch(self, command, idempotency_key), idempotency_key)
        for leg in view.legs:
            if leg is not None:
                observe.accepted(leg, replayed)
        return BatchSubmitResult(view, replayed)

    def _claimed(self, submission: _Submission[Submitted], key: str | None) -> tuple[Submitted, bool]:
        """Claim, resume or replay: the one place a submission meets its Idempotency-Key. Says if it replayed."""
        if key is None:
            first_id = self.deps.ids.next_block(submission.ids_needed)
            return submission.carry_on(submission.fresh(first_id, None)), False
        first_id, claimed_before = self.claim_key(
            submission.user_id, key, submission.fingerprint, submission.ids_needed
        )
        if not claimed_before:
            return submission.carry_on(submission.fresh(first_id, key)), False
        recorded = submission.recorded(first_id)
        if recorded is None:
            # The key is claimed but nothing is recorded under its ids: the
            # first attempt died in between (nothing was locked: the lock
            # needs the record) or is still running. Carrying on with the ids
            # the key names is safe: every step is idempotent.
            return submission.carry_on(submission.fresh(first_id, key)), True
        if submission.finished(recorded):
            return recorded, True
        # Recorded (perhaps in part) but stopped before `pending`: finish it, with the same ids.
        return submission.carry_on(recorded), True

    def claim_key(self, user_id: int, key: str, fingerprint: str, ids_needed: int = 1) -> tuple[int, bool]:
        """The first id of the block `key` names, and whether an earlier request claimed it.

        IDEMPOTENCY_KEY_REUSED for another body. A fresh block of `ids_needed`
        ids is offered; the first claimer's block wins. Every id a submission
        uses comes from that block (`block_ids`), so every attempt under one
        key, whatever it finds recorded, uses the same ids: the ledger lands each once.
        """
        offered = IdempotencyClaim(request_id=self.deps.ids.next_block(ids_needed), fingerprint=fingerprint)
        holder = self.deps.keys.claim_idempotency_key(user_id, key, offered)
        if holder is None:
            return offered.request_id, False
        if holder.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request",
                request_id=str(holder.request_id),
            )
        return holder.request_id, True

    # -- refusals: the 422s, first answers and replays alike -------------------

    def limit_refusal(self, transfer: Transfer) -> DailyLimitExceeded:
        """The refusal, with what remains today; the transfer is already recorded failed.

        Also the answer to a replay of its Idempotency-Key: the same code and
        transfer, with the day's figures as they are now.
        """
        asset = self.deps.catalog.get(transfer.asset)
        direction = Direction.of(transfer.from_type, transfer.to_type)
        details: dict[str, str] = {"request_id": str(transfer.request_id), "asset": asset.symbol}
        details["direction"] = direction.value
        try:
            today = self.limits.remaining_of(transfer)
            details.update(limit=asset.format(today.limit), remaining=asset.format(today.remaining))
        except DependencyUnavailable:
            # The refusal stands; only the figures for the message are missing.
            log.warning("could not read the remaining limit for request %d", transfer.request_id)
        return DailyLimitExceeded(
            f"the daily {direction.value} limit for {asset.symbol} does not allow this amount", **details
        )

    def refusal(self, transfer: Transfer) -> DomainError | None:
        """The 422 a transfer recorded as refused answers (and its key's replays); None if it was not refused."""
        if transfer.failure_reason == FailureReason.DAILY_LIMIT_EXCEEDED:
            return self.limit_refusal(transfer)
        if transfer.failure_reason == FailureReason.INSUFFICIENT_BALANCE:
            return InsufficientBalance(InsufficientBalance.MESSAGE, request_id=str(transfer.request_id))
        return None

    def batch_refusal(self, view: BatchView) -> DomainError | None:
        """The 422 a batch recorded as refused answers (and its key's replays); None if it was not refused."""
        refused = view.refused_leg()
        return None if refused is None else self._leg_refusal(view.batch.batch_id, *refused)

    def _leg_refusal(self, batch_id: int, index: int, leg: Transfer) -> DomainError:
        """The 422 that names the refused leg: a single transfer's, with `leg` and `batch_id`."""
        error = self.refusal(leg)
        if error is None:
            raise ValueError(f"leg {leg.request_id} was not refused")
        error.details.update(leg=index, batch_id=str(batch_id))
        error.message = f"leg {index}: {error.message}"
        error.args = (error.message,)
        return error

    # -- lock, record `pending`, send --------------------------------------------

    def limit_source(self, transfer: Transfer) -> LimitSource:
        # The limit is read (from the store) only when this process opens the day's quota.
        limits = self.limits
        return lambda: limits.limit_of_transfer(transfer)

    def lock_record_and_send(
        self, transfers: Sequence[Transfer], lock: Callable[[], tuple[LockOutcome, int]]
    ) -> list[Transfer] | None:
        """Lock (`lock` answers the outcome and the refused index), then record `pending` while sending.

        A refusal is recorded failed (the refused one with its cause, a batch's
        others BATCH_FAILED) and raised as its 422. Returns the transfers as now
        recorded; None if the scanner fenced them first (they can never lock).
        """
        try:
            return self._lock_record_and_send(transfers, lock)
        except DependencyUnavailable as exc:
            first = transfers[0]
            exc.request_id = first.batch_id if first.batch_id is not None else first.request_id
            raise

    def _lock_record_and_send(
        self, transfers: Sequence[Transfer], lock: Callable[[], tuple[LockOutcome, int]]
    ) -> list[Transfer] | None:
        outcome, refused_at = lock()
        open_ones = [t for t in transfers if t.status == Status.REQUESTING]
        cause = REFUSAL_CAUSES.get(outcome)
        if cause is not None:
            refused = transfers[refused_at]
            causes = [cause if t.request_id == refused.request_id else FailureReason.BATCH_FAILED for t in open_ones]
            reasons = [
                f"lock refused: {cause}"
                if t.request_id == refused.request_id
                else f"lock refused: leg {refused.request_id} of its batch, {cause}"
                for t in open_ones
            ]
            failed = {t.request_id: t for t in self.settle.refused(open_ones, causes, API, reasons)}
            recorded = [failed.get(t.request_id, t) for t in transfers]
            raise self._refusal_of(recorded, refused_at)
        if outcome == LockOutcome.FENCED:
            return None
        # `pending` is written while the request goes to the engine: the
        # answer waits for both, one after the other would take longer. An
        # engine result that overtakes the write finds the lock and settles
        # it all the same; should the scanner send it too, the engine dedupes.
        now = self.deps.clock()
        changes = [StatusChange(t, t.moved_to(Status.PENDING, now), API, "funds locked") for t in open_ones]
        pending = {change.after.request_id: change.after for change in changes}
        recorded = [pending.get(t.request_id, t) for t in transfers]
        written = self.deps.transfers.start_recording(changes)
        try:
            if recorded[0].batch_id is None:
                send_to_engine(self.deps, recorded[0])
            else:
                send_batch_to_engine(self.deps, recorded)
        except BaseException:
            with contextlib.suppress(Exception):
                written()
            raise
        written()
        crash_point("after_store_update")
        return recorded

    def _refusal_of(self, recorded: Sequence[Transfer], refused_at: int) -> DomainError:
        refused = recorded[refused_at]
        if refused.batch_id is not None:
            return self._leg_refusal(refused.batch_id, refused_at, refused)
        error = self.refusal(refused)
        if error is None:
            raise ValueError(f"transfer {refused.request_id} was not refused")
        return error


class _Single:
    def __init__(self, handler: Submit, command: TransferCommand, key: str | None) -> None:
        self.handler = handler
        self.command = command
        self.key = key
        self.user_id = command.user_id
        self.fingerprint = command.fingerprint()
        self.ids_needed = 1

    def fresh(self, first_id: int, key: str | None) -> Transfer:
        return Transfer.new(first_id, self.command, self.handler.deps.clock(), key)

    def recorded(self, first_id: int) -> Transfer | None:
        existing = self.handler.deps.transfers.get(first_id)
        if existing is not None and (existing.user_id != self.user_id or existing.idempotency_key != self.key):
            # Request ids are unique by construction (leased worker ids).
            raise RuntimeError(f"request id {first_id} names another transfer than its key")
        return existing

    def finished(self, recorded: Transfer) -> bool:
        return recorded.status != Status.REQUESTING

    def carry_on(self, transfer: Transfer) -> Transfer:
        deps = self.handler.deps
        # From here on this submission's log lines name the transfer (`Submit.transfer` unbinds it).
        request_id_var.set(str(transfer.request_id))
        # Filed again on a resume: the first attempt may have died before its filing was confirmed.
        deps.transfers.record_new(transfer)
        crash_point("after_store_insert")
        asset = deps.catalog.get(transfer.asset)
        limit = self.handler.limit_source(transfer)

        def lock() -> tuple[LockOutcome, int]:
            outcome = deps.moves.lock(transfer, asset, limit)
            crash_point("after_lock")
            return outcome, 0

        recorded = self.handler.lock_record_and_send([transfer], lock)
        if recorded is None:
            # Fenced: the scanner gave up on this request before our lock landed
            # (or, should ids ever clash, the id locks another transfer).
            return self._fenced(transfer)
        return recorded[0]

    def _fenced(self, transfer: Transfer) -> Transfer:
        existing = self.handler.deps.transfers.get(transfer.request_id)
        if existing is None:
            raise RuntimeError(f"transfer {transfer.request_id} vanished from the store")
        if existing.user_id != transfer.user_id or existing.fingerprint != transfer.fingerprint:
            raise_alert("request_id_clash", "critical", request_id=transfer.request_id)
            raise RuntimeError(f"request id {transfer.request_id} was issued twice")
        return existing


class _Batch:
    def __init__(self, handler: Submit, command: BatchCommand, key: str | None) -> None:
        self.handler = handler
        self.command = command
        self.key = key
        self.user_id = command.user_id
        self.fingerprint = command.fingerprint()
        self.ids_needed = 1 + len(command.legs)

    def fresh(self, first_id: int, key: str | None) -> BatchView:
        return new_batch(first_id, self.command, self.handler.deps.clock(), key)

    def recorded(self, first_id: int) -> BatchView | None:
        batch = self.handler.deps.batches.get_batch(first_id)
        if batch is None:
            return None
        found = self.handler.deps.transfers.get_many(batch.request_ids)
        return BatchView(batch, [found.get(i) for i in batch.request_ids])

    def finished(self, recorded: BatchView) -> bool:
        return recorded.finished_submitting

    def carry_on(self, view: BatchView) -> BatchView:
        deps, batch = self.handler.deps, view.batch
        # Legs a first attempt never recorded are made again, with the ids the batch names.
        legs = [
            leg if leg is not None else Transfer.new(rid, cmd, batch.created_at, self.key, batch.batch_id)
            for leg, rid, cmd in zip(view.legs, batch.request_ids, self.command.legs, strict=True)
        ]
        try:
            deps.batches.record_batch(batch, [leg for leg in legs if leg.status == Status.REQUESTING])
        except DependencyUnavailable as exc:
            exc.request_id = batch.batch_id
            raise
        crash_point("after_batch_record")
        ledger_legs = [BatchLeg(leg, deps.catalog.get(leg.asset), self.handler.limit_source(leg)) for leg in legs]

        def lock() -> tuple[LockOutcome, int]:
            locked = deps.moves.lock_batch(ledger_legs)
            crash_point("after_batch_lock")
            return locked.outcome, locked.leg if locked.leg is not None else 0

        recorded = self.handler.lock_record_and_send(legs, lock)
        if recorded is None:
            # Fenced: the scanner gave up on a leg of this batch before the lock: it can never lock.
            fenced = self.recorded(batch.batch_id)
            if fenced is None:
                raise RuntimeError(f"batch {batch.batch_id} vanished from the store")
            return fenced
        return BatchView(batch, list[Transfer | None](recorded))
