"""The recovery scanner repairs what a crash left, using the ledger as the truth."""

from __future__ import annotations

import json
import logging

import pytest

from app.domain.transfer import AccountType, Status, Transfer
from app.ports.ledger import LedgerState, LockOutcome
from tests.conftest import record_move
from tests.support.inprocess_bus import deliver_queued
from tests.support.ledger_moves import post_lock, void_lock
from tests.support.quotas import UNLIMITED
from tests.unit.harness import Harness

UNIT = 10**8


def _recorded_only(harness: Harness, user_id: int, units: int) -> Transfer:
    """A transfer whose web process died right after recording it."""
    transfer = Transfer.new(harness.deps.ids.next_id(), harness.command(user_id, units), harness.clock())
    harness.store.record_new(transfer)
    return transfer


def test_completes_a_transfer_whose_process_stopped_after_the_lock(harness: Harness) -> None:
    harness.fund(1)
    transfer = _recorded_only(harness, 1, 40 * UNIT)
    usdt = harness.deps.catalog.get("USDT")
    assert harness.ledger.lock(transfer, usdt, UNLIMITED) == LockOutcome.LOCKED
    # ... and the process died here: the store still says `requesting`.
    assert harness.recovery.scan()["locked_sent"] == 1
    assert harness.reload(transfer).status == Status.PENDING
    harness.pump()
    assert harness.reload(transfer).status == Status.SUCCESS
    assert harness.balance(1, AccountType.SPOT) == (40 * UNIT, 0)
    assert harness.recovery.scan().total() == 0  # nothing open any more


def test_waits_for_a_young_requesting_transfer(harness: Harness) -> None:
    harness.fund(1)
    transfer = _recorded_only(harness, 1, UNIT)
    assert harness.recovery.scan()["waiting"] == 1
    assert harness.reload(transfer).status == Status.REQUESTING


def test_fences_then_fails_a_requesting_transfer_that_never_locked(harness: Harness) -> None:
    harness.fund(1)
    transfer = _recorded_only(harness, 1, UNIT)
    harness.clock.advance(seconds=31)
    assert harness.recovery.scan()["failed_not_locked"] == 1
    failed = harness.reload(transfer)
    assert failed.status == Status.FAILED and failed.failure_reason == "NOT_LOCKED"
    # A stalled web process waking up now can never lock these funds.
    usdt = harness.deps.catalog.get("USDT")
    assert harness.ledger.lock(transfer, usdt, UNLIMITED) == LockOutcome.FENCED
    assert harness.balance(1, AccountType.FUNDING) == (1000 * UNIT, 0)


def test_a_late_lock_racing_the_fence_is_kept_not_failed(harness: Harness) -> None:
    harness.fund(1)
    transfer = _recorded_only(harness, 1, UNIT)
    harness.clock.advance(seconds=31)
    usdt = harness.deps.catalog.get("USDT")
    harness.ledger.lock(transfer, usdt, UNLIMITED)  # lands just before the scanner's fence
    assert harness.recovery.scan()["locked_sent"] == 1
    assert harness.reload(transfer).status == Status.PENDING


def test_pending_resolved_in_the_ledger_is_completed(harness: Harness) -> None:
    harness.fund(1)
    posted = harness.submit.transfer(harness.command(1, UNIT)).transfer
    voided = harness.submit.transfer(harness.command(1, UNIT)).transfer
    usdt = harness.deps.catalog.get("USDT")
    post_lock(harness.ledger, posted, usdt)  # settlement died before its store update
    void_lock(harness.ledger, voided, usdt)
    actions = harness.recovery.scan()
    # A fresh void waits: its author may still record why.
    assert actions["completed_success"] == 1 and actions["waiting"] == 1
    harness.clock.advance(seconds=31)
    assert harness.recovery.scan()["completed_failed"] == 1
    assert harness.reload(posted).status == Status.SUCCESS
    assert (harness.reload(voided).status, harness.reload(voided).failure_reason) == (Status.FAILED, "VOIDED")


def test_never_voids_on_its_own_and_resends_unanswered(harness: Harness) -> None:
    harness.fund(1)
    transfer = harness.submit.transfer(harness.command(1, UNIT)).transfer
    deliver_queued(harness.bus)  # the engine never saw it
    harness.clock.advance(hours=3)
    actions = harness.recovery.scan()
    assert actions["resent"] == 1
    usdt = harness.deps.catalog.get("USDT")
    assert harness.ledger.state_of(transfer, usdt) == LedgerState.PENDING
    assert harness.reload(transfer).status == Status.PENDING
    harness.pump()
    assert harness.reload(transfer).status == Status.SUCCESS


def _alerts(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "internal_transfer.alerts"]


def test_alerts_warning_after_30_minutes_and_critical_after_2_hours(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.fund(1)
    transfer = harness.submit.transfer(harness.command(1, UNIT)).transfer
    deliver_queued(harness.bus)
    caplog.set_level(logging.INFO)
    harness.clock.advance(minutes=29)
    harness.recovery.scan()
    assert _alerts(caplog) == []
    harness.clock.advance(minutes=2)
    harness.recovery.scan()
    assert [(a["alert"], a["severity"], a["request_id"]) for a in _alerts(caplog)] == [
        ("transfer_pending_too_long", "warning", transfer.request_id)
    ]
    caplog.clear()
    harness.clock.advance(hours=2)
    harness.recovery.scan()
    assert [(a["alert"], a["severity"]) for a in _alerts(caplog)] == [("transfer_pending_too_long", "critical")]


def test_pending_without_a_lock_is_a_critical_mismatch(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    transfer = _recorded_only(harness, 1, UNIT)
    record_move(harness.store, transfer, Status.PENDING, reason="corrupt", now=harness.clock())
    caplog.set_level(logging.INFO)
    assert harness.recovery.scan()["mismatch"] == 1
    assert ("pending_without_lock", "critical") in [(a["alert"], a["severity"]) for a in _alerts(caplog)]


def test_scan_logs_one_structured_line(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    harness.fund(1)
    harness.submit.transfer(harness.command(1, UNIT))
    caplog.set_level(logging.INFO, logger="internal_transfer.scanner")
    harness.recovery.scan()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "internal_transfer.scanner"]
    assert lines == [{"event": "scan", "looked_at": 1, "actions": {"waiting": 1}}]


def test_two_scanners_at_once_do_no_harm(harness: Harness) -> None:
    from app.services.recovery import RecoveryService

    harness.fund(1)
    transfers = [_recorded_only(harness, 1, UNIT) for _ in range(5)]
    usdt = harness.deps.catalog.get("USDT")
    for transfer in transfers:
        harness.ledger.lock(transfer, usdt, UNLIMITED)
    other = RecoveryService(harness.deps, harness.settle)
    harness.recovery.scan()
    other.scan()
    harness.pump()
    assert all(harness.reload(t).status == Status.SUCCESS for t in transfers)
    assert harness.balance(1, AccountType.SPOT) == (5 * UNIT, 0)
    trail = harness.store.audit_trail(transfers[0].request_id)
    assert [e.to_status for e in trail] == [Status.REQUESTING, Status.PENDING, Status.SUCCESS]


def test_one_transfer_it_cannot_handle_does_not_hide_the_rest(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.fund(1)
    broken = _recorded_only(harness, 1, UNIT)
    fine = _recorded_only(harness, 1, UNIT)
    usdt = harness.deps.catalog.get("USDT")
    harness.ledger.lock(fine, usdt, UNLIMITED)
    real_state_of = harness.ledger.state_of

    def state_of(transfer: Transfer, asset: object) -> LedgerState:
        if transfer.request_id == broken.request_id:
            raise RuntimeError("ledger answered nonsense")
        return real_state_of(transfer, asset)  # type: ignore[arg-type]

    harness.ledger.state_of = state_of  # type: ignore[method-assign]
    caplog.set_level(logging.INFO)
    actions = harness.recovery.scan()
    assert actions["error"] == 1 and actions["locked_sent"] == 1
    assert ("scanner_cannot_reconcile", "critical") in [(a["alert"], a["severity"]) for a in _alerts(caplog)]


def test_passes_continue_where_the_last_one_stopped(harness: Harness) -> None:
    from app.services.recovery import RecoveryPolicy, RecoveryService

    harness.fund(1)
    transfers = [_recorded_only(harness, 1, UNIT) for _ in range(5)]
    usdt = harness.deps.catalog.get("USDT")
    for transfer in transfers:
        harness.ledger.lock(transfer, usdt, UNLIMITED)
    small = RecoveryService(harness.deps, harness.settle, RecoveryPolicy(batch_size=2))
    for _ in range(3):
        small.scan()
    assert all(harness.reload(t).status == Status.PENDING for t in transfers)


def test_a_round_ends_even_while_new_transfers_keep_arriving(harness: Harness) -> None:
    from app.services.recovery import RecoveryPolicy, RecoveryService

    harness.fund(1, "100000")
    old = [harness.submit.transfer(harness.command(1, UNIT)).transfer for _ in range(5)]
    deliver_queued(harness.bus)  # the engine lost them all
    small = RecoveryService(harness.deps, harness.settle, RecoveryPolicy(batch_size=2))
    resent: list[int] = []
    for _ in range(12):
        # More new open transfers every pass than one page holds.
        for _ in range(3):
            harness.submit.transfer(harness.command(1, UNIT))
        harness.clock.advance(seconds=31)
        small.scan()
        deliver_queued(harness.bus, lambda requests: resent.extend(r.request_id for r in requests))
    # Without an end to each round the cursor would chase the new ids and
    # never come back to the first ones.
    assert min(resent.count(t.request_id) for t in old) >= 2
