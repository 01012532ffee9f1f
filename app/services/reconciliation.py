"""Continuous reconciliation: recently settled transfers, checked against the ledger.

The recovery scanner watches the open set; once a transfer is terminal it
leaves that set, and nothing would notice a ledger that disagrees with what
the user was told. Every pass takes the transfers that settled in a rolling
window and asks the ledger for each: a `success` must be posted there, and
a `failed` must never be posted or still hold a lock. Each disagreement is
logged with both sides and raised as a critical alert; the pass's count
drives the ledger-mismatch alert. It never changes anything: which side is
wrong is for a person to decide (docs/runbook.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from app.domain.ledger_answers import LedgerState, agrees
from app.domain.transfer import Transfer
from app.observability.context import log_context
from app.observability.metrics import (
    LEDGER_MISMATCHES,
    RECONCILE_CHECKED,
    RECONCILE_LAST_SUCCESS,
    RECONCILE_MISMATCHES,
)
from app.services.alerts import raise_alert
from app.services.dependencies import Dependencies

log = logging.getLogger("internal_transfer.reconciliation")


@dataclass(frozen=True)
class ReconciliationPolicy:
    # Every pass checks what settled in [now - window, now - grace): with the
    # window a few times the interval, each transfer is checked a few times,
    # and a mismatch stays in the gauge for as long as it is in the window.
    window: timedelta = timedelta(minutes=15)
    # Settled this recently, the ledger and the store may still be between
    # their two writes of one settlement: not yet a disagreement.
    grace: timedelta = timedelta(seconds=30)
    limit: int = 10_000


@dataclass(frozen=True)
class Mismatch:
    transfer: Transfer
    ledger: LedgerState


class ReconciliationService:
    def __init__(self, deps: Dependencies, policy: ReconciliationPolicy | None = None) -> None:
        self.deps = deps
        self.policy = policy or ReconciliationPolicy()

    def run_pass(self) -> list[Mismatch]:
        started = time.perf_counter()
        now = self.deps.clock()
        settled = self.deps.open_set.settled_between(
            now - self.policy.window, now - self.policy.grace, self.policy.limit
        )
        mismatches = []
        for transfer in settled:
            asset = self.deps.catalog.get(transfer.asset)
            state = self.deps.moves.state_of(transfer, asset)
            if not agrees(transfer, state):
                mismatches.append(Mismatch(transfer, state))
                self._report(transfer, state)
        self._check_batches(settled)
        if len(settled) >= self.policy.limit:
            # The newest of the window went unchecked this pass: raise the limit or shorten the window.
            log.warning("reconciliation checked only the first %d settled transfers of its window", len(settled))
        RECONCILE_CHECKED.set(len(settled))
        RECONCILE_MISMATCHES.set(len(mismatches))
        RECONCILE_LAST_SUCCESS.set(time.time())
        log.info(
            "reconciliation pass",
            extra={
                "checked": len(settled),
                "mismatches": len(mismatches),
                "truncated": len(settled) >= self.policy.limit,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return mismatches

    def _check_batches(self, settled: list[Transfer]) -> None:
        """A batch's legs end alike (one linked chain locks and resolves them): a split one is raised.

        Each leg is also checked against the ledger above, like any transfer;
        this catches a store that recorded legs of one batch differently.
        """
        for batch_id in sorted({t.batch_id for t in settled if t.batch_id is not None}):
            batch = self.deps.batches.get_batch(batch_id)
            if batch is None:
                continue
            ends = {t.status for t in self.deps.transfers.get_many(batch.request_ids).values() if t.status.is_terminal}
            if len(ends) > 1:
                LEDGER_MISMATCHES.labels(source="reconciliation").inc()
                raise_alert("batch_split", "critical", batch_id=batch_id, statuses=sorted(s.value for s in ends))

    @staticmethod
    def _report(transfer: Transfer, state: LedgerState) -> None:
        LEDGER_MISMATCHES.labels(source="reconciliation").inc()
        with log_context(request_id=transfer.request_id):
            raise_alert(
                "ledger_mismatch",
                "critical",
                request_id=transfer.request_id,
                store_status=transfer.status.value,
                store_failure_reason=transfer.failure_reason,
                store_updated_at=transfer.updated_at.isoformat(),
                ledger_state=state.value,
                user_id=transfer.user_id,
                asset=transfer.asset,
                amount_units=str(transfer.amount),
            )
