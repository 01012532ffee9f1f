"""Reconcile open transfers against the ledger, which is the truth.

The scanner never voids on its own: only the engine's rejection or an
operator does. It finishes what a crash left half-done and raises alerts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain.events import EventKind
from app.domain.ids import first_id_at
from app.domain.transfer import SCANNER, FailureReason, Status, Transfer
from app.observability.context import log_context
from app.observability.metrics import (
    LEDGER_MISMATCHES,
    OLDEST_PENDING,
    OLDEST_REQUESTING,
    OPEN_TRANSFERS,
    SCAN_ACTIONS,
    SCAN_LAST_SUCCESS,
    SCAN_SECONDS,
)
from app.ports.errors import DependencyUnavailable
from app.ports.ledger import FenceOutcome, LedgerState
from app.services.alerts import raise_alert
from app.services.dependencies import Dependencies
from app.services.events import record_event
from app.services.settle import Settle
from app.services.submit import send_to_engine

log = logging.getLogger("internal_transfer.scanner")


@dataclass(frozen=True)
class RecoveryPolicy:
    # A `requesting` transfer younger than this may still have a web request
    # working on it; older ones are fenced and failed if they hold no lock.
    requesting_grace: timedelta = timedelta(seconds=30)
    resend_after: timedelta = timedelta(seconds=30)
    warn_after: timedelta = timedelta(minutes=30)
    critical_after: timedelta = timedelta(hours=2)
    batch_size: int = 1000


class RecoveryService:
    def __init__(self, deps: Dependencies, settle: Settle, policy: RecoveryPolicy | None = None) -> None:
        self.deps = deps
        self.settle = settle
        self.policy = policy or RecoveryPolicy()
        self._last_sent: dict[int, datetime] = {}
        # Stuck-transfer events already written by this process.
        self._announced: set[tuple[int, EventKind]] = set()
        self._lock = threading.Lock()
        self._cursor: int | None = None
        self._round_until = 0

    def scan(self) -> Counter[str]:
        """One pass over a batch of open transfers. Returns what it did, by action.

        Passes continue where the last one stopped, so with more open
        transfers than one batch every one of them is still visited.
        """
        started = time.perf_counter()
        actions = self._scan()
        SCAN_SECONDS.observe(time.perf_counter() - started)
        for action, count in actions.items():
            SCAN_ACTIONS.labels(action=action).inc(count)
        if actions["mismatch"]:
            LEDGER_MISMATCHES.labels(source="scanner").inc(actions["mismatch"])
        # A pass that reached no backend did not look at anything: it is no success.
        if not any(action.startswith("unavailable:") for action in actions):
            SCAN_LAST_SUCCESS.set(time.time())
        return actions

    def _scan(self) -> Counter[str]:
        actions: Counter[str] = Counter()
        now = self.deps.clock()
        open_set = self.deps.open_set
        # The store's upkeep (closing old windows on Cassandra) moves rows, never
        # ids, so it may run between any two pages of a round.
        refiled = open_set.advance_open_set()
        if refiled:
            actions["refiled"] += refiled
        if self._cursor is None:
            # A round ends at the ids that existed when it began: under steady
            # load new ids must not keep it from ever coming back to old ones.
            self._round_until = first_id_at(int(now.timestamp() * 1000) + 1)
        page = open_set.open_transfers(self.policy.batch_size, after=self._cursor)
        next_after = page.next_after
        self._cursor = next_after if next_after is not None and next_after < self._round_until else None
        open_transfers = page.items
        oldest = {Status.REQUESTING: 0.0, Status.PENDING: 0.0}
        for transfer in open_transfers:
            try:
                with log_context(request_id=transfer.request_id):
                    actions[self.reconcile(transfer, now)] += 1
            except DependencyUnavailable as exc:
                actions[f"unavailable:{exc.backend}"] += 1
                break
            except Exception as exc:
                # One transfer we cannot handle must not hide all the others.
                log.exception("cannot reconcile transfer %s", transfer.request_id)
                raise_alert(
                    "scanner_cannot_reconcile",
                    "critical",
                    request_id=transfer.request_id,
                    error=f"{type(exc).__name__}: {exc}",
                )
                actions["error"] += 1
            if transfer.status in oldest:
                oldest[transfer.status] = max(oldest[transfer.status], (now - transfer.created_at).total_seconds())
        by_status = Counter(t.status.value for t in open_transfers)
        for status in (Status.REQUESTING, Status.PENDING):
            OPEN_TRANSFERS.labels(status=status.value).set(by_status.get(status.value, 0))
        OLDEST_PENDING.set(oldest[Status.PENDING])
        OLDEST_REQUESTING.set(oldest[Status.REQUESTING])
        log.info(json.dumps({"event": "scan", "looked_at": len(open_transfers), "actions": actions}, sort_keys=True))
        return actions

    def reconcile(self, transfer: Transfer, now: datetime) -> str:
        asset = self.deps.catalog.get(transfer.asset)
        state = self.deps.moves.state_of(transfer, asset)
        age = now - transfer.created_at
        if transfer.status == Status.REQUESTING:
            return self._reconcile_requesting(transfer, state, age, now)
        if state == LedgerState.POSTED:
            self.settle.post(transfer, SCANNER, "ledger shows the lock posted")
            return "completed_success"
        if state == LedgerState.VOIDED and now - transfer.updated_at < self.policy.resend_after:
            # Whoever voided it (the engine's rejection, an operator) is likely
            # about to record it with its own reason; give them the chance.
            return "waiting"
        if state == LedgerState.VOIDED:
            self.settle.void(transfer, SCANNER, "ledger shows the lock voided", FailureReason.VOIDED)
            return "completed_failed"
        if state in (LedgerState.ABSENT, LedgerState.FENCED):
            raise_alert("pending_without_lock", "critical", request_id=transfer.request_id, ledger=state.value)
            return "mismatch"
        self._alert_if_old(transfer, age)
        if self._due_for_resend(transfer, now):
            send_to_engine(self.deps, transfer)
            self._mark_sent(transfer, now)
            return "resent"
        return "waiting"

    def _reconcile_requesting(self, transfer: Transfer, state: LedgerState, age: timedelta, now: datetime) -> str:
        asset = self.deps.catalog.get(transfer.asset)
        if state == LedgerState.ABSENT:
            if age < self.policy.requesting_grace:
                return "waiting"
            # Fence first: a web process stalled before its lock must never
            # lock these funds after we have told the user it failed.
            if self.deps.moves.fence(transfer, asset) == FenceOutcome.ALREADY_LOCKED:
                state = LedgerState.PENDING
            else:
                state = LedgerState.FENCED
        if state == LedgerState.FENCED:
            reason = "no lock found after the grace period; id fenced"
            self.settle.refused([transfer], [FailureReason.NOT_LOCKED], SCANNER, [reason])
            return "failed_not_locked"
        pending = self.settle.locked(transfer, SCANNER, "lock found in the ledger")
        if state in (LedgerState.POSTED, LedgerState.VOIDED):
            # Resolved in the ledger while the store still said requesting.
            return self.reconcile(pending, now)
        if pending.batch_id is not None and self._sent_recently(pending, now):
            # Another leg of this batch, found locked in this pass, already sent the batch.
            return "locked"
        send_to_engine(self.deps, pending)
        self._mark_sent(pending, now)
        return "locked_sent"

    @staticmethod
    def _sent_as(transfer: Transfer) -> int:
        # A leg goes to the engine only within its batch: one re-send per batch, not per leg.
        return transfer.batch_id if transfer.batch_id is not None else transfer.request_id

    def _sent_recently(self, transfer: Transfer, now: datetime) -> bool:
        with self._lock:
            last = self._last_sent.get(self._sent_as(transfer))
        return last is not None and now - last < self.policy.resend_after

    def _due_for_resend(self, transfer: Transfer, now: datetime) -> bool:
        with self._lock:
            last = self._last_sent.get(self._sent_as(transfer), transfer.updated_at)
        return now - last >= self.policy.resend_after

    def _mark_sent(self, transfer: Transfer, now: datetime) -> None:
        with self._lock:
            self._last_sent[self._sent_as(transfer)] = now
            if len(self._last_sent) > 100_000:
                self._last_sent.clear()

    def _alert_if_old(self, transfer: Transfer, age: timedelta) -> None:
        self._announce_if_old(transfer, age)
        if age >= self.policy.critical_after:
            raise_alert(
                "transfer_pending_too_long",
                "critical",
                request_id=transfer.request_id,
                age_seconds=int(age.total_seconds()),
            )
        elif age >= self.policy.warn_after:
            raise_alert(
                "transfer_pending_too_long",
                "warning",
                request_id=transfer.request_id,
                age_seconds=int(age.total_seconds()),
            )

    def _announce_if_old(self, transfer: Transfer, age: timedelta) -> None:
        """A stuck-transfer event, once per level and transfer in this process.

        A restarted scanner writes it again, with the same event_id: consumers dedupe.
        """
        if age >= self.policy.critical_after:
            kind, threshold = EventKind.STUCK_CRITICAL, self.policy.critical_after
        elif age >= self.policy.warn_after:
            kind, threshold = EventKind.STUCK_WARNING, self.policy.warn_after
        else:
            return
        key = (transfer.request_id, kind)
        with self._lock:
            if key in self._announced:
                return
        minutes = int(threshold.total_seconds() // 60)
        # At the moment the threshold passed, not of this pass: the same event (and event_id) whoever emits it.
        at = transfer.created_at + threshold
        record_event(
            self.deps.outbox, kind, transfer, SCANNER, f"{transfer.status.value} for over {minutes} minutes", at
        )
        with self._lock:
            if len(self._announced) > 100_000:
                self._announced.clear()
            self._announced.add(key)
