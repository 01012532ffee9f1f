"""End to end on the real backends: gunicorn + worker + engine on Cassandra and Kafka.

A burst of 1,000+ transfers with engine rejections, then outages of
Cassandra and Kafka (each stopped by pid mid-run): the API answers 503
while one is down, and afterwards everything accepted settles, with the
invariants intact.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TEST_TOKEN_POLICY
from tests.support.cassandra_fixtures import cassandra_hosts, skip_or_fail
from tests.support.invariants import check_invariants
from tests.support.load import LoadResult, TransferClient, random_amount
from tests.support.stack import REJECT_SUFFIX, Stack, devservice

pytestmark = pytest.mark.real_backends
UNIT = 10**8


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    import os

    if cassandra_hosts() is None or not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        skip_or_fail("Cassandra/Kafka not configured (run through `make test`): real-backend e2e skipped")
    running = Stack(tmp_path).start()
    yield running
    running.stop()


def fund(client: TransferClient, users: list[int], amount: str) -> dict[tuple[int, str], int]:
    for user in users:
        client.deposit(user, "USDT", amount, key=f"seed-{user}")
    return {(user, "USDT"): int(amount) * UNIT for user in users}


def drive(client: TransferClient, users: list[int], count: int, seed: int, threads: int = 16) -> LoadResult:
    result = LoadResult()
    rng = random.Random(seed)
    jobs = [
        (rng.choice(users), random_amount(rng, REJECT_SUFFIX, 0.1), f"t{seed}-{i}", rng.random() < 0.8)
        for i in range(count)
    ]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda job: client.transfer(result, *job), jobs))
    return result


def assert_settled(
    stack: Stack,
    users: list[int],
    deposits: dict[tuple[int, str], int],
    result: LoadResult,
    figures: Callable[[str], None],
) -> None:
    container = stack.container()
    try:
        quiesce = stack.wait_quiet(container)
        report = check_invariants(container.deps, users, deposits, result.acknowledged, stack.engine_applied())
        figures(
            f"[e2e] ledger={stack.ledger_description} attempted={result.attempted} "
            f"acknowledged={len(result.acknowledged)} insufficient={result.refused_insufficient} "
            f"checked={report.checked_transfers} violations={len(report.violations)} quiesce={quiesce:.1f}s"
        )
        assert report.violations == []
        assert report.checked_transfers >= len(result.acknowledged)
    finally:
        container.close()


def test_a_burst_of_1000_transfers_ends_right(stack: Stack, figures: Callable[[str], None]) -> None:
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY)
    users = [700_000 + n for n in range(20)]
    deposits = fund(client, users, "200")
    started = time.monotonic()
    result = drive(client, users, 1000, seed=1)
    elapsed = time.monotonic() - started
    figures(
        f"[e2e] 1000 transfers submitted in {elapsed:.1f}s ({1000 / elapsed:.0f}/s); statuses {dict(result.statuses)}"
    )
    assert result.gave_up == 0
    assert len(result.acknowledged) == 1000
    assert_settled(stack, users, deposits, result, figures)
    applied = stack.engine_applied()
    assert "rejected" in applied.values() and "confirmed" in applied.values()


def _post_until(client: TransferClient, user: int, wanted: int, timeout: float = 60) -> requests.Response:
    body: dict[str, Any] = {
        "from_account": {"account_type": "funding", "asset": "USDT"},
        "to_account": {"account_type": "spot", "asset": "USDT"},
        "amount": "0.01",
    }
    deadline = time.monotonic() + timeout
    while True:
        response = requests.post(
            f"{client.base_url}/api/v1/user/internal_transfer", json=body, headers=client.headers(user), timeout=30
        )
        if response.status_code == wanted or time.monotonic() > deadline:
            return response
        time.sleep(0.5)


@pytest.mark.parametrize("server", ["cassandra", "kafka"])
def test_an_outage_answers_503_and_loses_nothing(stack: Stack, server: str, figures: Callable[[str], None]) -> None:
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY, retry_for_seconds=300)
    users = [800_000 + n for n in range(10)]
    deposits = fund(client, users, "100")
    result = LoadResult()
    stop = threading.Event()

    def background_load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            client.transfer(result, users[(n + worker) % len(users)], "0.5", key=f"bg-{server}-{worker}-{n}")
            n += 1

    loaders = [threading.Thread(target=background_load, args=(w,)) for w in range(4)]
    for loader in loaders:
        loader.start()
    try:
        time.sleep(3)
        devservice("stop", server)
        try:
            outage = _post_until(client, users[0], 503)
            figures(f"[e2e] {server} stopped by pid: the API answered {outage.status_code}")
            assert outage.status_code == 503
            assert outage.json()["error"]["code"] == "DEPENDENCY_UNAVAILABLE"
            assert outage.headers["Retry-After"]
        finally:
            devservice("start", server)
        time.sleep(5)
    finally:
        stop.set()
        for loader in loaders:
            loader.join(timeout=400)
    assert result.gave_up == 0
    assert len(result.acknowledged) > 0
    assert_settled(stack, users, deposits, result, figures)
