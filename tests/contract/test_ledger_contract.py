"""The Ledger contract: every implementation keeps TigerBeetle's rules."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from app.domain.money import Asset
from app.domain.transfer import AccountType
from app.ports.ledger import (
    AccountBalance,
    DepositOutcome,
    FenceOutcome,
    Ledger,
    LedgerState,
    LockOutcome,
    Resolution,
    ResolveOutcome,
)
from tests.conftest import make_transfer, random_request_id, random_user_id
from tests.support.ledger_moves import post_lock, void_lock
from tests.support.quotas import UNLIMITED


def balance_of(ledger: Ledger, user_id: int, asset: Asset) -> dict[AccountType, AccountBalance]:
    return {b.account_type: b for b in ledger.balances(user_id, [asset]) if b.asset == asset.symbol}


def funded_user(ledger: Ledger, asset: Asset, amount: int) -> int:
    user_id = random_user_id()
    assert ledger.deposit(random_request_id(), user_id, asset, amount) == DepositOutcome.CREDITED
    return user_id


def test_deposit_credits_funding_once_per_id(ledger: Ledger, usdt: Asset) -> None:
    user_id, deposit_id = random_user_id(), random_request_id()
    assert ledger.deposit(deposit_id, user_id, usdt, 500) == DepositOutcome.CREDITED
    assert ledger.deposit(deposit_id, user_id, usdt, 500) == DepositOutcome.CREDITED
    balances = balance_of(ledger, user_id, usdt)
    assert balances[AccountType.FUNDING].available == 500
    assert balances[AccountType.SPOT].available == 0


def test_deposit_id_reused_for_another_amount_is_a_conflict(ledger: Ledger, usdt: Asset) -> None:
    user_id, deposit_id = random_user_id(), random_request_id()
    ledger.deposit(deposit_id, user_id, usdt, 500)
    assert ledger.deposit(deposit_id, user_id, usdt, 501) == DepositOutcome.CONFLICT
    assert balance_of(ledger, user_id, usdt)[AccountType.FUNDING].available == 500


def test_lock_beyond_balance_is_refused_and_changes_nothing(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    assert ledger.lock(make_transfer(user_id, 101), usdt, UNLIMITED) == LockOutcome.INSUFFICIENT_BALANCE
    balances = balance_of(ledger, user_id, usdt)
    assert (balances[AccountType.FUNDING].available, balances[AccountType.FUNDING].locked) == (100, 0)


def test_lock_for_a_user_without_accounts_is_insufficient(ledger: Ledger, usdt: Asset) -> None:
    assert ledger.lock(make_transfer(random_user_id(), 1), usdt, UNLIMITED) == LockOutcome.INSUFFICIENT_BALANCE


def test_lock_moves_funds_to_locked_and_retry_locks_once(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    transfer = make_transfer(user_id, 60)
    assert ledger.lock(transfer, usdt, UNLIMITED) == LockOutcome.LOCKED
    assert ledger.lock(transfer, usdt, UNLIMITED) == LockOutcome.LOCKED
    balances = balance_of(ledger, user_id, usdt)
    assert (balances[AccountType.FUNDING].available, balances[AccountType.FUNDING].locked) == (40, 60)
    assert balances[AccountType.SPOT].available == 0
    assert ledger.state_of(transfer, usdt) == LedgerState.PENDING


def test_concurrent_locks_never_overdraw(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    transfers = [make_transfer(user_id, 10) for _ in range(25)]
    start = threading.Barrier(len(transfers))

    def lock(transfer: object) -> LockOutcome:
        start.wait()
        return ledger.lock(transfer, usdt, UNLIMITED)  # type: ignore[arg-type]

    with ThreadPoolExecutor(len(transfers)) as pool:
        outcomes = list(pool.map(lock, transfers))
    assert outcomes.count(LockOutcome.LOCKED) == 10
    assert outcomes.count(LockOutcome.INSUFFICIENT_BALANCE) == 15
    funding = balance_of(ledger, user_id, usdt)[AccountType.FUNDING]
    assert (funding.available, funding.locked) == (0, 100)


def test_post_moves_funds_once(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    transfer = make_transfer(user_id, 30)
    ledger.lock(transfer, usdt, UNLIMITED)
    assert post_lock(ledger, transfer, usdt) == ResolveOutcome.POSTED
    assert post_lock(ledger, transfer, usdt) == ResolveOutcome.POSTED
    balances = balance_of(ledger, user_id, usdt)
    assert (balances[AccountType.FUNDING].available, balances[AccountType.FUNDING].locked) == (70, 0)
    assert balances[AccountType.SPOT].available == 30
    assert ledger.state_of(transfer, usdt) == LedgerState.POSTED


def test_void_releases_funds_once(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    transfer = make_transfer(user_id, 30)
    ledger.lock(transfer, usdt, UNLIMITED)
    assert void_lock(ledger, transfer, usdt) == ResolveOutcome.VOIDED
    assert void_lock(ledger, transfer, usdt) == ResolveOutcome.VOIDED
    balances = balance_of(ledger, user_id, usdt)
    assert (balances[AccountType.FUNDING].available, balances[AccountType.FUNDING].locked) == (100, 0)
    assert balances[AccountType.SPOT].available == 0
    assert ledger.state_of(transfer, usdt) == LedgerState.VOIDED


def test_post_after_void_reports_the_void_and_moves_nothing(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    transfer = make_transfer(user_id, 30)
    ledger.lock(transfer, usdt, UNLIMITED)
    void_lock(ledger, transfer, usdt)
    assert post_lock(ledger, transfer, usdt) == ResolveOutcome.VOIDED
    assert balance_of(ledger, user_id, usdt)[AccountType.SPOT].available == 0


def test_void_after_post_reports_the_post_and_moves_nothing(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    transfer = make_transfer(user_id, 30)
    ledger.lock(transfer, usdt, UNLIMITED)
    post_lock(ledger, transfer, usdt)
    assert void_lock(ledger, transfer, usdt) == ResolveOutcome.POSTED
    assert balance_of(ledger, user_id, usdt)[AccountType.FUNDING].available == 70


def test_concurrent_post_and_void_resolve_exactly_once(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    for _ in range(5):
        transfer = make_transfer(user_id, 10)
        ledger.lock(transfer, usdt, UNLIMITED)
        start = threading.Barrier(2)

        def resolve(post: bool, transfer: object = transfer, start: threading.Barrier = start) -> ResolveOutcome:
            start.wait()
            return (post_lock if post else void_lock)(ledger, transfer, usdt)  # type: ignore[arg-type]

        with ThreadPoolExecutor(2) as pool:
            outcomes = set(pool.map(resolve, [True, False]))
        assert len(outcomes) == 1  # both callers are told the same winner
    balances = balance_of(ledger, user_id, usdt)
    assert balances[AccountType.FUNDING].locked == 0
    assert balances[AccountType.FUNDING].available + balances[AccountType.SPOT].available == 1000


def test_resolving_a_transfer_never_locked_reports_it(ledger: Ledger, usdt: Asset) -> None:
    funded_user(ledger, usdt, 100)
    transfer = make_transfer(random_user_id(), 10)
    assert ledger.state_of(transfer, usdt) == LedgerState.ABSENT
    assert post_lock(ledger, transfer, usdt) == ResolveOutcome.NOT_LOCKED


def test_fence_stops_a_late_lock(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    transfer = make_transfer(user_id, 10)
    assert ledger.fence(transfer, usdt) == FenceOutcome.FENCED
    assert ledger.fence(transfer, usdt) == FenceOutcome.FENCED
    assert ledger.lock(transfer, usdt, UNLIMITED) == LockOutcome.FENCED
    assert ledger.state_of(transfer, usdt) == LedgerState.FENCED
    assert balance_of(ledger, user_id, usdt)[AccountType.FUNDING].available == 100


def test_fence_after_lock_leaves_the_lock(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    transfer = make_transfer(user_id, 10)
    ledger.lock(transfer, usdt, UNLIMITED)
    assert ledger.fence(transfer, usdt) == FenceOutcome.ALREADY_LOCKED
    assert ledger.state_of(transfer, usdt) == LedgerState.PENDING


def test_fence_of_a_user_with_no_accounts_still_holds(ledger: Ledger, usdt: Asset) -> None:
    user_id = random_user_id()
    transfer = make_transfer(user_id, 10)
    assert ledger.fence(transfer, usdt) == FenceOutcome.FENCED
    ledger.deposit(random_request_id(), user_id, usdt, 100)
    assert ledger.lock(transfer, usdt, UNLIMITED) == LockOutcome.FENCED


def test_amounts_beyond_two_to_the_64_are_exact(ledger: Ledger, usdt: Asset) -> None:
    huge = 2**64 + 12345
    user_id = funded_user(ledger, usdt, huge + 7)
    transfer = make_transfer(user_id, huge)
    assert ledger.lock(transfer, usdt, UNLIMITED) == LockOutcome.LOCKED
    funding = balance_of(ledger, user_id, usdt)[AccountType.FUNDING]
    assert (funding.available, funding.locked) == (7, huge)
    assert post_lock(ledger, transfer, usdt) == ResolveOutcome.POSTED
    balances = balance_of(ledger, user_id, usdt)
    assert balances[AccountType.SPOT].available == huge
    assert balances[AccountType.FUNDING].available == 7


def test_spot_back_to_funding(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 100)
    out = make_transfer(user_id, 40)
    ledger.lock(out, usdt, UNLIMITED)
    post_lock(ledger, out, usdt)
    back = make_transfer(user_id, 15, from_type=AccountType.SPOT)
    assert ledger.lock(back, usdt, UNLIMITED) == LockOutcome.LOCKED
    assert post_lock(ledger, back, usdt) == ResolveOutcome.POSTED
    balances = balance_of(ledger, user_id, usdt)
    assert balances[AccountType.FUNDING].available == 75
    assert balances[AccountType.SPOT].available == 25


def test_ping_answers(ledger: Ledger) -> None:
    ledger.ping()


def test_a_deposit_id_reused_for_another_user_is_a_conflict(ledger: Ledger, usdt: Asset) -> None:
    deposit_id, first, second = random_request_id(), random_user_id(), random_user_id()
    ledger.deposit(deposit_id, first, usdt, 500)
    assert ledger.deposit(deposit_id, second, usdt, 500) == DepositOutcome.CONFLICT
    assert balance_of(ledger, second, usdt)[AccountType.FUNDING].available == 0


def test_resolve_many_answers_each_in_order_and_each_stands_alone(ledger: Ledger, usdt: Asset) -> None:
    user_id = funded_user(ledger, usdt, 1000)
    to_post, to_void, already_voided, never_locked = (make_transfer(user_id, n) for n in (10, 20, 30, 40))
    for transfer in (to_post, to_void, already_voided):
        assert ledger.lock(transfer, usdt, UNLIMITED) == LockOutcome.LOCKED
    void_lock(ledger, already_voided, usdt)
    outcomes = ledger.resolve_many(
        [
            Resolution(to_post, usdt, post=True),
            Resolution(never_locked, usdt, post=True),
            Resolution(to_void, usdt, post=False),
            Resolution(already_voided, usdt, post=True),
        ]
    )
    # One failing event does not stop the others: they are not linked.
    assert outcomes == [
        ResolveOutcome.POSTED,
        ResolveOutcome.NOT_LOCKED,
        ResolveOutcome.VOIDED,
        ResolveOutcome.VOIDED,
    ]
    funding = balance_of(ledger, user_id, usdt)[AccountType.FUNDING]
    assert (funding.available, funding.locked) == (990, 0)
    assert balance_of(ledger, user_id, usdt)[AccountType.SPOT].available == 10
    # A repeat of the whole batch moves nothing more.
    assert ledger.resolve_many([Resolution(to_post, usdt, post=True), Resolution(to_void, usdt, post=False)]) == [
        ResolveOutcome.POSTED,
        ResolveOutcome.VOIDED,
    ]
    assert balance_of(ledger, user_id, usdt)[AccountType.SPOT].available == 10
