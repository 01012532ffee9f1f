"""Submit, query, settle and reject internal transfers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from app.domain.account_model import Direction
from app.domain.errors import DailyLimitExceeded, PermissionDenied, ValidationFailed
from app.domain.errors import IdempotencyKeyReused as IdempotencyKeyReused  # re-exported for callers
from app.domain.errors import InsufficientBalance as InsufficientBalance  # re-exported for callers
from app.domain.errors import NotFound as NotFound  # re-exported for callers
from app.domain.money import AssetCatalog
from app.domain.transfer import (
    API,
    SETTLEMENT,
    AccountType,
    AuditActor,
    AuditEntry,
    FailureReason,
    Outcome,
    Status,
    Transfer,
    TransferCommand,
)
from app.observability import metrics as observe
from app.observability.context import current_trace_id, request_id_var
from app.ports.bus import EngineBatchRequest, EngineLeg, EngineRequest, EngineResult, PoisonMessage
from app.ports.errors import DependencyUnavailable
from app.ports.ledger import LedgerState, LockOutcome, Resolution, ResolveOutcome
from app.ports.store import HistoryPage, IdempotencyClaim, StatusChange
from app.services.alerts import raise_alert
from app.services.crash_points import crash_point
from app.services.dependencies import Dependencies
from app.services.limits import LimitService

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Decision:
    """Post (`post`) or void a transfer's lock, by `actor`, for `reason` (and, for a void, `failure_reason`)."""

    transfer: Transfer
    post: bool
    actor: AuditActor
    reason: str
    failure_reason: FailureReason | None
    # The POST's trace id, as the engine's result carried it back: for the logs.
    trace_id: str | None = None

    @classmethod
    def of_result(cls, transfer: Transfer, result: EngineResult) -> _Decision:
        if result.outcome == Outcome.CONFIRMED:
            return cls(transfer, True, SETTLEMENT, "confirmed by the engine", None, result.trace_id)
        reason = f"rejected by the engine: {result.reason or 'no reason'}"
        return cls(transfer, False, SETTLEMENT, reason, FailureReason.REJECTED_BY_ENGINE, result.trace_id)


@dataclass(frozen=True)
class SubmitResult:
    transfer: Transfer
    replayed: bool


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


class TransferService:
    def __init__(
        self,
        deps: Dependencies,
        limits: LimitService,
        clock: Clock = utc_now,
    ) -> None:
        self.deps = deps
        self.catalog = deps.catalog
        self.ids = deps.ids
        self.limits = limits
        self.clock = clock

    # -- submit -------------------------------------------------------------

    def submit(self, command: TransferCommand, idempotency_key: str | None = None) -> SubmitResult:
        # Log lines of this submission name its transfer once it has an id; none after.
        token = request_id_var.set(None)
        try:
            result = self._submit(command, idempotency_key)
            observe.accepted(result.transfer, result.replayed)
            return result
        finally:
            request_id_var.reset(token)

    def _submit(self, command: TransferCommand, idempotency_key: str | None) -> SubmitResult:
        if idempotency_key is None:
            transfer = Transfer.new(self.ids.next_id(), command, self.clock())
            self._record_new(transfer)
            return SubmitResult(self._lock_and_send(transfer), replayed=False)
        user_id, key = command.user_id, idempotency_key
        request_id, claimed_before = self.claim_key(user_id, key, command.fingerprint())
        if not claimed_before:
            transfer = Transfer.new(request_id, command, self.clock(), key)
            self._record_new(transfer)
            return SubmitResult(self._lock_and_send(transfer), replayed=False)
        existing = self.deps.transfers.get(request_id)
        if existing is None:
            # The key is claimed but its transfer is not recorded: the first
            # attempt died in between (nothing was locked: the lock needs the
            # record) or is still running. Carrying on with the id the key
            # names is safe: every step is idempotent.
            existing = Transfer.new(request_id, command, self.clock(), key)
            self._record_new(existing)
        elif existing.user_id != user_id or existing.idempotency_key != key:
            # Request ids are unique by construction (leased worker ids).
            raise RuntimeError(f"request id {request_id} names another transfer than its key")
        elif existing.status == Status.REQUESTING:
            # Recorded, but the first attempt stopped before it was pending:
            # file it again (it may have died before its filing was confirmed)
            # and finish it alongside.
            self._record_new(existing)
        else:
            return SubmitResult(existing, replayed=True)
        return SubmitResult(self._lock_and_send(existing), replayed=True)

    def claim_key(self, user_id: int, key: str, fingerprint: str, ids_needed: int = 1) -> tuple[int, bool]:
        """The first id of the block `key` names, and whether an earlier request claimed it.

        IDEMPOTENCY_KEY_REUSED for another body. A fresh block of `ids_needed`
        ids (a transfer: one; a batch: its own and one per leg) is offered;
        the first claimer's block wins. Every id a submission uses comes from
        that block (`block_ids`), so every attempt under one key, whatever
        it finds recorded, uses the same ids: the ledger lands each once.
        """
        offered = IdempotencyClaim(request_id=self.ids.next_block(ids_needed), fingerprint=fingerprint)
        holder = self.deps.keys.claim_idempotency_key(user_id, key, offered)
        if holder is None:
            return offered.request_id, False
        if holder.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request",
                request_id=str(holder.request_id),
            )
        return holder.request_id, True

    def _record_new(self, transfer: Transfer) -> None:
        # From here on this submission's log lines name the transfer (`submit` unbinds it).
        request_id_var.set(str(transfer.request_id))
        self.deps.transfers.record_new(transfer)
        crash_point("after_store_insert")

    def _record(
        self,
        transfer: Transfer,
        target: Status,
        actor: AuditActor,
        reason: str,
        failure_reason: FailureReason | None = None,
    ) -> Transfer:
        """Apply the state machine, then write the change; the store keeps the most advanced status."""
        after = transfer.moved_to(target, self.clock(), failure_reason)
        self.deps.transfers.record_statuses([StatusChange(transfer, after, actor, reason)])
        observe.reached(transfer, after, str(actor))
        return after

    def record_locked(self, transfer: Transfer, actor: AuditActor, reason: str) -> Transfer:
        """The ledger holds the lock: record `pending`."""
        return self._record(transfer, Status.PENDING, actor, reason)

    def fail_unlocked(self, transfer: Transfer, actor: AuditActor, reason: str) -> Transfer:
        """The ledger says this transfer can never lock (it was fenced): record `failed`."""
        return self._record(transfer, Status.FAILED, actor, reason, FailureReason.NOT_LOCKED)

    def _lock_and_send(self, transfer: Transfer) -> Transfer:
        asset = self.catalog.get(transfer.asset)
        try:
            # The limit is read (from the store) only when this process opens the day's quota.
            outcome = self.deps.moves.lock(transfer, asset, lambda: self.limits.limit_of_transfer(transfer))
            crash_point("after_lock")
            if outcome == LockOutcome.LIMIT_EXCEEDED:
                self._record(
                    transfer,
                    Status.FAILED,
                    API,
                    "lock refused: daily limit exceeded",
                    FailureReason.DAILY_LIMIT_EXCEEDED,
                )
                raise self.limit_refusal(transfer)
            if outcome == LockOutcome.INSUFFICIENT_BALANCE:
                self._record(
                    transfer,
                    Status.FAILED,
                    API,
                    "lock refused: insufficient balance",
                    FailureReason.INSUFFICIENT_BALANCE,
                )
                raise InsufficientBalance(
                    "the source account does not hold enough available funds",
                    request_id=str(transfer.request_id),
                )
            if outcome == LockOutcome.FENCED:
                # The scanner gave up on this request before our lock landed
                # (or, should ids ever clash, the id locks another transfer).
                existing = self._get_existing(transfer.request_id)
                if existing.user_id != transfer.user_id or existing.fingerprint != transfer.fingerprint:
                    raise_alert("request_id_clash", "critical", request_id=transfer.request_id)
                    raise RuntimeError(f"request id {transfer.request_id} was issued twice")
                return existing
            # `pending` is written while the request goes to the engine: the
            # answer waits for both, one after the other would take longer. An
            # engine result that overtakes the write finds the lock and settles
            # it all the same; should the scanner send it too, the engine dedupes.
            pending = transfer.moved_to(Status.PENDING, self.clock())
            recorded = self.deps.transfers.start_recording([StatusChange(transfer, pending, API, "funds locked")])
            try:
                self.send_to_engine(pending)
            except BaseException:
                with contextlib.suppress(Exception):
                    recorded()
                raise
            recorded()
            crash_point("after_store_update")
        except DependencyUnavailable as exc:
            exc.request_id = transfer.request_id
            raise
        return pending

    def limit_refusal(self, transfer: Transfer) -> DailyLimitExceeded:
        """The refusal, with what remains today; the transfer is already recorded failed.

        Also the answer to a replay of its Idempotency-Key: the same code and
        transfer, with the day's figures as they are now.
        """
        asset = self.catalog.get(transfer.asset)
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

    def send_to_engine(self, transfer: Transfer) -> None:
        if transfer.batch_id is not None:
            # A leg is never sent alone: the engine confirms or rejects its batch as a whole.
            self.send_batch_to_engine(self._batch_legs(transfer.batch_id))
            return
        crash_point("before_publish")
        self.deps.bus.publish_request(
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

    # -- batches: legs lock, go to the engine, and resolve together ----------

    def _batch_legs(self, batch_id: int) -> list[Transfer]:
        """Every leg of the batch, in order, as stored; RuntimeError if one is not recorded.

        Callers hold a leg that was locked (or a result for a batch that was
        sent), and nothing of a batch locks before all its legs are recorded.
        """
        batch = self.deps.batches.get_batch(batch_id)
        if batch is None:
            raise RuntimeError(f"batch {batch_id} is not recorded")
        found = self.deps.transfers.get_many(batch.request_ids)
        missing = [i for i in batch.request_ids if i not in found]
        if missing:
            raise RuntimeError(f"batch {batch_id}: legs {missing} are not recorded")
        return [found[i] for i in batch.request_ids]

    def send_batch_to_engine(self, legs: Sequence[Transfer]) -> None:
        batch_id = legs[0].batch_id
        if batch_id is None:
            raise ValueError("not the legs of a batch")
        crash_point("before_publish")
        self.deps.bus.publish_request(
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

    def _resolve_batch_of(self, decision: _Decision) -> Transfer:
        """Post or void every leg of `decision.transfer`'s batch in one linked request, as it asks.

        Whoever acts on one leg (the engine's answer, an operator, the
        scanner) acts on the whole batch: its legs are locked together and
        are only ever resolved together. Returns that leg as now recorded.
        """
        leg = decision.transfer
        assert leg.batch_id is not None
        legs = self._batch_legs(leg.batch_id)
        open_legs = [t for t in legs if not t.status.is_terminal]
        if not open_legs:
            # Another actor (or an earlier leg of this scan) already resolved the batch.
            return next(t for t in legs if t.request_id == leg.request_id)
        requesting = next((t for t in open_legs if t.status == Status.REQUESTING), None)
        if requesting is not None and self.deps.moves.state_of(requesting, self.catalog.get(requesting.asset)) in (
            LedgerState.ABSENT,
            LedgerState.FENCED,
        ):
            raise PoisonMessage(f"result for batch {leg.batch_id}, which was never locked")
        finals = self._post_or_void([replace(decision, transfer=t) for t in open_legs], atomic=True)
        by_id = {t.request_id: t for t in legs} | {t.request_id: t for t in finals}
        return by_id[leg.request_id]

    def _apply_batch_result(self, result: EngineResult) -> bool:
        """Apply the engine's answer to a batch to all its legs; False if no such batch (with its legs) is recorded."""
        try:
            legs = self._batch_legs(result.request_id)
        except RuntimeError:
            # No such batch, or legs never recorded: nothing of it was locked, nor sent.
            return False
        open_legs = [t for t in legs if not t.status.is_terminal]
        if open_legs:
            self._resolve(_Decision.of_result(open_legs[0], result))
        else:
            # A duplicate: each leg's record already says what the ledger decided (a conflict alerts).
            for leg in legs:
                self._resolve(_Decision.of_result(leg, result))
        return True

    # -- queries ------------------------------------------------------------

    def _get_existing(self, request_id: int) -> Transfer:
        transfer = self.deps.transfers.get(request_id)
        if transfer is None:
            raise RuntimeError(f"transfer {request_id} vanished from the store")
        return transfer

    def get_for_user(self, user_id: int, request_id: int) -> Transfer:
        transfer = self.deps.transfers.get(request_id)
        # Another user's transfer looks exactly like a missing one.
        if transfer is None or transfer.user_id != user_id:
            raise NotFound("no such transfer")
        return transfer

    def history(
        self,
        user_id: int,
        limit: int,
        cursor: str | None,
        status: Status | None,
        asset: str | None,
    ) -> HistoryPage:
        if asset is not None:
            asset = self.catalog.get(asset).symbol
        return self.deps.transfers.history(user_id, limit, cursor, status, asset)

    # -- results from the engine ----------------------------------------------

    def apply_results(self, results: Sequence[EngineResult]) -> None:
        """Apply a batch of engine results: one ledger request for the pending ones, statuses in parallel.

        Raises PoisonMessage, after applying the rest, if a result names no
        recorded transfer; the bus then retries the batch one by one.
        """
        unknown_batches = [r.request_id for r in results if r.batch and not self._apply_batch_result(r)]
        results = [r for r in results if not r.batch]
        records = self.deps.transfers.get_many([result.request_id for result in results])
        batch: dict[int, _Decision] = {}
        one_by_one: list[_Decision] = []
        for result in results:
            transfer = records.get(result.request_id)
            if transfer is None:
                continue
            decision = _Decision.of_result(transfer, result)
            # A leg of a batch never joins the non-atomic request below: an
            # answer naming one leg resolves its whole batch, all or nothing.
            if transfer.status == Status.PENDING and transfer.batch_id is None and result.request_id not in batch:
                batch[result.request_id] = decision
            else:
                # Already terminal (a duplicate), still `requesting`, twice in this batch, or a leg.
                one_by_one.append(decision)
        if batch:
            self._post_or_void(list(batch.values()))
        for decision in one_by_one:
            self._resolve(decision)
        unknown = [result.request_id for result in results if result.request_id not in records] + unknown_batches
        if unknown:
            raise PoisonMessage(f"results for unknown requests {unknown}")

    def apply_result(self, result: EngineResult) -> None:
        self.apply_results([result])

    # `actor` is who acts, for the audit trail.

    def settle(self, transfer: Transfer, actor: AuditActor, reason: str) -> Transfer:
        """Post the pending lock and record `success`. Safe to repeat."""
        return self._resolve(_Decision(transfer, True, actor, reason, None))

    def reject(self, transfer: Transfer, actor: AuditActor, reason: str, failure_reason: FailureReason) -> Transfer:
        """Void the pending lock, releasing the funds, and record `failed`. Safe to repeat."""
        return self._resolve(_Decision(transfer, False, actor, reason, failure_reason))

    def _resolve(self, decision: _Decision) -> Transfer:
        transfer, post, actor = decision.transfer, decision.post, decision.actor
        if transfer.status.is_terminal:
            wanted = Status.SUCCESS if post else Status.FAILED
            if transfer.status != wanted:
                raise_alert(
                    "settlement_conflict",
                    "critical",
                    request_id=transfer.request_id,
                    stored=transfer.status.value,
                    asked=wanted.value,
                    actor=str(actor),
                )
                # Whoever lost still said what they asked and why: the people resolving the alert need it.
                self._audit_unapplied(decision, f"not applied: already {transfer.status.value}")
                return transfer
            return self._explain_void(decision)
        if transfer.batch_id is not None:
            return self._resolve_batch_of(decision)
        asset = self.catalog.get(transfer.asset)
        if transfer.status == Status.REQUESTING and self.deps.moves.state_of(transfer, asset) in (
            LedgerState.ABSENT,
            LedgerState.FENCED,
        ):
            # Nothing is sent to the engine before its lock exists. Resolving
            # a lock that is not there would burn the resolution id for good.
            raise PoisonMessage(f"result for request {transfer.request_id}, which was never locked")
        return self._post_or_void([decision])[0]

    def _audit_unapplied(self, decision: _Decision, why_not: str) -> None:
        """Add a decision that lost to what is recorded to the audit trail, once however often it is redelivered."""
        transfer = decision.transfer
        trail = self.deps.transfers.audit_trail(transfer.request_id)
        if any(e.actor == decision.actor and e.reason.startswith(decision.reason) for e in trail):
            return
        self.deps.transfers.append_audit(
            AuditEntry(
                request_id=transfer.request_id,
                at=self.clock(),
                actor=decision.actor,
                from_status=transfer.status,
                to_status=transfer.status,
                reason=f"{decision.reason} ({why_not})",
            )
        )

    def _explain_void(self, decision: _Decision) -> Transfer:
        """A void already recorded: if the scanner recorded it without a cause, this decision is the cause.

        The scanner records a bare VOIDED when it finds a void nobody recorded
        (the engine's rejection or the operator's void stalled or died after
        the ledger voided). When that rejection or void comes back, its reason
        and who asked join the record and the audit trail, whoever won the race.
        """
        transfer = decision.transfer
        cause = decision.failure_reason
        if decision.post or cause is None or cause == FailureReason.VOIDED or transfer.failure_reason == cause:
            return transfer  # nothing to explain, or this very cause is already recorded (a redelivery)
        if not transfer.cause_unknown:
            # Another known cause won (an operator's void and the engine's rejection of the same transfer).
            self._audit_unapplied(decision, f"already failed: {transfer.failure_reason}")
            return transfer
        explained = transfer.explained(cause, self.clock())
        self.deps.transfers.record_statuses([StatusChange(transfer, explained, decision.actor, decision.reason)])
        return explained

    def _post_or_void(self, decisions: Sequence[_Decision], atomic: bool = False) -> list[Transfer]:
        """Post or void the locks in one ledger request (`atomic`: all or none), then record what the ledger decided."""
        resolutions = [Resolution(d.transfer, self.catalog.get(d.transfer.asset), d.post) for d in decisions]
        outcomes = self.deps.moves.resolve_batch(resolutions) if atomic else self.deps.moves.resolve_many(resolutions)
        crash_point("after_ledger_resolve")
        changes: list[StatusChange] = []
        finals: list[Transfer] = []
        for decision, outcome in zip(decisions, outcomes, strict=True):
            decided, final = self._changes_for(decision, outcome)
            changes.extend(decided)
            finals.append(final)
        crash_point("before_final_store_update")
        self.deps.transfers.record_statuses(changes)
        for decision, final in zip(decisions, finals, strict=True):
            observe.reached(decision.transfer, final, str(decision.actor), decision.trace_id)
        return finals

    def _changes_for(self, decision: _Decision, outcome: ResolveOutcome) -> tuple[list[StatusChange], Transfer]:
        """What to record once the ledger answered a post or a void: its decision, whoever asked."""
        transfer, post, actor, reason = decision.transfer, decision.post, decision.actor, decision.reason
        if outcome == ResolveOutcome.POSTED:
            if not post:
                raise_alert("void_lost_to_post", "critical", request_id=transfer.request_id, actor=str(actor))
            return self._changes_to(transfer, Status.SUCCESS, actor, reason if post else "already posted in the ledger")
        if outcome == ResolveOutcome.VOIDED:
            if post:
                raise_alert("post_lost_to_void", "critical", request_id=transfer.request_id, actor=str(actor))
            return self._changes_to(
                transfer,
                Status.FAILED,
                actor,
                reason if not post else "already voided in the ledger",
                decision.failure_reason or FailureReason.VOIDED_BY_OPERATOR,
            )
        raise_alert("pending_without_lock", "critical", request_id=transfer.request_id, actor=str(actor))
        return [], transfer

    def _changes_to(
        self,
        transfer: Transfer,
        target: Status,
        actor: AuditActor,
        reason: str,
        failure_reason: FailureReason | None = None,
    ) -> tuple[list[StatusChange], Transfer]:
        """The changes that take `transfer` to the terminal `target` the ledger decided, through `pending`."""
        now = self.clock()
        changes = []
        current = transfer
        if target == Status.SUCCESS and current.status == Status.REQUESTING:
            pending = current.moved_to(Status.PENDING, now)
            changes.append(StatusChange(current, pending, actor, reason))
            current = pending
        final = current.moved_to(target, now, failure_reason if target == Status.FAILED else None)
        changes.append(StatusChange(current, final, actor, reason))
        return changes, final
