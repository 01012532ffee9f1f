"""A real process death at every gap between two durable steps.

For each named crash point the process that reaches it dies with
os._exit (no cleanup, as under SIGKILL). It is restarted without the
crash point, the scanner and the redelivered messages do their work, and
the invariants must hold.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.conftest import TEST_TOKEN_POLICY
from tests.support.invariants import check_invariants
from tests.support.load import LoadResult, TransferClient
from tests.support.stack import Stack

pytestmark = pytest.mark.real_backends

WEB_POINTS = ["after_store_insert", "after_lock", "after_store_update", "before_publish", "after_publish"]
WORKER_POINTS = ["after_ledger_resolve", "before_final_store_update", "before_offset_commit"]
UNIT = 10**8


def _check(stack: Stack, user: int, result: LoadResult, expected: str = "success") -> None:
    container = stack.container()
    try:
        stack.wait_quiet(container, timeout=180)
        report = check_invariants(
            container.deps, [user], {(user, "USDT"): 10 * UNIT}, result.acknowledged, stack.engine_applied()
        )
        assert report.violations == []
        statuses = [container.store.get(a.request_id) for a in result.acknowledged]
        assert [t.status.value if t else None for t in statuses] == [expected]
    finally:
        container.close()


@pytest.mark.parametrize("point", WEB_POINTS)
def test_web_worker_dies_at(stack: Stack, point: str) -> None:
    user = 900_000 + WEB_POINTS.index(point)
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY)
    client.deposit(user, "USDT", "10", key=f"crash-seed-{user}")
    stack.restart("web", CRASH_POINTS=point)
    body: dict[str, Any] = {
        "from_account": {"account_type": "funding", "asset": "USDT"},
        "to_account": {"account_type": "spot", "asset": "USDT"},
        "amount": "1",
    }
    headers = {**client.headers(user), "Idempotency-Key": f"crash-{point}"}
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{stack.base_url}/api/v1/user/internal_transfer", json=body, headers=headers, timeout=30)
    stack.restart("web")
    result = LoadResult()
    client.transfer(result, user, "1", key=f"crash-{point}")  # the client's retry
    assert len(result.acknowledged) == 1
    # Dying before the lock leaves nothing locked, and the client's retry
    # finishes the transfer the first attempt recorded (without a retry the
    # scanner fences the id and fails it NOT_LOCKED: tests/unit/test_recovery.py).
    _check(stack, user, result)


@pytest.mark.parametrize("point", WORKER_POINTS)
def test_settlement_worker_dies_at(stack: Stack, point: str) -> None:
    user = 910_000 + WORKER_POINTS.index(point)
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY)
    client.deposit(user, "USDT", "10", key=f"crash-seed-{user}")
    stack.restart("worker", CRASH_POINTS=point)
    result = LoadResult()
    client.transfer(result, user, "1", key=f"crash-{point}")
    assert len(result.acknowledged) == 1
    deadline = time.monotonic() + 60
    while stack.processes["worker"].alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not stack.processes["worker"].alive(), "the worker never reached its crash point"
    stack.restart("worker")
    _check(stack, user, result)


# The batch path: its own points, and the shared ones it passes (the batch is sent as one message).
BATCH_WEB_POINTS = ["after_batch_record", "after_batch_lock", "before_publish", "after_publish", "after_store_update"]
BATCH_LEGS = [("USDT", "1", True), ("BTC", "0.5", True), ("USDT", "2", True)]


def _check_batch(stack: Stack, user: int, result: LoadResult, deposits: dict[tuple[int, str], int]) -> None:
    container = stack.container()
    try:
        stack.wait_quiet(container, timeout=180)
        report = check_invariants(container.deps, [user], deposits, result.acknowledged, stack.engine_applied())
        assert report.violations == []
        legs = [container.store.get(a.request_id) for a in result.acknowledged]
        assert [t.status.value if t else None for t in legs] == ["success"] * len(BATCH_LEGS)
        assert len({t.batch_id for t in legs if t}) == 1
    finally:
        container.close()


def _fund_for_batch(client: TransferClient, user: int) -> dict[tuple[int, str], int]:
    client.deposit(user, "USDT", "10", key=f"crash-seed-{user}")
    client.deposit(user, "BTC", "1", key=f"crash-seed-btc-{user}")
    return {(user, "USDT"): 10 * UNIT, (user, "BTC"): UNIT}


@pytest.mark.parametrize("point", BATCH_WEB_POINTS)
def test_web_worker_dies_in_a_batch_at(stack: Stack, point: str) -> None:
    user = 920_000 + BATCH_WEB_POINTS.index(point)
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY)
    deposits = _fund_for_batch(client, user)
    stack.restart("web", CRASH_POINTS=point)
    body: dict[str, Any] = {
        "legs": [
            {
                "from_account": {"account_type": "funding", "asset": asset},
                "to_account": {"account_type": "spot", "asset": asset},
                "amount": amount,
            }
            for asset, amount, _ in BATCH_LEGS
        ]
    }
    headers = {**client.headers(user), "Idempotency-Key": f"crash-batch-{point}"}
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{stack.base_url}/api/v1/user/internal_transfer/batch", json=body, headers=headers, timeout=30)
    stack.restart("web")
    result = LoadResult()
    client.batch(result, user, BATCH_LEGS, key=f"crash-batch-{point}")  # the client's retry
    assert len(result.acknowledged) == len(BATCH_LEGS)
    _check_batch(stack, user, result, deposits)


@pytest.mark.parametrize("point", ["after_ledger_resolve", "before_final_store_update"])
def test_settlement_worker_dies_settling_a_batch_at(stack: Stack, point: str) -> None:
    user = 930_000 + WORKER_POINTS.index(point)
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY)
    deposits = _fund_for_batch(client, user)
    stack.restart("worker", CRASH_POINTS=point)
    result = LoadResult()
    client.batch(result, user, BATCH_LEGS, key=f"crash-batch-{point}")
    assert len(result.acknowledged) == len(BATCH_LEGS)
    deadline = time.monotonic() + 60
    while stack.processes["worker"].alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not stack.processes["worker"].alive(), "the worker never reached its crash point"
    stack.restart("worker")
    _check_batch(stack, user, result, deposits)


@pytest.mark.parametrize(("point", "ends"), [("after_batch_record", "failed"), ("after_batch_lock", "success")])
def test_a_batch_whose_web_worker_died_is_finished_by_the_scanner_alone(stack: Stack, point: str, ends: str) -> None:
    """No retry: recorded but never locked, the scanner fences and fails every leg; locked, it sends the batch."""
    user = 940_000 + ["after_batch_record", "after_batch_lock"].index(point)
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY)
    deposits = _fund_for_batch(client, user)
    stack.restart("web", CRASH_POINTS=point)
    legs: list[dict[str, Any]] = [
        {
            "from_account": {"account_type": "funding", "asset": asset},
            "to_account": {"account_type": "spot", "asset": asset},
            "amount": amount,
        }
        for asset, amount, _ in BATCH_LEGS
    ]
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{stack.base_url}/api/v1/user/internal_transfer/batch",
            json={"legs": legs},
            headers=client.headers(user),
            timeout=30,
        )
    stack.restart("web")
    container = stack.container()
    try:
        stack.wait_quiet(container, timeout=180)
        report = check_invariants(container.deps, [user], deposits, [], stack.engine_applied())
        assert report.violations == []
        recorded = container.store.history(user, 10).items
        assert len(recorded) == len(BATCH_LEGS) and len({t.batch_id for t in recorded}) == 1
        assert {t.status.value for t in recorded} == {ends}
        if ends == "failed":
            assert {t.failure_reason for t in recorded} == {"NOT_LOCKED"}
    finally:
        container.close()
