"""The TigerBeetle client never times out; the adapter must, and must recover.

Each test runs its own server (it is killed mid-test), never the shared one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from app.adapters.tigerbeetle_ledger import TigerBeetleLedger
from app.domain.money import Asset
from app.domain.transfer import AccountType
from app.ports.errors import DependencyUnavailable
from app.ports.ledger import DepositOutcome, LedgerState, LockOutcome, ResolveOutcome
from tests.conftest import make_transfer, random_request_id, random_user_id
from tests.support.ledger_moves import post_lock
from tests.support.quotas import UNLIMITED
from tests.support.tigerbeetle_server import TigerBeetleServer

pytestmark = [pytest.mark.tigerbeetle, pytest.mark.slow]

DEADLINE = 2.0
SLACK = 1.5  # closing the stuck client and thread hand-offs
RECOVERY_SECONDS = 30.0

T = TypeVar("T")


@pytest.fixture
def own_server(tigerbeetle_binary: str, tmp_path: Path) -> Iterator[TigerBeetleServer]:
    server = TigerBeetleServer(tigerbeetle_binary, tmp_path / "tigerbeetle")
    server.start()
    try:
        yield server
    finally:
        server.remove_data()


@pytest.fixture
def own_ledger(own_server: TigerBeetleServer) -> Iterator[TigerBeetleLedger]:
    ledger = TigerBeetleLedger.from_url(f"{own_server.url}&timeout_seconds={DEADLINE}")
    try:
        yield ledger
    finally:
        ledger.close()


def fails_within_deadline(call: Callable[[], object]) -> float:
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        call()
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + SLACK, f"the call took {elapsed:.2f}s against a {DEADLINE}s deadline"
    return elapsed


def first_answer(call: Callable[[], T]) -> tuple[T, float]:
    """Retry until the ledger answers again (the client reconnects on its own)."""
    started = time.monotonic()
    while True:
        try:
            return call(), time.monotonic() - started
        except DependencyUnavailable:
            if time.monotonic() - started > RECOVERY_SECONDS:
                raise
            time.sleep(0.2)


def test_a_killed_server_fails_calls_within_the_deadline_and_a_restart_recovers(
    own_server: TigerBeetleServer, own_ledger: TigerBeetleLedger, usdt: Asset
) -> None:
    user_id = random_user_id()
    assert own_ledger.deposit(random_request_id(), user_id, usdt, 100) == DepositOutcome.CREDITED

    own_server.kill()
    first = fails_within_deadline(lambda: own_ledger.balances(user_id, [usdt]))
    # The stuck client was closed; the next call makes a new one, also bounded.
    second = fails_within_deadline(own_ledger.ping)

    restarted = time.monotonic()
    own_server.restart()
    restart_seconds = time.monotonic() - restarted
    balances, answer_seconds = first_answer(lambda: own_ledger.balances(user_id, [usdt]))
    funding = next(b for b in balances if b.account_type == AccountType.FUNDING)
    assert (funding.available, funding.locked) == (100, 0)
    print(  # shown with -s: the measured timings
        f"\nkilled: calls failed after {first:.2f}s and {second:.2f}s (deadline {DEADLINE}s); "
        f"restart took {restart_seconds:.2f}s; first answer {answer_seconds:.2f}s after it"
    )


def test_a_lock_survives_a_crash_and_is_posted_after_the_restart(
    own_server: TigerBeetleServer, own_ledger: TigerBeetleLedger, usdt: Asset
) -> None:
    user_id = random_user_id()
    own_ledger.deposit(random_request_id(), user_id, usdt, 100)
    transfer = make_transfer(user_id, 40)
    assert own_ledger.lock(transfer, usdt, UNLIMITED) == LockOutcome.LOCKED

    own_server.kill()
    elapsed = fails_within_deadline(lambda: post_lock(own_ledger, transfer, usdt))

    own_server.restart()
    outcome, answer_seconds = first_answer(lambda: post_lock(own_ledger, transfer, usdt))
    assert outcome == ResolveOutcome.POSTED
    assert post_lock(own_ledger, transfer, usdt) == ResolveOutcome.POSTED
    assert own_ledger.state_of(transfer, usdt) == LedgerState.POSTED
    balances = {b.account_type: b for b in own_ledger.balances(user_id, [usdt])}
    assert (balances[AccountType.FUNDING].available, balances[AccountType.FUNDING].locked) == (60, 0)
    assert (balances[AccountType.SPOT].available, balances[AccountType.SPOT].locked) == (40, 0)
    print(f"\npost to a killed server failed after {elapsed:.2f}s; posted {answer_seconds:.2f}s after the restart")
