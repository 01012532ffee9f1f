"""The chaos run: load with retries while processes and backends die at random.

Bounded by CHAOS_SECONDS (default 60 under `make test`; set it higher by
hand for a longer run). Prints one figure line; the invariant violations
must be zero.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from app.domain.transfer import FailureReason, Status
from tests.conftest import TEST_TOKEN_POLICY
from tests.support.invariants import check_invariants
from tests.support.load import LoadResult, TransferClient, random_amount
from tests.support.stack import REJECT_SUFFIX, Stack, devservice

pytestmark = [pytest.mark.real_backends, pytest.mark.slow]

CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "60"))
UNIT = 10**8


def _inject(stack: Stack, rng: random.Random, crashes: Counter[str]) -> None:
    actions = ["kill web", "kill worker", "kill engine", "restart cassandra", "restart kafka"]
    if stack.tigerbeetle is not None:
        actions.append("restart tigerbeetle")
    action = rng.choice(actions)
    verb, target = action.split()
    if verb == "kill":
        stack.processes[target].kill()  # SIGKILL, by pid
        time.sleep(rng.uniform(0.5, 3))
        stack.restart(target)
    elif target == "tigerbeetle":
        assert stack.tigerbeetle is not None
        stack.tigerbeetle.kill()
        time.sleep(rng.uniform(1, 4))
        stack.tigerbeetle.restart()
    else:
        devservice("stop", target)
        time.sleep(rng.uniform(1, 4))
        devservice("start", target)
    crashes[action] += 1


def test_chaos_run_keeps_every_invariant(stack: Stack, figures: Callable[[str], None]) -> None:
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "7")))
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY, retry_for_seconds=600)
    users = [950_000 + n for n in range(24)]
    for user in users:
        client.deposit(user, "USDT", "100", key=f"chaos-seed-{user}")
        client.deposit(user, "BTC", "10", key=f"chaos-seed-btc-{user}")
    deposits = {(user, "USDT"): 100 * UNIT for user in users} | {(user, "BTC"): 10 * UNIT for user in users}
    # A third of the users get a low daily limit, so the ledger-enforced quota
    # refuses some of their transfers and batches while processes crash.
    for user in users[::3]:
        client.set_daily_limit(user, "USDT", "funding_to_spot", "2")
    result = LoadResult()
    stop = threading.Event()

    def load(worker: int) -> None:
        local = random.Random(worker)
        n = 0
        while not stop.is_set():
            if local.random() < 0.2:
                # An atomic batch of 2 to 4 legs, across assets and directions.
                legs = [
                    (local.choice(["USDT", "BTC"]), random_amount(local, REJECT_SUFFIX, 0.05), local.random() < 0.7)
                    for _ in range(local.randint(2, 4))
                ]
                client.batch(result, local.choice(users), legs, f"chaos-{worker}-{n}")
            else:
                amount = random_amount(local, REJECT_SUFFIX, 0.1)
                client.transfer(result, local.choice(users), amount, f"chaos-{worker}-{n}", local.random() < 0.7)
            n += 1

    loaders = [threading.Thread(target=load, args=(w,)) for w in range(6)]
    for loader in loaders:
        loader.start()
    crashes: Counter[str] = Counter()
    deadline = time.monotonic() + CHAOS_SECONDS
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(3, 8))
            _inject(stack, rng, crashes)
    finally:
        stop.set()
        for loader in loaders:
            loader.join(timeout=700)
    stack.ensure_running()
    container = stack.container()
    try:
        quiesce = stack.wait_quiet(container, timeout=600)
        report = check_invariants(container.deps, users, deposits, result.acknowledged, stack.engine_applied())
        settled = [t for a in result.acknowledged if (t := container.store.get(a.request_id))]
        outcomes = Counter(t.status for t in settled)
        batches = len({t.batch_id for t in settled if t.batch_id is not None})
        reasons = Counter(t.failure_reason for t in settled if t.failure_reason)
    finally:
        container.close()
    figures(
        f"CHAOS ledger={stack.ledger_description} seconds={CHAOS_SECONDS:.0f} attempted={result.attempted} "
        f"acknowledged={len(result.acknowledged)} succeeded={outcomes[Status.SUCCESS]} "
        f"failed={outcomes[Status.FAILED]} {dict(reasons)} batches={batches} "
        f"crashes={sum(crashes.values())} ({dict(crashes)}) "
        f"gave_up={result.gave_up} violations={len(report.violations)} quiesce={quiesce:.1f}s"
    )
    assert report.violations == []
    assert sum(crashes.values()) >= 3
    assert result.gave_up == 0
    assert outcomes[Status.SUCCESS] > 0
    assert batches > 0
    assert reasons[FailureReason.DAILY_LIMIT_EXCEEDED] > 0
