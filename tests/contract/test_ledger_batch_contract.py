"""The Ledger contract for batches: all legs lock in one linked chain, and resolve together.

Runs on every ledger (the embedded one and TigerBeetle when TIGERBEETLE_BIN is set).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from app.domain.account_model import Direction
from app.domain.limits import EffectiveLimit, QuotaKey
from app.domain.money import Asset, AssetCatalog
from app.domain.transfer import AccountType, Transfer
from app.ports.ledger import (
    BatchLeg,
    BatchLockOutcome,
    DepositOutcome,
    FenceOutcome,
    Ledger,
    LedgerState,
    LockOutcome,
    Resolution,
    ResolveOutcome,
)
from tests.conftest import make_transfer, random_request_id, random_user_id

ROOMY = EffectiveLimit(10**15, 0)


def legs_of(transfers: list[Transfer], catalog: AssetCatalog, limit: EffectiveLimit = ROOMY) -> list[BatchLeg]:
    return [BatchLeg(t, catalog.get(t.asset), limit) for t in transfers]


def fund(ledger: Ledger, user_id: int, asset: Asset, amount: int) -> None:
    assert ledger.deposit(random_request_id(), user_id, asset, amount) == DepositOutcome.CREDITED


def available(ledger: Ledger, user_id: int, asset: Asset, account_type: AccountType) -> tuple[int, int]:
    for balance in ledger.balances(user_id, [asset]):
        if balance.account_type == account_type:
            return balance.available, balance.locked
    raise AssertionError("no balance")


def test_a_batch_across_assets_locks_every_leg_and_a_retry_locks_once(ledger: Ledger, catalog: AssetCatalog) -> None:
    usdt, btc = catalog.get("USDT"), catalog.get("BTC")
    user_id = random_user_id()
    fund(ledger, user_id, usdt, 1000)
    fund(ledger, user_id, btc, 50)
    legs = [make_transfer(user_id, 300), make_transfer(user_id, 20, asset="BTC"), make_transfer(user_id, 100)]
    assert ledger.lock_batch(legs_of(legs, catalog)) == BatchLockOutcome(LockOutcome.LOCKED)
    assert ledger.lock_batch(legs_of(legs, catalog)) == BatchLockOutcome(LockOutcome.LOCKED)
    assert available(ledger, user_id, usdt, AccountType.FUNDING) == (600, 400)
    assert available(ledger, user_id, btc, AccountType.FUNDING) == (30, 20)
    assert all(ledger.state_of(t, catalog.get(t.asset)) == LedgerState.PENDING for t in legs)


def test_one_leg_short_of_balance_locks_nothing_and_is_named(ledger: Ledger, catalog: AssetCatalog) -> None:
    usdt, btc = catalog.get("USDT"), catalog.get("BTC")
    user_id = random_user_id()
    fund(ledger, user_id, usdt, 1000)
    fund(ledger, user_id, btc, 10)
    legs = [make_transfer(user_id, 300), make_transfer(user_id, 11, asset="BTC"), make_transfer(user_id, 100)]
    assert ledger.lock_batch(legs_of(legs, catalog)) == BatchLockOutcome(LockOutcome.INSUFFICIENT_BALANCE, 1)
    # The retry of the same ids is refused the same way (the failed id is remembered).
    assert ledger.lock_batch(legs_of(legs, catalog)) == BatchLockOutcome(LockOutcome.INSUFFICIENT_BALANCE, 1)
    assert available(ledger, user_id, usdt, AccountType.FUNDING) == (1000, 0)
    assert available(ledger, user_id, btc, AccountType.FUNDING) == (10, 0)
    assert all(ledger.state_of(t, catalog.get(t.asset)) == LedgerState.ABSENT for t in legs[::2])


def test_one_leg_past_its_daily_limit_locks_nothing_and_is_named(ledger: Ledger, catalog: AssetCatalog) -> None:
    usdt = catalog.get("USDT")
    user_id = random_user_id()
    fund(ledger, user_id, usdt, 1000)
    # Two legs on the same quota: 60 fits the limit of 100, 60 + 50 does not.
    legs = [make_transfer(user_id, 60), make_transfer(user_id, 50)]
    outcome = ledger.lock_batch(legs_of(legs, catalog, EffectiveLimit(100, 0)))
    assert outcome == BatchLockOutcome(LockOutcome.LIMIT_EXCEEDED, 1)
    key = QuotaKey(user_id, usdt, Direction.FUNDING_TO_SPOT, QuotaKey.of_transfer(legs[0], usdt).day)
    assert ledger.quota_balances([key])[key].held == 0
    assert available(ledger, user_id, usdt, AccountType.FUNDING) == (1000, 0)


def test_a_fenced_leg_keeps_the_whole_batch_from_locking(ledger: Ledger, catalog: AssetCatalog) -> None:
    usdt = catalog.get("USDT")
    user_id = random_user_id()
    fund(ledger, user_id, usdt, 1000)
    legs = [make_transfer(user_id, 10), make_transfer(user_id, 20)]
    assert ledger.fence(legs[1], usdt) == FenceOutcome.FENCED
    assert ledger.lock_batch(legs_of(legs, catalog)) == BatchLockOutcome(LockOutcome.FENCED, 1)
    assert ledger.state_of(legs[0], usdt) == LedgerState.ABSENT
    assert ledger.fence(legs[0], usdt) == FenceOutcome.FENCED


def test_a_batch_posts_and_voids_as_a_whole_and_a_repeat_changes_nothing(ledger: Ledger, catalog: AssetCatalog) -> None:
    usdt, btc = catalog.get("USDT"), catalog.get("BTC")
    user_id = random_user_id()
    fund(ledger, user_id, usdt, 1000)
    fund(ledger, user_id, btc, 50)
    posted = [make_transfer(user_id, 100), make_transfer(user_id, 5, asset="BTC")]
    voided = [make_transfer(user_id, 200), make_transfer(user_id, 7, asset="BTC", from_type=AccountType.FUNDING)]
    for batch in (posted, voided):
        assert ledger.lock_batch(legs_of(batch, catalog)).outcome == LockOutcome.LOCKED
    for batch, post in ((posted, True), (voided, False)):
        resolutions = [Resolution(t, catalog.get(t.asset), post) for t in batch]
        wanted = ResolveOutcome.POSTED if post else ResolveOutcome.VOIDED
        assert ledger.resolve_batch(resolutions) == [wanted, wanted]
        assert ledger.resolve_batch(resolutions) == [wanted, wanted]
        # The other decision, later, finds the batch's first decision.
        other = [Resolution(t, catalog.get(t.asset), not post) for t in batch]
        assert ledger.resolve_batch(other) == [wanted, wanted]
    assert available(ledger, user_id, usdt, AccountType.FUNDING) == (900, 0)
    assert available(ledger, user_id, usdt, AccountType.SPOT) == (100, 0)
    assert available(ledger, user_id, btc, AccountType.FUNDING) == (45, 0)
    assert [ledger.state_of(t, catalog.get(t.asset)) for t in posted + voided] == [LedgerState.POSTED] * 2 + [
        LedgerState.VOIDED
    ] * 2


def test_concurrent_batches_never_overspend_and_each_is_all_or_nothing(ledger: Ledger, catalog: AssetCatalog) -> None:
    usdt = catalog.get("USDT")
    user_id = random_user_id()
    fund(ledger, user_id, usdt, 1000)
    # 16 batches of 3 legs of 50 (150 each): exactly 6 fit in 1000.
    batches = [[make_transfer(user_id, 50) for _ in range(3)] for _ in range(16)]
    start = threading.Barrier(16)

    def submit(batch: list[Transfer]) -> BatchLockOutcome:
        start.wait()
        return ledger.lock_batch(legs_of(batch, catalog))

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(submit, batches))
    locked = [b for b, o in zip(batches, outcomes, strict=True) if o.outcome == LockOutcome.LOCKED]
    assert len(locked) == 6
    assert all(o.outcome in (LockOutcome.LOCKED, LockOutcome.INSUFFICIENT_BALANCE) for o in outcomes)
    assert available(ledger, user_id, usdt, AccountType.FUNDING) == (100, 900)
    for batch, outcome in zip(batches, outcomes, strict=True):
        states = {ledger.state_of(t, usdt) for t in batch}
        assert states == ({LedgerState.PENDING} if outcome.outcome == LockOutcome.LOCKED else {LedgerState.ABSENT})
