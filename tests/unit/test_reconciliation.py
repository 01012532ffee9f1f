"""Continuous reconciliation, and the transfer and scanner metrics, on the embedded adapters."""

from __future__ import annotations

import json
import logging
import time

import pytest
from prometheus_client import REGISTRY

from app.domain.ledger_answers import agrees
from app.domain.transfer import SETTLEMENT, FailureReason, Status
from app.ports.ledger import LedgerState
from app.ports.store import StatusChange
from app.services.reconciliation import ReconciliationPolicy, ReconciliationService
from tests.conftest import make_transfer, random_user_id
from tests.support.ledger_moves import void_lock
from tests.unit.harness import Harness

UNIT = 10**8


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _settled(harness: Harness, user_id: int, units: int) -> int:
    result = harness.submit.transfer(harness.command(user_id, units))
    harness.pump()
    assert harness.reload(result.transfer).status == Status.SUCCESS
    return result.transfer.request_id


def _service(harness: Harness) -> ReconciliationService:
    return ReconciliationService(harness.deps, ReconciliationPolicy())


def test_agreeing_settlements_raise_nothing(harness: Harness) -> None:
    user = random_user_id()
    harness.fund(user)
    _settled(harness, user, 5 * UNIT)
    harness.clock.advance(minutes=1)
    assert _service(harness).run_pass() == []
    assert _metric("internal_transfer_reconcile_mismatches") == 0
    assert _metric("internal_transfer_reconcile_checked") >= 1
    assert _metric("internal_transfer_reconcile_last_success_timestamp_seconds") > time.time() - 60


def test_a_success_the_ledger_voided_is_reported_with_both_sides(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    user = random_user_id()
    harness.fund(user)
    good = _settled(harness, user, 5 * UNIT)
    pending = harness.submit.transfer(harness.command(user, 7 * UNIT)).transfer
    usdt = harness.deps.catalog.get("USDT")
    # The ledger voids it; the store is told success anyway (the bug this job exists to catch).
    void_lock(harness.ledger, pending, usdt)
    told = pending.moved_to(Status.SUCCESS, harness.clock())
    harness.store.record_statuses([StatusChange(pending, told, SETTLEMENT, "a wrong write")])
    harness.clock.advance(minutes=1)
    before = _metric("internal_transfer_ledger_mismatches_total", source="reconciliation")

    with caplog.at_level(logging.CRITICAL, logger="internal_transfer.alerts"):
        mismatches = _service(harness).run_pass()

    assert [(m.transfer.request_id, m.ledger) for m in mismatches] == [(pending.request_id, LedgerState.VOIDED)]
    assert good not in {m.transfer.request_id for m in mismatches}
    assert _metric("internal_transfer_reconcile_mismatches") == 1
    assert _metric("internal_transfer_ledger_mismatches_total", source="reconciliation") == before + 1
    alert = json.loads(caplog.records[-1].getMessage())
    assert alert["alert"] == "ledger_mismatch" and alert["severity"] == "critical"
    assert (alert["store_status"], alert["ledger_state"]) == ("success", "voided")
    assert alert["request_id"] == pending.request_id


def test_transfers_outside_the_window_or_inside_the_grace_are_not_checked(harness: Harness) -> None:
    user = random_user_id()
    harness.fund(user)
    _settled(harness, user, 5 * UNIT)
    service = ReconciliationService(harness.deps, ReconciliationPolicy())
    # Just settled: inside the grace period.
    service.run_pass()
    assert _metric("internal_transfer_reconcile_checked") == 0
    harness.clock.advance(hours=1)
    service.run_pass()
    assert _metric("internal_transfer_reconcile_checked") == 0


@pytest.mark.parametrize(
    ("status", "state", "fine"),
    [
        (Status.SUCCESS, LedgerState.POSTED, True),
        (Status.SUCCESS, LedgerState.VOIDED, False),
        (Status.SUCCESS, LedgerState.PENDING, False),
        (Status.SUCCESS, LedgerState.ABSENT, False),
        (Status.FAILED, LedgerState.VOIDED, True),
        (Status.FAILED, LedgerState.FENCED, True),
        (Status.FAILED, LedgerState.ABSENT, True),
        (Status.FAILED, LedgerState.POSTED, False),
        (Status.FAILED, LedgerState.PENDING, False),
    ],
)
def test_what_agrees(status: Status, state: LedgerState, fine: bool) -> None:
    transfer = make_transfer(1, UNIT)
    terminal = transfer.moved_to(Status.PENDING, transfer.created_at).moved_to(
        status, transfer.created_at, FailureReason.VOIDED if status == Status.FAILED else None
    )
    assert agrees(terminal, state) is fine


def test_transfer_outcomes_and_settle_latency_are_counted(harness: Harness) -> None:
    user = random_user_id()
    harness.fund(user, "10")
    accepted = _metric("internal_transfer_transfers_total", outcome="accepted", failure_reason="")
    success = _metric("internal_transfer_transfers_total", outcome="success", failure_reason="")
    insufficient = _metric("internal_transfer_transfers_total", outcome="failed", failure_reason="INSUFFICIENT_BALANCE")
    settled = _metric("internal_transfer_settle_duration_seconds_count", outcome="success")
    _settled(harness, user, 5 * UNIT)
    with pytest.raises(Exception, match="enough"):
        harness.submit.transfer(harness.command(user, 500 * UNIT))
    assert _metric("internal_transfer_transfers_total", outcome="accepted", failure_reason="") == accepted + 1
    assert _metric("internal_transfer_transfers_total", outcome="success", failure_reason="") == success + 1
    failed = _metric("internal_transfer_transfers_total", outcome="failed", failure_reason="INSUFFICIENT_BALANCE")
    assert failed == insufficient + 1
    assert _metric("internal_transfer_settle_duration_seconds_count", outcome="success") == settled + 1


def test_a_scanner_pass_records_its_time_and_the_backlog(harness: Harness) -> None:
    user = random_user_id()
    harness.fund(user)
    harness.submit.transfer(harness.command(user, UNIT))  # pending: the engine has not answered
    harness.clock.advance(minutes=40)
    resent = _metric("internal_transfer_scanner_actions_total", action="resent")
    harness.recovery.scan()
    assert _metric("internal_transfer_scanner_last_success_timestamp_seconds") > time.time() - 60
    assert _metric("internal_transfer_open", status="pending") >= 1
    assert _metric("internal_transfer_oldest_pending_seconds") >= 40 * 60
    assert _metric("internal_transfer_scanner_actions_total", action="resent") == resent + 1


def test_a_pass_that_hits_its_limit_says_so(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    user = random_user_id()
    harness.fund(user)
    for units in (UNIT, 2 * UNIT):
        _settled(harness, user, units)
    harness.clock.advance(minutes=1)
    service = ReconciliationService(harness.deps, ReconciliationPolicy(limit=1))
    with caplog.at_level(logging.WARNING, logger="internal_transfer.reconciliation"):
        service.run_pass()
    assert _metric("internal_transfer_reconcile_checked") == 1
    assert any("only the first 1" in r.getMessage() for r in caplog.records)


def test_a_batch_whose_legs_are_stored_differently_is_raised(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    from app.domain.batch import BatchCommand

    user = random_user_id()
    harness.fund(user)
    command = BatchCommand(user, (harness.command(user, UNIT), harness.command(user, 2 * UNIT)))
    legs = [leg for leg in harness.submit.batch(command).view.legs if leg is not None]
    harness.pump()
    harness.clock.advance(minutes=1)
    assert _service(harness).run_pass() == []
    # A store that recorded one leg failed (the service never does: legs resolve together).
    harness.store._db._conn.execute(  # type: ignore[attr-defined]
        "UPDATE transfers SET status = 'failed', failure_reason = 'VOIDED' WHERE request_id = ?",
        (legs[0].request_id,),
    )
    with caplog.at_level(logging.CRITICAL, logger="internal_transfer.alerts"):
        _service(harness).run_pass()
    alerts = [json.loads(r.getMessage()) for r in caplog.records if r.name == "internal_transfer.alerts"]
    assert {
        "alert": "batch_split",
        "severity": "critical",
        "batch_id": legs[0].batch_id,
        "statuses": ["failed", "success"],
    } in alerts
