"""Operator tools: each refuses anything but pending, is idempotent, and is audited."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.domain.transfer import AccountType, Status
from app.ports.ledger import LedgerState
from app.services.operations import NotPending, OperatorService, ReasonRequired
from tests.conftest import record_move
from tests.support.inprocess_bus import deliver_queued
from tests.unit.harness import Harness

UNIT = 10**8


@pytest.fixture
def operations(harness: Harness) -> OperatorService:
    return OperatorService(harness.transfers)


def _pending(harness: Harness, units: int = UNIT) -> int:
    harness.fund(1)
    transfer = harness.transfers.submit(harness.command(1, units)).transfer
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
    usdt = harness.transfers.catalog.get("USDT")
    harness.ledger.void(transfer, usdt)  # voided in the ledger ...
    record_move(harness.store, transfer, Status.SUCCESS, reason="corrupt", now=harness.clock())
    [report] = operations.reconcile(request_id=request_id)
    assert (report.transfer.status, report.ledger_state, report.agrees) == (Status.SUCCESS, LedgerState.VOIDED, False)
    assert all(r.agrees for r in operations.reconcile(user_id=99))
