"""Deposits: a key and a reason each time, an audit of who and why, one credit per key."""

from __future__ import annotations

import pytest

from app.domain.deposit import deposit_id_for_key
from app.domain.errors import DomainError, IdempotencyKeyReused, ValidationFailed
from app.domain.transfer import AccountType
from tests.unit.harness import Harness

UNIT = 10**8


def test_a_deposit_without_a_key_is_refused_and_credits_nothing(harness: Harness) -> None:
    for missing in (None, ""):
        with pytest.raises(ValidationFailed, match="Idempotency-Key is required"):
            harness.accounts.deposit(5, "USDT", "10", missing, "operator:1", "wire 42")
    assert harness.balance(5, AccountType.FUNDING) == (0, 0)


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_deposit_without_a_usable_reason_is_refused(harness: Harness, reason: str) -> None:
    with pytest.raises(ValidationFailed, match="reason"):
        harness.accounts.deposit(5, "USDT", "10", "dep-1", "operator:1", reason)
    assert harness.balance(5, AccountType.FUNDING) == (0, 0)
    assert harness.store.get_deposit(deposit_id_for_key(5, "dep-1")) is None


@pytest.mark.parametrize("key", ["has space", "ü", "k" * 65, "a\n"])
def test_a_malformed_key_is_refused(harness: Harness, key: str) -> None:
    with pytest.raises(ValidationFailed, match="Idempotency-Key"):
        harness.accounts.deposit(5, "USDT", "10", key, "operator:1", "wire 42")


def test_a_retry_under_one_key_credits_once_and_the_audit_keeps_who_and_why(harness: Harness) -> None:
    first = harness.accounts.deposit(5, "USDT", "10", "dep-1", "operator:1", "wire 42")
    retry = harness.accounts.deposit(5, "USDT", "10", "dep-1", "operator:2", "retry after a timeout")
    assert retry.deposit_id == first.deposit_id == deposit_id_for_key(5, "dep-1")
    assert harness.balance(5, AccountType.FUNDING) == (10 * UNIT, 0)
    audit = harness.store.get_deposit(first.deposit_id)
    assert audit is not None
    assert (audit.user_id, audit.asset, audit.amount) == (5, "USDT", 10 * UNIT)
    assert (audit.operator, audit.reason, audit.idempotency_key) == ("operator:1", "wire 42", "dep-1")
    assert audit.at == harness.clock()


def test_a_key_reused_for_another_deposit_is_refused(harness: Harness) -> None:
    harness.accounts.deposit(5, "USDT", "10", "dep-1", "operator:1", "wire 42")
    for asset, amount in (("USDT", "11"), ("BTC", "10")):
        with pytest.raises(IdempotencyKeyReused):
            harness.accounts.deposit(5, asset, amount, "dep-1", "operator:1", "wire 42")
    assert harness.balance(5, AccountType.FUNDING) == (10 * UNIT, 0)


def test_the_audit_is_written_before_the_credit(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    class LedgerDown(Exception):
        pass

    def down(*_: object) -> object:
        raise LedgerDown

    monkeypatch.setattr(harness.ledger, "deposit", down)
    with pytest.raises(LedgerDown):
        harness.accounts.deposit(5, "USDT", "10", "dep-1", "operator:1", "wire 42")
    # No credit without its audit: the audit is there, and the retry completes the credit.
    assert harness.store.get_deposit(deposit_id_for_key(5, "dep-1")) is not None
    assert harness.balance(5, AccountType.FUNDING) == (0, 0)
    monkeypatch.undo()
    harness.accounts.deposit(5, "USDT", "10", "dep-1", "operator:1", "wire 42")
    assert harness.balance(5, AccountType.FUNDING) == (10 * UNIT, 0)


def test_bad_amounts_and_assets_keep_their_codes(harness: Harness) -> None:
    for asset, amount, code in (("USDT", "0", "INVALID_AMOUNT"), ("XXX", "1", "UNSUPPORTED_ASSET")):
        with pytest.raises(DomainError) as caught:
            harness.accounts.deposit(5, asset, amount, "dep-1", "operator:1", "wire 42")
        assert caught.value.code == code
