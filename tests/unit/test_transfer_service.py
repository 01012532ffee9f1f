"""The service layer, on the embedded adapters, one step at a time."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.domain.errors import IdempotencyKeyReused, InsufficientBalance
from app.domain.transfer import AccountType, AuditActor, FailureReason, Outcome, Status
from app.ports.bus import EngineResult, PoisonMessage
from app.ports.errors import DependencyUnavailable
from app.ports.ledger import IdempotencyClaim, LedgerState
from tests.unit.harness import Harness

UNIT = 10**8  # one USDT


def test_submit_locks_then_settlement_posts(harness: Harness) -> None:
    harness.fund(1)
    result = harness.submit.transfer(harness.command(1, 100 * UNIT))
    assert not result.replayed
    assert result.transfer.status == Status.PENDING
    assert harness.balance(1, AccountType.FUNDING) == (900 * UNIT, 100 * UNIT)
    assert harness.pump() == 2
    assert harness.reload(result.transfer).status == Status.SUCCESS
    assert harness.balance(1, AccountType.FUNDING) == (900 * UNIT, 0)
    assert harness.balance(1, AccountType.SPOT) == (100 * UNIT, 0)


def test_engine_rejection_releases_the_funds(harness: Harness) -> None:
    harness.fund(1)
    transfer = harness.submit.transfer(harness.command(1, 100 * UNIT)).transfer
    harness.engine.reject(transfer.request_id)
    harness.pump()
    failed = harness.reload(transfer)
    assert failed.status == Status.FAILED and failed.failure_reason == "REJECTED_BY_ENGINE"
    assert harness.balance(1, AccountType.FUNDING) == (1000 * UNIT, 0)
    assert harness.balance(1, AccountType.SPOT) == (0, 0)


def test_insufficient_balance_is_recorded_as_failed(harness: Harness) -> None:
    harness.fund(1, "10")
    with pytest.raises(InsufficientBalance) as caught:
        harness.submit.transfer(harness.command(1, 11 * UNIT))
    request_id = int(caught.value.details["request_id"])
    stored = harness.store.get(request_id)
    assert stored is not None and stored.status == Status.FAILED
    assert stored.failure_reason == "INSUFFICIENT_BALANCE"
    assert harness.balance(1, AccountType.FUNDING) == (10 * UNIT, 0)


def test_replay_returns_the_original_whatever_its_state(harness: Harness) -> None:
    harness.fund(1)
    first = harness.submit.transfer(harness.command(1, 5 * UNIT), "key-1")
    again = harness.submit.transfer(harness.command(1, 5 * UNIT), "key-1")
    assert again.replayed and again.transfer.request_id == first.transfer.request_id
    assert again.transfer.status == Status.PENDING
    harness.pump()
    settled = harness.submit.transfer(harness.command(1, 5 * UNIT), "key-1")
    assert settled.transfer.status == Status.SUCCESS
    assert harness.balance(1, AccountType.SPOT) == (5 * UNIT, 0)


def test_replay_of_a_refused_transfer_returns_it_failed(harness: Harness) -> None:
    harness.fund(1, "1")
    with pytest.raises(InsufficientBalance):
        harness.submit.transfer(harness.command(1, 2 * UNIT), "key-1")
    replay = harness.submit.transfer(harness.command(1, 2 * UNIT), "key-1")
    assert replay.replayed and replay.transfer.status == Status.FAILED


def test_key_reuse_with_another_body_is_refused(harness: Harness) -> None:
    harness.fund(1)
    harness.submit.transfer(harness.command(1, 5 * UNIT), "key-1")
    with pytest.raises(IdempotencyKeyReused):
        harness.submit.transfer(harness.command(1, 6 * UNIT), "key-1")


def test_keys_belong_to_their_user(harness: Harness) -> None:
    harness.fund(1)
    harness.fund(2)
    a = harness.submit.transfer(harness.command(1, 5 * UNIT), "shared")
    b = harness.submit.transfer(harness.command(2, 5 * UNIT), "shared")
    assert a.transfer.request_id != b.transfer.request_id and not b.replayed


def test_concurrent_duplicates_make_one_transfer(harness: Harness) -> None:
    harness.fund(1)
    start = threading.Barrier(10)

    def submit(_: int) -> int:
        start.wait()
        return harness.submit.transfer(harness.command(1, 7 * UNIT), "double-click").transfer.request_id

    with ThreadPoolExecutor(10) as pool:
        ids = set(pool.map(submit, range(10)))
    assert len(ids) == 1
    assert harness.balance(1, AccountType.FUNDING) == (993 * UNIT, 7 * UNIT)
    assert len(harness.store.history(1, 100).items) == 1


def test_a_key_claimed_by_a_crashed_attempt_is_finished_by_the_retry(harness: Harness) -> None:
    harness.fund(1)
    command = harness.command(1, 5 * UNIT)
    crashed = harness.deps.ids.next_id()
    harness.deps.keys.claim_idempotency_key(
        1, "k", IdempotencyClaim(request_id=crashed, fingerprint=command.fingerprint())
    )
    result = harness.submit.transfer(command, "k")
    assert result.transfer.request_id == crashed and result.transfer.status == Status.PENDING


def test_a_key_claimed_long_ago_and_never_recorded_is_finished_and_visible_to_the_scanner(
    harness: Harness,
) -> None:
    harness.fund(1)
    command = harness.command(1, 5 * UNIT)
    ancient = harness.deps.ids.next_id()
    harness.deps.keys.claim_idempotency_key(
        1, "k", IdempotencyClaim(request_id=ancient, fingerprint=command.fingerprint())
    )
    harness.clock.advance(days=3)  # the retry comes days later
    result = harness.submit.transfer(command, "k")
    assert result.transfer.request_id == ancient and result.transfer.status == Status.PENDING
    assert ancient in {t.request_id for t in harness.store.open_transfers().items}
    assert harness.submit.transfer(command, "k").transfer.request_id == ancient


def test_a_request_id_drawn_twice_never_shows_one_user_anothers_transfer(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Leased worker ids make this impossible; should it happen anyway, the
    # clash is refused loudly rather than answered with someone else's transfer.
    harness.fund(1)
    harness.fund(2)
    theirs = harness.submit.transfer(harness.command(1, UNIT), "a").transfer
    clash = iter([theirs.request_id])
    real_next = harness.deps.ids.next_block
    harness.deps.ids.next_block = lambda count: next(clash, None) or real_next(count)  # type: ignore[method-assign]
    caplog.set_level(logging.INFO)
    with pytest.raises(RuntimeError):
        harness.submit.transfer(harness.command(2, 2 * UNIT), "b")
    assert any("request_id_clash" in r.getMessage() for r in caplog.records)
    assert harness.reload(theirs) == theirs
    assert harness.balance(2, AccountType.FUNDING) == (1000 * UNIT, 0)


def test_duplicate_and_late_results_change_nothing(harness: Harness) -> None:
    harness.fund(1)
    transfer = harness.submit.transfer(harness.command(1, 5 * UNIT)).transfer
    harness.pump()
    harness.settle.apply_result(EngineResult(transfer.request_id, Outcome.CONFIRMED))
    harness.settle.apply_result(EngineResult(transfer.request_id, Outcome.REJECTED, "late"))
    assert harness.reload(transfer).status == Status.SUCCESS
    assert harness.balance(1, AccountType.SPOT) == (5 * UNIT, 0)


def test_a_result_for_an_unknown_request_is_poison(harness: Harness) -> None:
    with pytest.raises(PoisonMessage):
        harness.settle.apply_result(EngineResult(123456, Outcome.CONFIRMED))


def test_a_failed_publish_leaves_the_transfer_pending_for_the_scanner(harness: Harness) -> None:
    harness.fund(1)

    def broken(_: object) -> None:
        raise DependencyUnavailable("bus", "broker down")

    original = harness.bus.publish_request
    harness.bus.publish_request = broken  # type: ignore[assignment]
    with pytest.raises(DependencyUnavailable) as caught:
        harness.submit.transfer(harness.command(1, 5 * UNIT), "k")
    request_id = caught.value.request_id
    assert request_id is not None
    stored = harness.store.get(request_id)
    assert stored is not None and stored.status == Status.PENDING
    harness.bus.publish_request = original  # type: ignore[method-assign]
    harness.clock.advance(seconds=31)
    assert harness.recovery.scan()["resent"] == 1
    harness.pump()
    assert harness.reload(stored).status == Status.SUCCESS


def test_operator_void_then_engine_confirm_keeps_the_ledger_truth(harness: Harness) -> None:
    harness.fund(1)
    transfer = harness.submit.transfer(harness.command(1, 5 * UNIT)).transfer
    harness.settle.void(transfer, AuditActor.operator("alice"), "operator void", FailureReason.VOIDED_BY_OPERATOR)
    harness.pump()  # the engine confirms afterwards
    stored = harness.reload(transfer)
    assert stored.status == Status.FAILED
    assert harness.ledger.state_of(stored, harness.deps.catalog.get("USDT")) == LedgerState.VOIDED
    assert harness.balance(1, AccountType.FUNDING) == (1000 * UNIT, 0)
