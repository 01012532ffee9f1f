"""The batch path on the embedded adapters, step by step: settlement, operators and the scanner act on whole batches."""

from __future__ import annotations

import pytest

from app.adapters.bus_messages import decode_request, decode_result, encode_request, encode_result
from app.domain.batch import BatchCommand, BatchStatus, new_batch
from app.domain.errors import ValidationFailed
from app.domain.limits import EffectiveLimit
from app.domain.transfer import AccountType, FailureReason, Outcome, Status, Transfer
from app.ports.bus import EngineBatchRequest, EngineResult
from app.ports.ledger import BatchLeg, IdempotencyClaim
from app.services.operations import OperatorService
from tests.conftest import random_user_id
from tests.unit.harness import Harness


def submit(harness: Harness, user_id: int, *units: int) -> list[Transfer]:
    result = harness.submit.batch(BatchCommand(user_id, tuple(harness.command(user_id, u) for u in units)))
    return [leg for leg in result.view.legs if leg is not None]


def test_a_batch_is_one_engine_message_and_its_answer_settles_every_leg(harness: Harness) -> None:
    user_id = random_user_id()
    harness.fund(user_id)
    legs = submit(harness, user_id, 100, 200)
    queued = harness.bus.link.requests.read(100, wait_seconds=0)
    messages = [message for _, message in queued]
    assert len(messages) == 1 and isinstance(messages[0], EngineBatchRequest)
    assert [leg.request_id for leg in messages[0].legs] == [leg.request_id for leg in legs]
    # The wire form round-trips, with its own schema version.
    assert decode_request(encode_request(messages[0])) == messages[0]
    harness.pump()
    assert [harness.reload(leg).status for leg in legs] == [Status.SUCCESS, Status.SUCCESS]
    assert harness.balance(user_id, AccountType.SPOT) == (300, 0)


def test_an_operator_void_of_one_leg_voids_the_whole_batch_and_the_late_confirmation_loses(harness: Harness) -> None:
    user_id = random_user_id()
    harness.fund(user_id)
    legs = submit(harness, user_id, 100, 200)
    OperatorService(harness.deps, harness.settle).void(legs[1].request_id, "alice", "customer asked")
    assert [harness.reload(leg).failure_reason for leg in legs] == [FailureReason.VOIDED_BY_OPERATOR] * 2
    harness.pump()  # the engine confirms; the void stands for both legs
    assert [harness.reload(leg).status for leg in legs] == [Status.FAILED, Status.FAILED]
    assert harness.balance(user_id, AccountType.FUNDING)[1] == 0
    assert harness.balance(user_id, AccountType.SPOT) == (0, 0)


def test_a_duplicate_batch_answer_changes_nothing(harness: Harness) -> None:
    user_id = random_user_id()
    harness.fund(user_id)
    legs = submit(harness, user_id, 10, 20)
    harness.pump()
    batch_id = legs[0].batch_id
    assert batch_id is not None
    harness.settle.apply_results([EngineResult(batch_id, Outcome.CONFIRMED, batch=True)])
    assert [harness.reload(leg).status for leg in legs] == [Status.SUCCESS, Status.SUCCESS]
    assert harness.balance(user_id, AccountType.SPOT) == (30, 0)


def test_a_half_recorded_batch_is_fenced_and_failed_by_the_scanner_and_never_locks(harness: Harness) -> None:
    """A crash between two legs' store writes: one leg recorded `requesting`, the other not, nothing locked."""
    user_id = random_user_id()
    harness.fund(user_id)
    command = BatchCommand(user_id, (harness.command(user_id, 10), harness.command(user_id, 20)))
    drafted = new_batch(harness.deps.ids.next_block(3), command, harness.clock(), "key-1")
    batch, legs = drafted.batch, [leg for leg in drafted.legs if leg is not None]
    harness.store.record_batch(batch, legs[:1])  # the second leg's write never happened
    harness.clock.advance(minutes=5)
    harness.recovery.scan()
    assert harness.reload(legs[0]).status == Status.FAILED
    # The retry with the key records the missing leg and finds the batch can never lock.
    claim = IdempotencyClaim(batch.batch_id, batch.fingerprint)
    harness.deps.keys.claim_idempotency_key(user_id, "key-1", claim)
    view = harness.submit.batch(command, "key-1").view
    assert view.status == BatchStatus.FAILED
    harness.clock.advance(minutes=5)
    harness.recovery.scan()
    assert [harness.reload(leg).status for leg in legs] == [Status.FAILED, Status.FAILED]
    assert harness.balance(user_id, AccountType.FUNDING) == (1000_00000000, 0)


def test_a_batch_locked_but_recorded_requesting_is_finished_by_the_scanner(harness: Harness) -> None:
    """A crash after the lock, before `pending` was written: the scanner records it and sends the batch once."""
    user_id = random_user_id()
    harness.fund(user_id)
    command = BatchCommand(user_id, (harness.command(user_id, 10), harness.command(user_id, 20)))
    drafted = new_batch(harness.deps.ids.next_block(3), command, harness.clock(), None)
    batch, legs = drafted.batch, [leg for leg in drafted.legs if leg is not None]
    harness.store.record_batch(batch, legs)
    usdt = harness.deps.catalog.get("USDT")
    harness.ledger.lock_batch([BatchLeg(leg, usdt, EffectiveLimit(10**15, 0)) for leg in legs])
    harness.clock.advance(minutes=5)
    harness.recovery.scan()
    assert [harness.reload(leg).status for leg in legs] == [Status.PENDING, Status.PENDING]
    assert len(harness.bus.link.requests.read(100, wait_seconds=0)) == 1  # one batch message, not one per leg
    harness.pump()
    assert [harness.reload(leg).status for leg in legs] == [Status.SUCCESS, Status.SUCCESS]


def test_a_batch_has_two_to_fifty_legs(harness: Harness) -> None:
    user_id = random_user_id()
    with pytest.raises(ValidationFailed):
        BatchCommand(user_id, (harness.command(user_id, 1),))
    with pytest.raises(ValidationFailed):
        BatchCommand(user_id, tuple(harness.command(user_id, 1) for _ in range(51)))


def test_operators_name_a_batch_by_its_id_and_act_on_all_its_legs(harness: Harness) -> None:
    user_id = random_user_id()
    harness.fund(user_id)
    legs = submit(harness, user_id, 100, 200, 300)
    batch_id = legs[0].batch_id
    assert batch_id is not None
    operations = OperatorService(harness.deps, harness.settle)
    reports = operations.reconcile(request_id=batch_id)
    assert [r.transfer.request_id for r in reports] == [leg.request_id for leg in legs]
    assert all(r.agrees for r in reports)
    # The engine's answer is lost; the operator posts the batch by its id.
    operations.force_post(batch_id, "alice", "engine applied it, result lost")
    assert [harness.reload(leg).status for leg in legs] == [Status.SUCCESS] * 3
    assert harness.balance(user_id, AccountType.SPOT) == (600, 0)
    assert [r.agrees for r in operations.reconcile(request_id=legs[2].request_id)] == [True] * 3


@pytest.mark.parametrize(
    "message",
    [
        {"schema_version": 2, "batch_id": "5", "user_id": "7", "legs": []},
        {"schema_version": 2, "batch_id": "5", "user_id": "7", "legs": "x"},
        {"schema_version": 2, "batch_id": 5, "user_id": "7", "legs": [{}]},
        {
            "schema_version": 2,
            "batch_id": "5",
            "user_id": "7",
            "legs": [
                {
                    "request_id": 6,
                    "asset": "USDT",
                    "from_account_type": "funding",
                    "to_account_type": "spot",
                    "amount_units": "1",
                }
            ],
        },
    ],
)
def test_a_malformed_batch_request_is_refused(message: dict[str, object]) -> None:
    with pytest.raises((ValueError, KeyError)):
        decode_request(message)


def test_a_batch_result_names_the_batch_and_a_single_one_the_transfer() -> None:
    batch = encode_result(EngineResult(5, Outcome.CONFIRMED, batch=True))
    assert batch["schema_version"] == 2 and batch["batch_id"] == "5" and "request_id" not in batch
    assert decode_result(batch) == EngineResult(5, Outcome.CONFIRMED, batch=True)
    single = encode_result(EngineResult(5, Outcome.CONFIRMED))
    assert single["schema_version"] == 1 and single["request_id"] == "5"
    assert decode_result(single).batch is False
    with pytest.raises(ValueError):
        decode_result({"schema_version": 2, "request_id": "5", "outcome": "confirmed", "reason": None})


def test_an_answer_for_an_unknown_batch_is_poison_after_the_rest_is_applied(harness: Harness) -> None:
    from app.ports.bus import PoisonMessage

    user_id = random_user_id()
    harness.fund(user_id)
    single = harness.submit.transfer(harness.command(user_id, 10)).transfer
    unknown = harness.deps.ids.next_id()
    with pytest.raises(PoisonMessage, match=str(unknown)):
        harness.settle.apply_results(
            [EngineResult(unknown, Outcome.CONFIRMED, batch=True), EngineResult(single.request_id, Outcome.CONFIRMED)]
        )
    assert harness.reload(single).status == Status.SUCCESS


@pytest.mark.parametrize("outcome", [Outcome.CONFIRMED, Outcome.REJECTED])
@pytest.mark.parametrize("named", [0, 1])
def test_a_result_naming_one_leg_resolves_the_whole_batch(harness: Harness, outcome: Outcome, named: int) -> None:
    """An engine (or a replayed old message) that answers a leg's own request id, not the batch's.

    The legs are locked together and must be resolved together: resolving
    only the named leg would post one half of an all-or-nothing batch.
    """
    user_id = random_user_id()
    harness.fund(user_id)
    funded, _ = harness.balance(user_id, AccountType.FUNDING)
    legs = submit(harness, user_id, 100, 200)
    assert [harness.reload(leg).status for leg in legs] == [Status.PENDING, Status.PENDING]
    assert harness.balance(user_id, AccountType.FUNDING) == (funded - 300, 300)
    harness.settle.apply_results([EngineResult(legs[named].request_id, outcome)])
    stored = [harness.reload(leg) for leg in legs]
    expected = Status.SUCCESS if outcome == Outcome.CONFIRMED else Status.FAILED
    assert [leg.status for leg in stored] == [expected, expected]
    if outcome == Outcome.CONFIRMED:
        assert harness.balance(user_id, AccountType.FUNDING) == (funded - 300, 0)
        assert harness.balance(user_id, AccountType.SPOT) == (300, 0)
    else:
        assert [leg.failure_reason for leg in stored] == [FailureReason.REJECTED_BY_ENGINE] * 2
        assert harness.balance(user_id, AccountType.FUNDING) == (funded, 0)
        assert harness.balance(user_id, AccountType.SPOT) == (0, 0)
    # The batch's own answer, arriving after, agrees and changes nothing.
    harness.pump()
    assert [harness.reload(leg).status for leg in legs] == [expected, expected]
    assert harness.balance(user_id, AccountType.FUNDING)[1] == 0
