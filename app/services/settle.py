"""The one writer of terminal statuses: post or void a lock, and record what the ledger decided.

Every path that ends a transfer comes here: the engine's results (the
settlement consumer), the scanner, operators' void and force-post, and the
submit handler's refusals. A leg of a batch is resolved with its whole batch:
its legs are locked together and only ever resolved together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from app.domain.ledger_answers import LedgerState
from app.domain.transfer import SETTLEMENT, AuditActor, AuditEntry, FailureReason, Outcome, Status, Transfer
from app.observability import metrics as observe
from app.ports.bus import EngineResult, PoisonMessage
from app.ports.ledger import Resolution, ResolveOutcome
from app.ports.store import StatusChange
from app.services.alerts import raise_alert
from app.services.crash_points import crash_point
from app.services.dependencies import Dependencies

log = logging.getLogger(__name__)


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


def batch_legs(deps: Dependencies, batch_id: int) -> list[Transfer]:
    """Every leg of the batch, in order, as stored; RuntimeError if one is not recorded.

    Callers hold a leg that was locked (or a result for a batch that was
    sent), and nothing of a batch locks before all its legs are recorded.
    """
    batch = deps.batches.get_batch(batch_id)
    if batch is None:
        raise RuntimeError(f"batch {batch_id} is not recorded")
    found = deps.transfers.get_many(batch.request_ids)
    missing = [i for i in batch.request_ids if i not in found]
    if missing:
        raise RuntimeError(f"batch {batch_id}: legs {missing} are not recorded")
    return [found[i] for i in batch.request_ids]


class Settle:
    def __init__(self, deps: Dependencies) -> None:
        self.deps = deps

    # -- statuses the ledger decided without a resolution ------------------------

    def record(self, changes: Sequence[StatusChange]) -> None:
        """Write changes already checked against the state machine (`Transfer.moved_to`), then count them."""
        self.deps.transfers.record_statuses(changes)
        for change in changes:
            observe.reached(change.before, change.after, str(change.actor))

    def locked(self, transfer: Transfer, actor: AuditActor, reason: str) -> Transfer:
        """The ledger holds the lock: record `pending`."""
        pending = transfer.moved_to(Status.PENDING, self.deps.clock())
        self.record([StatusChange(transfer, pending, actor, reason)])
        return pending

    def refused(
        self, transfers: Sequence[Transfer], causes: Sequence[FailureReason], actor: AuditActor, reasons: Sequence[str]
    ) -> list[Transfer]:
        """The ledger refused these locks, or fenced their ids (they can never lock): record `failed`, with causes."""
        now = self.deps.clock()
        changes = [
            StatusChange(transfer, transfer.moved_to(Status.FAILED, now, cause), actor, reason)
            for transfer, cause, reason in zip(transfers, causes, reasons, strict=True)
        ]
        self.record(changes)
        return [change.after for change in changes]

    # -- resolutions: post or void a lock -----------------------------------------

    def post(self, transfer: Transfer, actor: AuditActor, reason: str) -> Transfer:
        """Post the pending lock and record `success`. Safe to repeat."""
        return self._resolve(_Decision(transfer, True, actor, reason, None))

    def void(self, transfer: Transfer, actor: AuditActor, reason: str, failure_reason: FailureReason) -> Transfer:
        """Void the pending lock, releasing the funds, and record `failed`. Safe to repeat."""
        return self._resolve(_Decision(transfer, False, actor, reason, failure_reason))

    def apply_results(self, results: Sequence[EngineResult]) -> None:
        """Apply a batch of engine results: one ledger request for the pending ones, statuses in parallel.

        Raises PoisonMessage, after applying the rest, if a result names no
        recorded transfer; the bus then retries the batch one by one.
        """
        unknown_batches = [r.request_id for r in results if r.batch and not self._apply_batch_result(r)]
        results = [r for r in results if not r.batch]
        records = self.deps.transfers.get_many([result.request_id for result in results])
        together: dict[int, _Decision] = {}
        one_by_one: list[_Decision] = []
        for result in results:
            transfer = records.get(result.request_id)
            if transfer is None:
                continue
            decision = _Decision.of_result(transfer, result)
            # A leg of a batch never joins the non-atomic request below: an
            # answer naming one leg resolves its whole batch, all or nothing.
            if transfer.status == Status.PENDING and transfer.batch_id is None and result.request_id not in together:
                together[result.request_id] = decision
            else:
                # Already terminal (a duplicate), still `requesting`, twice in this batch, or a leg.
                one_by_one.append(decision)
        if together:
            self._post_or_void(list(together.values()))
        for decision in one_by_one:
            self._resolve(decision)
        unknown = [result.request_id for result in results if result.request_id not in records] + unknown_batches
        if unknown:
            raise PoisonMessage(f"results for unknown requests {unknown}")

    def apply_result(self, result: EngineResult) -> None:
        self.apply_results([result])

    def _apply_batch_result(self, result: EngineResult) -> bool:
        """Apply the engine's answer to a batch to all its legs; False if no such batch (with its legs) is recorded."""
        try:
            legs = batch_legs(self.deps, result.request_id)
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

    def _never_locked(self, transfer: Transfer) -> bool:
        state = self.deps.moves.state_of(transfer, self.deps.catalog.get(transfer.asset))
        return state in (LedgerState.ABSENT, LedgerState.FENCED)

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
        if transfer.status == Status.REQUESTING and self._never_locked(transfer):
            # Nothing is sent to the engine before its lock exists. Resolving
            # a lock that is not there would burn the resolution id for good.
            raise PoisonMessage(f"result for request {transfer.request_id}, which was never locked")
        return self._post_or_void([decision])[0]

    def _resolve_batch_of(self, decision: _Decision) -> Transfer:
        """Post or void every leg of `decision.transfer`'s batch in one linked request, as it asks.

        Whoever acts on one leg (the engine's answer, an operator, the
        scanner) acts on the whole batch. Returns that leg as now recorded.
        """
        leg = decision.transfer
        assert leg.batch_id is not None
        legs = batch_legs(self.deps, leg.batch_id)
        open_legs = [t for t in legs if not t.status.is_terminal]
        if not open_legs:
            # Another actor (or an earlier leg of this scan) already resolved the batch.
            return next(t for t in legs if t.request_id == leg.request_id)
        requesting = next((t for t in open_legs if t.status == Status.REQUESTING), None)
        if requesting is not None and self._never_locked(requesting):
            raise PoisonMessage(f"result for batch {leg.batch_id}, which was never locked")
        finals = self._post_or_void([replace(decision, transfer=t) for t in open_legs], atomic=True)
        by_id = {t.request_id: t for t in legs} | {t.request_id: t for t in finals}
        return by_id[leg.request_id]

    def _audit_unapplied(self, decision: _Decision, why_not: str) -> None:
        """Add a decision that lost to what is recorded to the audit trail, once however often it is redelivered."""
        transfer = decision.transfer
        trail = self.deps.transfers.audit_trail(transfer.request_id)
        if any(e.actor == decision.actor and e.reason.startswith(decision.reason) for e in trail):
            return
        self.deps.transfers.append_audit(
            AuditEntry(
                request_id=transfer.request_id,
                at=self.deps.clock(),
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
        explained = transfer.explained(cause, self.deps.clock())
        self.deps.transfers.record_statuses([StatusChange(transfer, explained, decision.actor, decision.reason)])
        return explained

    def _post_or_void(self, decisions: Sequence[_Decision], atomic: bool = False) -> list[Transfer]:
        """Post or void the locks in one ledger request (`atomic`: all or none), then record what the ledger decided."""
        catalog, moves = self.deps.catalog, self.deps.moves
        resolutions = [Resolution(d.transfer, catalog.get(d.transfer.asset), d.post) for d in decisions]
        outcomes = moves.resolve_batch(resolutions) if atomic else moves.resolve_many(resolutions)
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
        now = self.deps.clock()
        changes = []
        current = transfer
        if target == Status.SUCCESS and current.status == Status.REQUESTING:
            pending = current.moved_to(Status.PENDING, now)
            changes.append(StatusChange(current, pending, actor, reason))
            current = pending
        final = current.moved_to(target, now, failure_reason if target == Status.FAILED else None)
        changes.append(StatusChange(current, final, actor, reason))
        return changes, final
