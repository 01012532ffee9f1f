"""Batches end to end on the real backends: gunicorn + worker + engine on Cassandra, Kafka and TigerBeetle.

A burst of batches across assets and directions, with engine rejections, and
a race of batches against one balance; afterwards every batch is whole (all
legs succeeded or all failed) and the invariants hold.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import TEST_TOKEN_POLICY
from tests.e2e.test_real_backends import stack as stack  # the same fixture: a stack per test
from tests.support.invariants import check_invariants
from tests.support.load import LoadResult, TransferClient, random_amount
from tests.support.stack import REJECT_SUFFIX, Stack

pytestmark = pytest.mark.real_backends
UNIT = 10**8


def test_a_burst_of_batches_and_a_race_end_whole(stack: Stack, figures: Callable[[str], None]) -> None:
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY)
    users = [760_000 + n for n in range(8)]
    racer = 769_999
    deposits: dict[tuple[int, str], int] = {}
    for user in users:
        client.deposit(user, "USDT", "100", key=f"seed-{user}")
        client.deposit(user, "BTC", "5", key=f"seed-btc-{user}")
        deposits |= {(user, "USDT"): 100 * UNIT, (user, "BTC"): 5 * UNIT}
    client.deposit(racer, "USDT", "100", key=f"seed-{racer}")
    deposits[(racer, "USDT")] = 100 * UNIT

    rng = random.Random(11)
    jobs = [
        (
            rng.choice(users),
            [
                (rng.choice(["USDT", "BTC"]), random_amount(rng, REJECT_SUFFIX, 0.05), rng.random() < 0.7)
                for _ in range(rng.randint(2, 5))
            ],
            f"b-{i}",
        )
        for i in range(150)
    ]
    # The race: 20 batches of two 10 USDT legs against 100 USDT: exactly 5 fit.
    jobs += [(racer, [("USDT", "10", True), ("USDT", "10", True)], f"race-{i}") for i in range(20)]
    rng.shuffle(jobs)
    result = LoadResult()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda job: client.batch(result, *job), jobs))
    assert result.gave_up == 0

    container = stack.container()
    try:
        quiesce = stack.wait_quiet(container)
        report = check_invariants(
            container.deps, [*users, racer], deposits, result.acknowledged, stack.engine_applied()
        )
        legs = [t for a in result.acknowledged if (t := container.store.get(a.request_id))]
        batches: dict[int, set[str]] = {}
        for leg in legs:
            assert leg.batch_id is not None
            batches.setdefault(leg.batch_id, set()).add(leg.status.value)
        racer_spot = [b for b in container.deps.accounts.balances(racer, [container.catalog.get("USDT")])]
    finally:
        container.close()
    figures(
        f"[e2e batches] ledger={stack.ledger_description} batches={len(jobs)} statuses={dict(result.statuses)} "
        f"legs_acknowledged={len(result.acknowledged)} violations={len(report.violations)} quiesce={quiesce:.1f}s"
    )
    assert report.violations == []
    assert all(len(statuses) == 1 for statuses in batches.values())
    assert {"success"} in batches.values() and {"failed"} in batches.values()
    spot = next(b for b in racer_spot if b.account_type.value == "spot")
    assert (spot.available, spot.locked) == (100 * UNIT, 0)  # 5 batches of 20, never more
