"""One Idempotency-Key, one submission: on every store and ledger, whatever the interleaving of two attempts.

The defect (issue "one home per rule", item 1): a batch POSTed twice at once
under one key became two batches. The second attempt found the key claimed
and no batch recorded yet, and drew fresh leg ids where the first attempt
had drawn its own; both locked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from app.adapters.inprocess_bus import InProcessServiceBus
from app.config import PROJECT_ROOT
from app.domain.batch import Batch, BatchCommand
from app.domain.ids import SnowflakeGenerator
from app.domain.limits import DefaultLimits
from app.domain.money import Asset, AssetCatalog
from app.domain.transfer import AccountType, Transfer, TransferCommand, fingerprint_of
from app.ports.ledger import DepositOutcome, IdempotencyClaim, Ledger
from app.ports.store import TransferStore
from app.services.dependencies import Dependencies
from app.services.limits import LimitService
from app.services.settle import Settle
from app.services.submit import Submit
from tests.conftest import random_request_id, random_user_id


class _FirstWriterWaits:
    """The store, except that the first `method` call waits until `release` is set: a slow first attempt."""

    def __init__(self, store: TransferStore, method: str) -> None:
        self._store = store
        self._method = method
        self.reached = threading.Event()
        self.release = threading.Event()
        self._calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name != self._method:
            return attribute

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self._calls += 1
            if self._calls == 1:
                self.reached.set()
                assert self.release.wait(30), "the second attempt never finished"
            return attribute(*args, **kwargs)

        return wrapped


def services(store: Any, ledger: Ledger, catalog: AssetCatalog) -> Submit:
    defaults = DefaultLimits.from_toml((PROJECT_ROOT / "app" / "assets.toml").read_text(), catalog)
    limits = LimitService(store, ledger, catalog, defaults, lambda: datetime.now(UTC))
    ids = SnowflakeGenerator(random_request_id() % 1000)
    deps = Dependencies.over(catalog, ids, store, ledger, InProcessServiceBus())
    return Submit(deps, limits, Settle(deps))


def funded(ledger: Ledger, usdt: Asset) -> int:
    user_id = random_user_id()
    assert ledger.deposit(random_request_id(), user_id, usdt, 1_000) == DepositOutcome.CREDITED
    return user_id


def locked_in_funding(ledger: Ledger, user_id: int, usdt: Asset) -> int:
    return next(b.locked for b in ledger.balances(user_id, [usdt]) if b.account_type == AccountType.FUNDING)


def leg_ids(legs: Sequence[Transfer | None]) -> list[int]:
    return [leg.request_id for leg in legs if leg is not None]


def race(first: Callable[[], list[int]], second: Callable[[], list[int]], gate: _FirstWriterWaits) -> list[list[int]]:
    """Run `first` until it reaches the gated write, then `second` to the end, then let `first` finish."""
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(first)
        assert gate.reached.wait(30)
        try:
            fast = second()
        finally:
            gate.release.set()
        return [slow.result(30), fast]


def test_two_attempts_of_one_batch_key_lock_one_batch(
    store: TransferStore, ledger: Ledger, catalog: AssetCatalog, usdt: Asset
) -> None:
    gate = _FirstWriterWaits(store, "record_batch")
    service = services(gate, ledger, catalog)
    user_id = funded(ledger, usdt)
    legs = tuple(TransferCommand(user_id, "USDT", AccountType.FUNDING, AccountType.SPOT, units) for units in (30, 10))
    command = BatchCommand(user_id, legs)

    def attempt() -> list[int]:
        return leg_ids(service.batch(command, "one-key").view.legs)

    slow, fast = race(attempt, attempt, gate)

    assert slow == fast, "both attempts must answer with the legs the key names"
    holder = ledger.claim_idempotency_key(
        user_id, "one-key", IdempotencyClaim(random_request_id(), fingerprint_of(["another"]))
    )
    assert holder is not None
    recorded = store.get_batch(holder.request_id)
    assert isinstance(recorded, Batch) and list(recorded.request_ids) == fast
    assert locked_in_funding(ledger, user_id, usdt) == 40


def test_two_attempts_of_one_transfer_key_lock_one_transfer(
    store: TransferStore, ledger: Ledger, catalog: AssetCatalog, usdt: Asset
) -> None:
    gate = _FirstWriterWaits(store, "record_new")
    service = services(gate, ledger, catalog)
    user_id = funded(ledger, usdt)
    command = TransferCommand(user_id, "USDT", AccountType.FUNDING, AccountType.SPOT, 30)

    def attempt() -> list[int]:
        return [service.transfer(command, "one-key").transfer.request_id]

    slow, fast = race(attempt, attempt, gate)

    assert slow == fast
    assert locked_in_funding(ledger, user_id, usdt) == 30
