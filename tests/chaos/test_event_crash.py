"""A status event survives the death of its process between the status write and the publish.

The settlement worker is armed to die (os._exit, as under SIGKILL) at
`before_event_publish`: it has written `success`, with its event in the
outbox, and dies before the event reaches Kafka. The event is not on the
topic then; once a worker runs again its relay publishes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from app.config import PROJECT_ROOT
from tests.conftest import TEST_TOKEN_POLICY
from tests.support.load import LoadResult, TransferClient
from tests.support.stack import Stack

pytestmark = pytest.mark.real_backends


def _tail(stack: Stack, user: int, count: int, timeout: float) -> list[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "consumers.events_tail",
            "--user-id",
            str(user),
            "--from-beginning",
            "--max-events",
            str(count),
            "--timeout",
            str(timeout),
        ],
        env={**os.environ, "BUS_URL": stack.env()["BUS_URL"]},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_success_event_arrives_after_the_worker_died_before_publishing_it(stack: Stack) -> None:
    user = 920_001
    client = TransferClient(stack.base_url, TEST_TOKEN_POLICY)
    client.deposit(user, "USDT", "10", key=f"event-crash-seed-{user}")
    stack.restart("worker", CRASH_POINTS="before_event_publish")
    result = LoadResult()
    client.transfer(result, user, "1", key="event-crash")
    assert len(result.acknowledged) == 1
    request_id = result.acknowledged[0].request_id
    deadline = time.monotonic() + 60
    while stack.processes["worker"].alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not stack.processes["worker"].alive(), "the worker never reached its crash point"

    container = stack.container()
    try:
        stored = container.store.get(request_id)
    finally:
        container.close()
    assert stored is not None and stored.status.value == "success"  # written before the crash ...
    before = _tail(stack, user, 3, timeout=5)
    assert not any("-> success" in line for line in before), before  # ... and its event never published

    # A worker again, its relay closing outbox buckets after 2 s instead of 60 (the test's patience).
    store_url = stack.env()["STORE_URL"] + "&events_margin_seconds=2"
    stack.restart("worker", STORE_URL=store_url, EVENTS_RELAY_GRACE_SECONDS="1", EVENTS_RELAY_INTERVAL_SECONDS="1")
    after = _tail(stack, user, 3, timeout=90)
    assert [line.split(" -> ")[1].split(" ")[0] for line in after] == ["requesting", "pending", "success"], after
    assert f" {request_id} " in after[2] and "by settlement: confirmed by the engine" in after[2]
