"""The invariant checker finds each kind of damage it is meant to find."""

from __future__ import annotations

from app.domain.transfer import FailureReason, Status, Transfer
from tests.conftest import record_move
from tests.support.invariants import Acknowledged, check_invariants
from tests.unit.harness import Harness

UNIT = 10**8
DEPOSITS = {(1, "USDT"): 1000 * UNIT}


def _settled_run(harness: Harness) -> list[Transfer]:
    harness.fund(1)
    done = [harness.submit.transfer(harness.command(1, n * UNIT), f"k{n}").transfer for n in (1, 2, 3)]
    harness.engine.reject(done[1].request_id)
    harness.pump()
    return done


def test_a_clean_run_has_no_violations(harness: Harness) -> None:
    done = _settled_run(harness)
    acknowledged = [Acknowledged(1, t.request_id, t.idempotency_key) for t in done]
    report = check_invariants(harness.deps, [1], DEPOSITS, acknowledged, harness.engine.applied())
    assert report.ok, report.violations
    assert report.checked_transfers == 3


def test_finds_a_lost_acknowledged_transfer(harness: Harness) -> None:
    _settled_run(harness)
    report = check_invariants(harness.deps, [1], DEPOSITS, [Acknowledged(1, 999, None)])
    assert report.violations == ["acknowledged transfer 999 of user 1 is missing"]


def test_finds_an_open_transfer_and_its_lock(harness: Harness) -> None:
    harness.fund(1)
    stuck = harness.submit.transfer(harness.command(1, UNIT)).transfer
    report = check_invariants(harness.deps, [1], DEPOSITS)
    assert report.violations == [f"transfer {stuck.request_id} is still pending"]
    assert check_invariants(harness.deps, [1], DEPOSITS, allow_open=True).ok


def test_finds_store_and_ledger_disagreeing_and_an_orphaned_lock(harness: Harness) -> None:
    harness.fund(1)
    transfer = harness.submit.transfer(harness.command(1, UNIT)).transfer
    record_move(harness.store, transfer, Status.FAILED, reason="corrupt", failure_reason=FailureReason.NOT_LOCKED)
    violations = check_invariants(harness.deps, [1], DEPOSITS).violations
    assert f"transfer {transfer.request_id}: store says failed, ledger says pending" in violations
    assert any("orphaned lock" in v for v in violations)


def test_finds_money_created_from_nothing(harness: Harness) -> None:
    _settled_run(harness)
    violations = check_invariants(harness.deps, [1], {(1, "USDT"): 999 * UNIT}).violations
    assert violations == [f"user 1 USDT: funding + spot = {1000 * UNIT}, deposits = {999 * UNIT}"]


def test_finds_a_success_the_engine_never_confirmed(harness: Harness) -> None:
    done = _settled_run(harness)
    applied = harness.engine.applied()
    applied[done[0].request_id] = "rejected"
    violations = check_invariants(harness.deps, [1], DEPOSITS, engine_applied=applied).violations
    assert violations == [f"transfer {done[0].request_id} succeeded but the engine recorded rejected"]


def test_finds_a_quota_out_of_step_with_its_transfers(harness: Harness) -> None:
    from app.adapters.embedded_ledger import _Event, _Kind
    from app.domain.account_model import TransferCode, limit_source_account_id, quota_account_id, quota_lock_id
    from app.domain.limits import QuotaKey

    done = _settled_run(harness)
    usdt = harness.deps.catalog.get("USDT")
    key = QuotaKey.of_transfer(done[0], usdt)
    # A quota debit with no lock beside it: what a broken (unlinked) chain would leave.
    stray = _Event(
        quota_lock_id(987654321),
        _Kind.SINGLE,
        debit=quota_account_id(1, usdt.ledger, key.direction, key.day),
        credit=limit_source_account_id(usdt.ledger),
        amount=5,
        ledger=usdt.ledger,
        code=TransferCode.QUOTA_USE,
    )
    with harness.ledger._db.transaction() as conn:
        assert harness.ledger._create_event(conn, stray).value == "ok"
    violations = check_invariants(harness.deps, [1], DEPOSITS).violations
    assert violations == [
        f"user 1 USDT funding_to_spot day {key.day}: quota consumed {4 * UNIT + 5}, posted transfers {4 * UNIT}"
    ]


def test_a_clean_run_uses_exactly_its_posted_transfers_of_the_quota(harness: Harness) -> None:
    from app.domain.limits import QuotaKey

    done = _settled_run(harness)
    usdt = harness.deps.catalog.get("USDT")
    key = QuotaKey.of_transfer(done[0], usdt)
    balance = harness.ledger.quota_balances([key])[key]
    # 1 and 3 posted; 2 rejected by the engine, so voided, its quota released.
    assert (balance.consumed, balance.held) == (4 * UNIT, 0)


def _batch_run(harness: Harness) -> list[Transfer]:
    from app.domain.batch import BatchCommand

    harness.fund(1)
    command = BatchCommand(1, (harness.command(1, UNIT), harness.command(1, 2 * UNIT)))
    view = harness.submit.batch(command, "batch-key").view
    harness.pump()
    return [leg for leg in view.legs if leg is not None]


def test_a_settled_batch_under_one_key_has_no_violations(harness: Harness) -> None:
    legs = _batch_run(harness)
    acknowledged = [Acknowledged(1, leg.request_id, "batch-key") for leg in legs]
    report = check_invariants(harness.deps, [1], DEPOSITS, acknowledged, harness.engine.applied())
    assert report.ok, report.violations
    assert report.checked_transfers == 2


def test_finds_a_batch_whose_legs_ended_differently(harness: Harness) -> None:
    legs = _batch_run(harness)
    # Corrupt the store only (the service could never write this): one leg claims to have failed.
    harness.store._db._conn.execute(  # type: ignore[attr-defined]
        "UPDATE transfers SET status = 'failed', failure_reason = 'VOIDED_BY_OPERATOR' WHERE request_id = ?",
        (legs[1].request_id,),
    )
    violations = check_invariants(harness.deps, [1], DEPOSITS).violations
    assert f"batch {legs[0].batch_id}: some legs succeeded and some failed" in violations
