from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from app.domain.errors import IllegalTransition, ValidationFailed
from app.domain.transfer import AccountType, FailureReason, Status, Transfer, TransferCommand, check_transition

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
