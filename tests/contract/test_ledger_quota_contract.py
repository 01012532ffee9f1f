"""The Ledger contract for daily quotas: the ledger itself refuses a lock past the day's limit.

Runs on every ledger (the embedded one and TigerBeetle when TIGERBEETLE_BIN is set).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.adapters.embedded_ledger import EmbeddedLedger, _Event, _Kind
from app.adapters.tigerbeetle_ledger import TigerBeetleLedger
from app.domain.account_model import (
    Direction,
    TransferCode,
    account_id,
    limit_source_account_id,
    lock_id,
    quota_account_id,
    quota_lock_id,
)
from app.domain.limits import EffectiveLimit, QuotaBalance, QuotaKey, QuotaOpening, utc_day
from app.domain.money import Asset
from app.domain.transfer import AccountType, Transfer
from app.ports.errors import LedgerInvariantBroken
from app.ports.ledger import DepositOutcome, FenceOutcome, Ledger, LedgerState, LockOutcome, Resolution
from tests.conftest import make_transfer, random_request_id, random_user_id
from tests.support.ledger_moves import post_lock, void_lock


def funded_user(ledger: Ledger, asset: Asset, amount: int) -> int:
    user_id = random_user_id()
    assert ledger.deposit(random_request_id(), user_id, asset, amount) == DepositOutcome.CREDITED
    return user_id


def quota_of(ledger: Ledger, transfer: Transfer, asset: Asset) -> QuotaBalance:
    key = QuotaKey.of_transfer(transfer, asset)
    return ledger.quota_balances([key])[key]


def limit(units: int, version: int = 0) -> EffectiveLimit:
    return EffectiveLimit(units, version)


def test_a_lock_within_the_limit_holds_the_quota_and_a_retry_holds_it_once(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    transfer = make_transfer(user_id, 60)
    assert ledger.lock(transfer, usdt, limit(100)) == LockOutcome.LOCKED
    assert ledger.lock(transfer, usdt, limit(100)) == LockOutcome.LOCKED
    assert quota_of(ledger, transfer, usdt) == QuotaBalance(granted=100, consumed=0, held=60)


def test_a_lock_past_the_limit_is_refused_and_changes_nothing(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    first, second = make_transfer(user_id, 60), make_transfer(user_id, 41)
    assert ledger.lock(first, usdt, limit(100)) == LockOutcome.LOCKED
    assert ledger.lock(second, usdt, limit(100)) == LockOutcome.LIMIT_EXCEEDED
    balances = {b.account_type: b for b in ledger.balances(user_id, [usdt])}
    assert (balances[AccountType.FUNDING].available, balances[AccountType.FUNDING].locked) == (940, 60)
    assert quota_of(ledger, first, usdt).remaining == 40
    assert ledger.state_of(second, usdt) == LedgerState.ABSENT
    # Refused for good, as TigerBeetle keeps a failed id failed: a raise does not revive it.
    key = QuotaKey.of_transfer(second, usdt)
    ledger.adjust_quota(key, [(1, 1000)])
    assert ledger.lock(second, usdt, limit(100)) == LockOutcome.LIMIT_EXCEEDED
    assert ledger.lock(replace(second, request_id=random_request_id()), usdt, limit(100)) == LockOutcome.LOCKED


def test_insufficient_balance_and_limit_exceeded_are_told_apart(ledger: Ledger, usdt: Asset) -> None:
    rich_in_quota = funded_user(ledger, usdt, 50)
    assert ledger.lock(make_transfer(rich_in_quota, 51), usdt, limit(1000)) == LockOutcome.INSUFFICIENT_BALANCE
    short_of_quota = funded_user(ledger, usdt, 50)
    assert ledger.lock(make_transfer(short_of_quota, 50), usdt, limit(49)) == LockOutcome.LIMIT_EXCEEDED
    # Both short: the balance is judged first.
    assert ledger.lock(make_transfer(short_of_quota, 51), usdt, limit(49)) == LockOutcome.INSUFFICIENT_BALANCE
    # Neither refusal took anything.
    for user_id in (rich_in_quota, short_of_quota):
        assert {b.locked for b in ledger.balances(user_id, [usdt])} == {0}


def test_directions_have_separate_quotas(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    out = make_transfer(user_id, 100)
    assert ledger.lock(out, usdt, limit(100)) == LockOutcome.LOCKED
    assert post_lock(ledger, out, usdt).value == "posted"
    back = make_transfer(user_id, 100, from_type=AccountType.SPOT)
    assert ledger.lock(back, usdt, limit(100)) == LockOutcome.LOCKED
    assert QuotaKey.of_transfer(back, usdt).direction == Direction.SPOT_TO_FUNDING
    assert quota_of(ledger, out, usdt) == QuotaBalance(granted=100, consumed=100, held=0)
    assert quota_of(ledger, back, usdt) == QuotaBalance(granted=100, consumed=0, held=100)


def test_a_post_consumes_the_quota_and_a_void_releases_it(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    posted, voided = make_transfer(user_id, 30), make_transfer(user_id, 50)
    for transfer in (posted, voided):
        assert ledger.lock(transfer, usdt, limit(100)) == LockOutcome.LOCKED
    outcomes = ledger.resolve_many([Resolution(posted, usdt, post=True), Resolution(voided, usdt, post=False)])
    assert [o.value for o in outcomes] == ["posted", "voided"]
    assert quota_of(ledger, posted, usdt) == QuotaBalance(granted=100, consumed=30, held=0)
    # Retries and the losing resolution change nothing.
    ledger.resolve_many([Resolution(posted, usdt, post=True), Resolution(voided, usdt, post=True)])
    assert void_lock(ledger, posted, usdt).value == "posted"
    assert quota_of(ledger, posted, usdt) == QuotaBalance(granted=100, consumed=30, held=0)
    # What the void released can be used again.
    assert ledger.lock(make_transfer(user_id, 70), usdt, limit(100)) == LockOutcome.LOCKED


def test_a_lock_made_yesterday_settles_against_yesterdays_quota(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    old = replace(make_transfer(user_id, 80), created_at=yesterday, updated_at=yesterday)
    assert ledger.lock(old, usdt, limit(100)) == LockOutcome.LOCKED
    today = make_transfer(user_id, 100)
    # Today's quota is whole: yesterday's lock does not count against it.
    assert ledger.lock(today, usdt, limit(100)) == LockOutcome.LOCKED
    assert post_lock(ledger, old, usdt).value == "posted"
    assert quota_of(ledger, old, usdt) == QuotaBalance(granted=100, consumed=80, held=0)
    assert quota_of(ledger, today, usdt) == QuotaBalance(granted=100, consumed=0, held=100)
    assert utc_day(yesterday) + 1 == QuotaKey.of_transfer(today, usdt).day


def test_a_fenced_id_never_takes_quota(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    transfer = make_transfer(user_id, 40)
    assert ledger.fence(transfer, usdt) == FenceOutcome.FENCED
    assert ledger.lock(transfer, usdt, limit(100)) == LockOutcome.FENCED
    assert quota_of(ledger, transfer, usdt) == QuotaBalance(granted=100, consumed=0, held=0)


def test_opening_a_quota_twice_keeps_the_first_limit_and_its_version(ledger: Ledger, usdt: Asset) -> None:
    key = QuotaKey(random_user_id(), usdt, Direction.FUNDING_TO_SPOT, utc_day(datetime.now(UTC)))
    assert ledger.quota_opening(key) is None
    assert ledger.quota_balances([key]) == {}
    ledger.open_quota(key, 100, 3)
    ledger.open_quota(key, 500, 4)
    assert ledger.quota_opening(key) == QuotaOpening(version=3, limit=100)
    assert ledger.quota_balances([key]) == {key: QuotaBalance(granted=100, consumed=0, held=0)}


def test_adjustments_raise_and_cut_once_per_version_and_never_below_what_is_used(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    transfer = make_transfer(user_id, 70)
    assert ledger.lock(transfer, usdt, limit(100)) == LockOutcome.LOCKED
    key = QuotaKey.of_transfer(transfer, usdt)
    ledger.adjust_quota(key, [(1, 50)])
    ledger.adjust_quota(key, [(1, 50)])  # a retry of the same version
    assert ledger.quota_balances([key])[key] == QuotaBalance(granted=150, consumed=0, held=70)
    # Cut 100 with 80 remaining: the 80 goes now, 20 is owed; the 70 locked stays locked.
    ledger.adjust_quota(key, [(2, -100)])
    ledger.adjust_quota(key, [(1, 50), (2, -100)])
    balance = ledger.quota_balances([key])[key]
    assert (balance.limit, balance.used, balance.remaining, balance.held) == (50, 70, 0, 70)
    assert (balance.cut_asked, balance.cut_taken, balance.available_in_ledger) == (100, 80, 0)
    assert ledger.lock(make_transfer(user_id, 1), usdt, limit(100)) == LockOutcome.LIMIT_EXCEEDED
    # The locked transfer still settles.
    assert post_lock(ledger, transfer, usdt).value == "posted"


def test_concurrent_locks_never_overrun_the_limit(ledger: Ledger, usdt: Asset) -> None:
    """The race: 30 locks of 10 against a limit of 120 (and a balance of 1000): exactly 12 lock."""
    user_id = funded_user(ledger, usdt, 1000)
    transfers = [make_transfer(user_id, 10) for _ in range(30)]
    start = threading.Barrier(len(transfers))

    def lock(transfer: Transfer) -> LockOutcome:
        start.wait()
        return ledger.lock(transfer, usdt, limit(120))

    with ThreadPoolExecutor(len(transfers)) as pool:
        outcomes = list(pool.map(lock, transfers))
    assert outcomes.count(LockOutcome.LOCKED) == 12
    assert outcomes.count(LockOutcome.LIMIT_EXCEEDED) == 18
    assert quota_of(ledger, transfers[0], usdt) == QuotaBalance(granted=120, consumed=0, held=120)
    locked = {b.account_type: b.locked for b in ledger.balances(user_id, [usdt])}
    assert locked[AccountType.FUNDING] == 120


def _lock_without_quota(ledger: Ledger, transfer: Transfer, asset: Asset) -> None:
    """A lock as the service made it before limits existed: the move's pending transfer alone."""
    if isinstance(ledger, EmbeddedLedger):
        with ledger._db.transaction() as conn:
            result = ledger._create_event(conn, ledger_lock_event(transfer, asset))
        assert result.value == "ok"
    else:
        assert isinstance(ledger, TigerBeetleLedger)
        event = ledger._lock_event(transfer, asset, fence=False)
        (status,) = ledger._create_transfers("legacy lock", [event])
        assert status.name == "CREATED"


def ledger_lock_event(transfer: Transfer, asset: Asset) -> _Event:
    return _Event(
        lock_id(transfer.request_id),
        _Kind.PENDING,
        debit=account_id(transfer.user_id, transfer.from_type, asset.ledger),
        credit=account_id(transfer.user_id, transfer.to_type, asset.ledger),
        amount=transfer.amount,
        ledger=asset.ledger,
        code=TransferCode.INTERNAL_TRANSFER,
    )


def test_a_lock_from_before_limits_is_still_posted_and_voided(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    posted, voided = make_transfer(user_id, 30), make_transfer(user_id, 50)
    for transfer in (posted, voided):
        _lock_without_quota(ledger, transfer, usdt)
    with_quota = make_transfer(user_id, 20)
    assert ledger.lock(with_quota, usdt, limit(100)) == LockOutcome.LOCKED
    outcomes = ledger.resolve_many(
        [
            Resolution(posted, usdt, post=True),
            Resolution(with_quota, usdt, post=True),
            Resolution(voided, usdt, post=False),
        ]
    )
    assert [o.value for o in outcomes] == ["posted", "posted", "voided"]
    assert [o.value for o in ledger.resolve_many([Resolution(posted, usdt, post=True)])] == ["posted"]
    balances = {b.account_type: b for b in ledger.balances(user_id, [usdt])}
    assert (balances[AccountType.FUNDING].available, balances[AccountType.FUNDING].locked) == (950, 0)
    assert balances[AccountType.SPOT].available == 50
    assert quota_of(ledger, with_quota, usdt) == QuotaBalance(granted=100, consumed=20, held=0)


def test_state_of_refuses_a_quota_debit_out_of_step_with_its_lock(ledger: Ledger, usdt: Asset) -> None:
    """Reconciliation and the scanner read state_of: a quota debit without its lock is reported loudly."""
    user_id = funded_user(ledger, usdt, 1000)
    fine = make_transfer(user_id, 10)
    assert ledger.lock(fine, usdt, limit(100)) == LockOutcome.LOCKED
    assert ledger.state_of(fine, usdt) == LedgerState.PENDING
    assert void_lock(ledger, fine, usdt).value == "voided"
    assert ledger.state_of(fine, usdt) == LedgerState.VOIDED
    orphan = make_transfer(user_id, 10)
    if isinstance(ledger, EmbeddedLedger):
        quota = QuotaKey.of_transfer(orphan, usdt)
        event = _Event(
            quota_lock_id(orphan.request_id),
            _Kind.PENDING,
            debit=quota_account_id(user_id, usdt.ledger, quota.direction, quota.day),
            credit=limit_source_account_id(usdt.ledger),
            amount=10,
            ledger=usdt.ledger,
            code=TransferCode.QUOTA_USE,
        )
        with ledger._db.transaction() as conn:
            assert ledger._create_event(conn, event).value == "ok"
    else:
        assert isinstance(ledger, TigerBeetleLedger)
        (status,) = ledger._create_transfers("orphan", [ledger._quota_use_event(orphan, usdt)])
        assert status.name == "CREATED"
    with pytest.raises(LedgerInvariantBroken):
        ledger.state_of(orphan, usdt)
