from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from app.domain.errors import IllegalTransition, ValidationFailed
from app.domain.transfer import (
    FAILURE_ORDER,
    AccountType,
    FailureReason,
    Status,
    Transfer,
    TransferCommand,
    check_transition,
    precedence,
)

FORWARD = {
    (Status.REQUESTING, Status.PENDING),
    (Status.REQUESTING, Status.FAILED),
    (Status.PENDING, Status.SUCCESS),
    (Status.PENDING, Status.FAILED),
}


@pytest.mark.parametrize(("current", "target"), sorted(FORWARD))
def test_forward_transitions_are_allowed(current: Status, target: Status) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [pair for pair in itertools.product(Status, Status) if pair not in FORWARD],
)
def test_every_other_transition_is_refused(current: Status, target: Status) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(current, target)


def test_requesting_cannot_jump_to_success() -> None:
    with pytest.raises(IllegalTransition):
        check_transition(Status.REQUESTING, Status.SUCCESS)


def _command(amount: int = 5) -> TransferCommand:
    return TransferCommand(
        user_id=1, asset="USDT", from_type=AccountType.FUNDING, to_type=AccountType.SPOT, amount=amount
    )


def test_a_failed_transfer_needs_a_reason() -> None:
    transfer = Transfer.new(1, _command(), datetime.now(UTC))
    with pytest.raises(ValueError, match="reason"):
        transfer.moved_to(Status.FAILED, datetime.now(UTC))
    failed = transfer.moved_to(Status.FAILED, datetime.now(UTC), FailureReason.INSUFFICIENT_BALANCE)
    assert failed.status == Status.FAILED and failed.failure_reason == "INSUFFICIENT_BALANCE"


def test_same_account_is_refused() -> None:
    with pytest.raises(ValidationFailed) as caught:
        TransferCommand(user_id=1, asset="USDT", from_type=AccountType.SPOT, to_type=AccountType.SPOT, amount=1)
    assert caught.value.code == "SAME_ACCOUNT"


def test_fingerprint_tells_different_bodies_apart() -> None:
    assert _command(5).fingerprint() == _command(5).fingerprint()
    assert _command(5).fingerprint() != _command(6).fingerprint()


def test_the_causes_of_failure_are_in_one_total_order() -> None:
    assert sorted(FAILURE_ORDER) == sorted(FailureReason) and len(set(FAILURE_ORDER)) == len(FailureReason)
    failed = [precedence(Status.FAILED, cause) for cause in FAILURE_ORDER]
    # No two causes tie, and every one is past `pending` and within Cassandra's 1 ms.
    assert failed == sorted(set(failed)) and precedence(Status.PENDING, None) < failed[0] and failed[-1] < 1000


@pytest.mark.parametrize(
    ("weaker", "stronger"),
    [
        # A refusal the client was answered 422 for outlives the scanner's fence: its replay answers 422 again.
        (FailureReason.NOT_LOCKED, FailureReason.INSUFFICIENT_BALANCE),
        (FailureReason.NOT_LOCKED, FailureReason.DAILY_LIMIT_EXCEEDED),
        (FailureReason.NOT_LOCKED, FailureReason.BATCH_FAILED),
        # A batch's replay names the leg whose own refusal failed it.
        (FailureReason.BATCH_FAILED, FailureReason.INSUFFICIENT_BALANCE),
        (FailureReason.BATCH_FAILED, FailureReason.DAILY_LIMIT_EXCEEDED),
        # Any known cause explains the scanner's bare VOIDED.
        *((FailureReason.VOIDED, cause) for cause in FailureReason if cause != FailureReason.VOIDED),
    ],
)
def test_what_outranks_what_among_failures(weaker: FailureReason, stronger: FailureReason) -> None:
    assert precedence(Status.FAILED, weaker) < precedence(Status.FAILED, stronger)


def test_a_failure_without_a_recorded_cause_ranks_as_the_bare_voided() -> None:
    assert precedence(Status.FAILED, None) == precedence(Status.FAILED, FailureReason.VOIDED)


def test_the_events_guide_lists_the_causes_in_the_domains_order() -> None:
    """Consumers outside this codebase rank two `failed` events by the list in docs/events.md."""
    from app.config import PROJECT_ROOT

    guide = (PROJECT_ROOT / "docs" / "events.md").read_text()
    listed = guide[guide.index("strongest first") :].split("(`FAILURE_ORDER`")[0]
    positions = [listed.index(f"`{cause.value}`") for cause in reversed(FAILURE_ORDER)]
    assert positions == sorted(positions)
