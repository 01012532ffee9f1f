"""The daily-limit rule, on every ledger and store: remaining = max(0, limit in force - posted - pending).

A lock is accepted only if it fits. Each test here is a defect found black-box
over HTTP (issue "one home per rule", items 2-4), replayed at the service
that chooses the limit (LimitService) over the ledger that enforces it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.domain.account_model import Direction
from app.domain.limits import DefaultLimits, LimitUsage
from app.domain.money import Asset, AssetCatalog
from app.domain.transfer import Transfer
from app.ports.ledger import DepositOutcome, Ledger, LockOutcome
from app.ports.store import TransferStore
from app.services.limits import LimitService
from tests.conftest import make_transfer, random_request_id, random_user_id
from tests.support.ledger_moves import post_lock, void_lock

F2S = Direction.FUNDING_TO_SPOT
NOW = datetime.now(UTC)  # a lock draws on the quota of its own creation day: keep both in step


def limit_service(store: TransferStore, ledger: Ledger, catalog: AssetCatalog, usdt_default: int) -> LimitService:
    """A process whose default USDT limit (both directions) is `usdt_default` units."""
    defaults = {(asset.symbol, d): 10**30 for asset in catalog for d in Direction}
    defaults |= {("USDT", d): usdt_default for d in Direction}
    return LimitService(store, ledger, catalog, DefaultLimits(defaults), lambda: NOW)


def funded_user(ledger: Ledger, usdt: Asset) -> int:
    user_id = random_user_id()
    assert ledger.deposit(random_request_id(), user_id, usdt, 10**12) == DepositOutcome.CREDITED
    return user_id


def lock(ledger: Ledger, limits: LimitService, user_id: int, usdt: Asset, amount: int) -> tuple[Transfer, LockOutcome]:
    transfer = make_transfer(user_id, amount, created_at=NOW)
    return transfer, ledger.lock(transfer, usdt, lambda: limits.limit_of_transfer(transfer))


def usdt_today(limits: LimitService, user_id: int) -> LimitUsage:
    return next(u for u in limits.today(user_id) if u.asset == "USDT" and u.direction == F2S)


def test_a_void_after_a_lowering_gives_back_only_what_the_lowering_left(
    ledger: Ledger, store: TransferStore, catalog: AssetCatalog, usdt: Asset
) -> None:
    limits = limit_service(store, ledger, catalog, 10**6)
    user_id = funded_user(ledger, usdt)
    limits.set_override(user_id, "USDT", "funding_to_spot", "0.000001", "ops", "test")  # 100 units
    locked, outcome = lock(ledger, limits, user_id, usdt, 100)
    assert outcome == LockOutcome.LOCKED
    limits.set_override(user_id, "USDT", "funding_to_spot", "0.0000001", "ops", "test")  # 10 units
    void_lock(ledger, locked, usdt)

    today = usdt_today(limits, user_id)
    assert (today.limit, today.used, today.remaining) == (10, 0, 10)
    assert lock(ledger, limits, user_id, usdt, 11)[1] == LockOutcome.LIMIT_EXCEEDED
    assert lock(ledger, limits, user_id, usdt, 10)[1] == LockOutcome.LOCKED


def test_lower_then_raise_with_funds_locked_never_overruns_the_limit(
    ledger: Ledger, store: TransferStore, catalog: AssetCatalog, usdt: Asset
) -> None:
    limits = limit_service(store, ledger, catalog, 10**6)
    user_id = funded_user(ledger, usdt)
    limits.set_override(user_id, "USDT", "funding_to_spot", "0.000001", "ops", "test")  # 100
    assert lock(ledger, limits, user_id, usdt, 60)[1] == LockOutcome.LOCKED
    limits.set_override(user_id, "USDT", "funding_to_spot", "0.0000005", "ops", "test")  # 50
    assert usdt_today(limits, user_id).remaining == 0
    limits.set_override(user_id, "USDT", "funding_to_spot", "0.000001", "ops", "test")  # 100 again

    today = usdt_today(limits, user_id)
    assert (today.limit, today.used, today.remaining) == (100, 60, 40)
    assert lock(ledger, limits, user_id, usdt, 45)[1] == LockOutcome.LIMIT_EXCEEDED
    assert lock(ledger, limits, user_id, usdt, 40)[1] == LockOutcome.LOCKED


def test_an_override_after_the_default_changed_starts_from_the_limit_the_day_opened_with(
    ledger: Ledger, store: TransferStore, catalog: AssetCatalog, usdt: Asset
) -> None:
    before = limit_service(store, ledger, catalog, 10_000)
    user_id = funded_user(ledger, usdt)
    assert lock(ledger, before, user_id, usdt, 1)[1] == LockOutcome.LOCKED
    # A deploy with a smaller default: today's quota keeps the limit it opened with ...
    after = limit_service(store, ledger, catalog, 1_000)
    today = usdt_today(after, user_id)
    assert (today.limit, today.used, today.remaining) == (10_000, 1, 9_999)
    # ... and an override is measured from that limit, not from the new default.
    after.set_override(user_id, "USDT", "funding_to_spot", "0.00002", "ops", "test")  # 2,000 units
    today = usdt_today(after, user_id)
    assert (today.limit, today.used, today.remaining) == (2_000, 1, 1_999)
    assert lock(ledger, after, user_id, usdt, 2_500)[1] == LockOutcome.LIMIT_EXCEEDED
    assert lock(ledger, after, user_id, usdt, 1_999)[1] == LockOutcome.LOCKED


@pytest.mark.parametrize("post", [True, False], ids=["posted", "voided"])
def test_lowering_to_zero_then_raising_counts_what_moved_and_what_is_locked(
    ledger: Ledger, store: TransferStore, catalog: AssetCatalog, usdt: Asset, post: bool
) -> None:
    limits = limit_service(store, ledger, catalog, 100)
    user_id = funded_user(ledger, usdt)
    first, _ = lock(ledger, limits, user_id, usdt, 30)
    assert lock(ledger, limits, user_id, usdt, 20)[1] == LockOutcome.LOCKED
    limits.set_override(user_id, "USDT", "funding_to_spot", "0", "ops", "block")
    assert lock(ledger, limits, user_id, usdt, 1)[1] == LockOutcome.LIMIT_EXCEEDED
    if post:
        post_lock(ledger, first, usdt)
    else:
        void_lock(ledger, first, usdt)
    assert usdt_today(limits, user_id).remaining == 0
    limits.set_override(user_id, "USDT", "funding_to_spot", "0.0000007", "ops", "reopen")  # 70
    used = 50 if post else 20
    today = usdt_today(limits, user_id)
    assert (today.limit, today.used, today.remaining) == (70, used, 70 - used)
    assert lock(ledger, limits, user_id, usdt, 70 - used + 1)[1] == LockOutcome.LIMIT_EXCEEDED
    assert lock(ledger, limits, user_id, usdt, 70 - used)[1] == LockOutcome.LOCKED
