"""Operator tools: each refuses anything but pending, is idempotent, and is audited."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.domain.errors import InsufficientBalance
from app.domain.transfer import SETTLEMENT, AccountType, FailureReason, Outcome, Status
from app.ports.bus import EngineResult
from app.ports.ledger import LedgerState
from app.services.operations import NotPending, OperatorService, ReasonRequired
from tests.conftest import record_move
from tests.support.inprocess_bus import deliver_queued
from tests.support.ledger_moves import void_lock
from tests.unit.harness import Harness

UNIT = 10**8


@pytest.fixture
def operations(harness: Harness) -> OperatorService:
    return OperatorService(harness.deps, harness.settle)


def _pending(harness: Harness, units: int = UNIT) -> int:
    harness.fund(1)
    transfer = harness.submit.transfer(harness.command(1, units)).transfer
    deliver_queued(harness.bus)  # the engine's answer is lost
    return transfer.request_id


def test_void_releases_funds_once_and_is_audited(harness: Harness, operations: OperatorService) -> None:
    request_id = _pending(harness, 5 * UNIT)
    voided = operations.void(request_id, "alice", "engine confirmed it never applied this (ticket 17)")
    assert (voided.status, voided.failure_reason) == (Status.FAILED, "VOIDED_BY_OPERATOR")
    again = operations.void(request_id, "alice", "double click")
    assert again.status == Status.FAILED
    assert harness.balance(1, AccountType.FUNDING) == (1000 * UNIT, 0)
    last = harness.store.audit_trail(request_id)[-1]
    assert str(last.actor) == "operator:alice" and "ticket 17" in last.reason


def test_force_post_completes_a_lost_result(harness: Harness, operations: OperatorService) -> None:
    request_id = _pending(harness, 5 * UNIT)
    posted = operations.force_post(request_id, "bob", "engine shows it applied")
    assert posted.status == Status.SUCCESS
    assert operations.force_post(request_id, "bob", "again").status == Status.SUCCESS
    assert harness.balance(1, AccountType.SPOT) == (5 * UNIT, 0)
    report = operations.show(request_id)
    assert report.ledger_state == LedgerState.POSTED and report.agrees
    assert str(report.audit[-1].actor) == "operator:bob"


def test_actions_refuse_anything_but_pending(harness: Harness, operations: OperatorService) -> None:
    request_id = _pending(harness)
    operations.force_post(request_id, "bob", "applied")
    with pytest.raises(NotPending):
        operations.void(request_id, "alice", "too late")
    with pytest.raises(NotPending):
        operations.resend(request_id, "alice", "too late")
    assert harness.reload(harness.store.get(request_id)).status == Status.SUCCESS  # type: ignore[arg-type]


def test_every_action_needs_a_reason(harness: Harness, operations: OperatorService) -> None:
    request_id = _pending(harness)
    with pytest.raises(ReasonRequired):
        operations.void(request_id, "alice", "   ")


def test_resend_reaches_the_engine_and_is_audited(harness: Harness, operations: OperatorService) -> None:
    request_id = _pending(harness)
    operations.resend(request_id, "carol", "engine restarted")
    harness.pump()
    stored = harness.store.get(request_id)
    assert stored is not None and stored.status == Status.SUCCESS
    assert any(
        str(e.actor) == "operator:carol" and "engine restarted" in e.reason
        for e in harness.store.audit_trail(request_id)
    )


def test_stuck_lists_old_open_transfers(harness: Harness, operations: OperatorService) -> None:
    request_id = _pending(harness)
    assert operations.stuck(Status.PENDING, timedelta(minutes=10)) == []
    harness.clock.advance(minutes=11)
    assert [t.request_id for t in operations.stuck(Status.PENDING, timedelta(minutes=10))] == [request_id]
    assert operations.stuck(Status.REQUESTING, timedelta(0)) == []


def test_reconcile_flags_a_store_that_disagrees_with_the_ledger(harness: Harness, operations: OperatorService) -> None:
    request_id = _pending(harness)
    transfer = harness.store.get(request_id)
    assert transfer is not None
    usdt = harness.deps.catalog.get("USDT")
    void_lock(harness.ledger, transfer, usdt)  # voided in the ledger ...
    record_move(harness.store, transfer, Status.SUCCESS, reason="corrupt", now=harness.clock())
    [report] = operations.reconcile(request_id=request_id)
    assert (report.transfer.status, report.ledger_state, report.agrees) == (Status.SUCCESS, LedgerState.VOIDED, False)


def test_reconcile_by_user_reports_each_of_their_transfers(harness: Harness, operations: OperatorService) -> None:
    harness.fund(99)
    pending = harness.submit.transfer(harness.command(99, UNIT)).transfer
    deliver_queued(harness.bus)  # stays pending
    settled = harness.submit.transfer(harness.command(99, UNIT)).transfer
    harness.pump()
    reports = {r.transfer.request_id: r for r in operations.reconcile(user_id=99)}
    # Not vacuous: both transfers are there, each beside the ledger state it agrees with.
    assert set(reports) == {pending.request_id, settled.request_id}
    assert reports[pending.request_id].ledger_state == LedgerState.PENDING
    assert reports[settled.request_id].ledger_state == LedgerState.POSTED
    assert all(r.agrees for r in reports.values())
    assert operations.reconcile(user_id=98) == []


def _voided_by_a_dead_actor(harness: Harness, request_id: int) -> None:
    """The ledger voided it, its author died before recording, and the scanner recorded a bare VOIDED."""
    transfer = harness.store.get(request_id)
    assert transfer is not None
    void_lock(harness.ledger, transfer, harness.deps.catalog.get("USDT"))
    harness.clock.advance(minutes=5)
    assert harness.recovery.scan()["completed_failed"] == 1
    stored = harness.store.get(request_id)
    assert stored is not None and (stored.status, stored.failure_reason) == (Status.FAILED, FailureReason.VOIDED)


def test_a_void_retried_after_the_scanner_recorded_it_keeps_who_and_why(
    harness: Harness, operations: OperatorService
) -> None:
    request_id = _pending(harness)
    # The operator's first void reached the ledger, then its process died.
    _voided_by_a_dead_actor(harness, request_id)
    again = operations.void(request_id, "alice", "ticket 17")
    assert (again.status, again.failure_reason) == (Status.FAILED, FailureReason.VOIDED_BY_OPERATOR)
    stored = harness.store.get(request_id)
    assert stored is not None and stored.failure_reason == FailureReason.VOIDED_BY_OPERATOR
    trail = harness.store.audit_trail(request_id)
    assert [(str(e.actor), e.reason) for e in trail if e.actor.is_operator] == [("operator:alice", "void: ticket 17")]
    # Repeating it is idempotent: the same answer, no 409, no second entry.
    assert operations.void(request_id, "alice", "double click") == stored
    assert len(harness.store.audit_trail(request_id)) == len(trail)
    assert harness.balance(1, AccountType.FUNDING) == (1000 * UNIT, 0)


def test_an_engine_rejection_arriving_after_the_scanner_keeps_its_reason(
    harness: Harness, operations: OperatorService
) -> None:
    request_id = _pending(harness)
    _voided_by_a_dead_actor(harness, request_id)  # settlement voided, then died
    rejection = EngineResult(request_id, Outcome.REJECTED, "no liquidity")
    harness.settle.apply_result(rejection)
    stored = harness.store.get(request_id)
    assert stored is not None and stored.failure_reason == FailureReason.REJECTED_BY_ENGINE
    reasons = [e.reason for e in harness.store.audit_trail(request_id) if e.actor == SETTLEMENT]
    assert reasons == ["rejected by the engine: no liquidity"]
    harness.settle.apply_result(rejection)  # redelivered: recorded once
    assert [e.reason for e in harness.store.audit_trail(request_id) if e.actor == SETTLEMENT] == reasons


def test_the_losing_known_cause_still_joins_the_audit(harness: Harness, operations: OperatorService) -> None:
    request_id = _pending(harness)
    operations.void(request_id, "alice", "ticket 17")
    harness.settle.apply_result(EngineResult(request_id, Outcome.REJECTED, "no liquidity"))
    harness.settle.apply_result(EngineResult(request_id, Outcome.REJECTED, "no liquidity"))
    stored = harness.store.get(request_id)
    assert stored is not None and stored.failure_reason == FailureReason.VOIDED_BY_OPERATOR
    trail = [(str(e.actor), e.reason) for e in harness.store.audit_trail(request_id)]
    assert ("operator:alice", "void: ticket 17") in trail
    lost = ("settlement", "rejected by the engine: no liquidity (already failed: VOIDED_BY_OPERATOR)")
    assert trail.count(lost) == 1


def test_a_rejection_after_a_force_post_is_audited_beside_the_alert(
    harness: Harness, operations: OperatorService, caplog: pytest.LogCaptureFixture
) -> None:
    request_id = _pending(harness)
    operations.force_post(request_id, "bob", "engine shows it applied")
    for _ in range(2):
        harness.settle.apply_result(EngineResult(request_id, Outcome.REJECTED, "account frozen"))
    stored = harness.store.get(request_id)
    assert stored is not None and stored.status == Status.SUCCESS
    assert "settlement_conflict" in caplog.text
    lost = [e for e in harness.store.audit_trail(request_id) if e.actor == SETTLEMENT]
    assert [(e.to_status, e.reason) for e in lost] == [
        (Status.SUCCESS, "rejected by the engine: account frozen (not applied: already success)")
    ]


def test_void_still_refuses_a_transfer_that_never_held_funds(harness: Harness, operations: OperatorService) -> None:
    harness.fund(1, "1")
    with pytest.raises(InsufficientBalance):
        harness.submit.transfer(harness.command(1, 5 * UNIT))
    [failed] = harness.store.history(1, 10).items
    with pytest.raises(NotPending):
        operations.void(failed.request_id, "alice", "why not")
