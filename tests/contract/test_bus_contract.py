"""The bus contract, for both its ends: batches, fallback, bounded retries, dead letters, commits.

Runs against every implementation through a BusKit (tests/support/bus_kits.py):
in-process and Kafka.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import pytest

from app.adapters.bus_messages import encode_request
from app.domain.transfer import Outcome
from app.ports.bus import EngineRequest, EngineResult, PoisonMessage
from app.ports.errors import DependencyUnavailable
from tests.conftest import random_request_id, random_user_id
from tests.support.bus_kits import BusKit

Message = TypeVar("Message")
DEADLINE_SECONDS = 30.0
# Retries in these tests back off from 50 ms, so a bound of a few attempts is reached in well under a second.
FAST = {"retry_backoff_ms": 50}


@contextmanager
def consuming(
    run: Callable[[Callable[[Sequence[Message]], None], threading.Event], None],
    handler: Callable[[Sequence[Message]], None],
) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(handler, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=DEADLINE_SECONDS)
        assert not thread.is_alive(), "the consumer did not stop"


def wait_for(condition: Callable[[], bool], deadline_seconds: float = DEADLINE_SECONDS) -> bool:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def a_request(amount: int = 2**70, user_id: int | None = None) -> EngineRequest:
    return EngineRequest(
        request_id=random_request_id(),
        user_id=user_id or random_user_id(),
        asset="USDT",
        from_account_type="funding",
        to_account_type="spot",
        amount_units=amount,
    )


def a_result() -> EngineResult:
    return EngineResult(random_request_id(), Outcome.CONFIRMED)


class Recorder:
    """A batch handler that records every call (thread-safe) and may refuse some."""

    def __init__(self, refuse: Callable[[Sequence[object]], None] = lambda batch: None) -> None:
        self.calls: list[list[int]] = []  # request ids per call, refused or not
        self.handled: list[object] = []  # messages of the calls that returned
        self.refuse = refuse
        self._lock = threading.Lock()

    def __call__(self, batch: Sequence[object]) -> None:
        with self._lock:
            self.calls.append([m.request_id for m in batch])  # type: ignore[attr-defined]
        self.refuse(batch)
        with self._lock:
            self.handled.extend(batch)

    def handled_ids(self) -> set[int]:
        with self._lock:
            return {m.request_id for m in self.handled}  # type: ignore[attr-defined]

    def calls_with(self, request_id: int) -> list[list[int]]:
        with self._lock:
            return [call for call in self.calls if request_id in call]


def _alerts(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "internal_transfer.alerts"]


def test_requests_reach_the_engine_side_intact(buses: BusKit) -> None:
    service, engine = buses.service(), buses.engine()
    sent = [a_request() for _ in range(5)]
    received = Recorder()
    with consuming(engine.consume_requests, received):
        for request in sent:
            service.publish_request(request)
        assert wait_for(lambda: {r.request_id for r in sent} <= received.handled_ids())
    mine = {r.request_id: r for r in received.handled}  # type: ignore[attr-defined]
    assert all(mine[r.request_id] == r for r in sent)


def test_results_reach_settlement_intact(buses: BusKit) -> None:
    service, engine = buses.service(), buses.engine()
    sent = [a_result(), EngineResult(random_request_id(), Outcome.REJECTED, "limits")]
    received = Recorder()
    with consuming(service.consume_results, received):
        engine.publish_results(sent)
        assert wait_for(lambda: {r.request_id for r in sent} <= received.handled_ids())
    assert {r.request_id: r for r in received.handled}[sent[1].request_id] == sent[1]  # type: ignore[attr-defined]


def test_results_come_in_batches_no_larger_than_the_maximum(buses: BusKit) -> None:
    service, engine = buses.service(max_batch=8), buses.engine()
    sent = [a_result() for _ in range(40)]
    engine.publish_results(sent)  # all waiting before the consumer starts: they can only come in batches
    received = Recorder()
    with consuming(service.consume_results, received):
        assert wait_for(lambda: {r.request_id for r in sent} <= received.handled_ids())
    sizes = [len(call) for call in received.calls]
    assert max(sizes) > 1
    assert max(sizes) <= 8
    assert sum(sizes) == len(sent)  # each once: every call returned, so nothing was redelivered


def test_a_failing_batch_is_retried_one_message_at_a_time(buses: BusKit) -> None:
    service, engine = buses.service(**FAST), buses.engine()
    sent = [a_result() for _ in range(10)]
    engine.publish_results(sent)

    def only_one_at_a_time(batch: Sequence[object]) -> None:
        if len(batch) > 1:
            raise RuntimeError("this batch cannot be applied together")

    received = Recorder(only_one_at_a_time)
    with consuming(service.consume_results, received):
        assert wait_for(lambda: {r.request_id for r in sent} <= received.handled_ids())
    assert any(len(call) > 1 for call in received.calls)  # a batch was tried...
    for result in sent:  # ...and each of its messages was then handled alone
        assert [result.request_id] in received.calls_with(result.request_id)


def test_a_message_that_keeps_failing_is_dead_lettered_with_an_alert_and_its_partition_moves_on(
    buses: BusKit, caplog: pytest.LogCaptureFixture
) -> None:
    service, engine = buses.service(), buses.engine(max_attempts=3, **FAST)
    user = random_user_id()  # one user: one partition, in the order published
    bad, good = a_request(user_id=user), a_request(user_id=user)

    def asset_removed(batch: Sequence[object]) -> None:
        if any(m.request_id == bad.request_id for m in batch):  # type: ignore[attr-defined]
            raise KeyError("asset 'USDT' is not in assets.toml")

    received = Recorder(asset_removed)
    caplog.set_level(logging.WARNING, logger="internal_transfer.alerts")
    service.publish_request(bad)
    service.publish_request(good)
    with consuming(engine.consume_requests, received):
        assert wait_for(lambda: good.request_id in received.handled_ids())
        (letter,) = buses.dead_letters("requests", count=2, deadline_seconds=2.0)  # one letter, not one per retry
    alone = [call for call in received.calls_with(bad.request_id) if call == [bad.request_id]]
    assert len(alone) == 3  # exactly max_attempts attempts on its own, then no more
    assert bad.request_id not in received.handled_ids()
    # The partition was held up until the bad one was dead-lettered, then moved on.
    last_bad = max(i for i, call in enumerate(received.calls) if bad.request_id in call)
    first_good = min(
        i for i, call in enumerate(received.calls) if good.request_id in call and bad.request_id not in call
    )
    assert first_good > last_bad
    assert letter["kind"] == "retries_exhausted"
    assert letter["attempts"] == 3
    assert "KeyError" in str(letter["error"]) and "assets.toml" in str(letter["error"])
    assert json.loads(str(letter["payload"])) == encode_request(bad)
    (alert,) = [a for a in _alerts(caplog) if a["alert"] == "message_dead_lettered"]
    assert alert["severity"] == "critical"
    assert alert["request_id"] == bad.request_id
    assert "assets.toml" in str(alert["error"])


def test_an_outage_is_retried_past_the_bound_and_never_dead_lettered(
    buses: BusKit, caplog: pytest.LogCaptureFixture
) -> None:
    service, engine = buses.service(max_attempts=2, **FAST), buses.engine()
    result = a_result()
    failures: list[Exception] = [
        RuntimeError("a message-specific failure: counts once"),
        *(DependencyUnavailable("store", "down") for _ in range(4)),
    ]

    def down_for_a_while(batch: Sequence[object]) -> None:
        if failures:
            raise failures.pop(0)

    received = Recorder(down_for_a_while)
    caplog.set_level(logging.WARNING, logger="internal_transfer.alerts")
    engine.publish_results([result])
    with consuming(service.consume_results, received):
        assert wait_for(lambda: result.request_id in received.handled_ids())
    assert len(received.calls_with(result.request_id)) == 6  # 5 failures, 2 of them past max_attempts=2
    assert buses.dead_letters("results", count=1, deadline_seconds=2.0) == []
    assert [a for a in _alerts(caplog) if a["alert"] == "message_dead_lettered"] == []


def test_a_poison_message_is_dead_lettered_at_once_and_does_not_block_the_ones_after_it(buses: BusKit) -> None:
    service, engine = buses.service(**FAST), buses.engine()
    poison, healthy = a_result(), a_result()

    def unknown(batch: Sequence[object]) -> None:
        if any(m.request_id == poison.request_id for m in batch):  # type: ignore[attr-defined]
            raise PoisonMessage("result for unknown request")

    received = Recorder(unknown)
    engine.publish_results([poison, healthy])
    with consuming(service.consume_results, received):
        assert wait_for(lambda: healthy.request_id in received.handled_ids())
        (letter,) = buses.dead_letters("results", count=1)
    assert poison.request_id not in received.handled_ids()
    assert received.calls_with(poison.request_id).count([poison.request_id]) == 1  # alone once: no retries
    assert letter["kind"] == "poison" and letter["attempts"] == 1
    assert "unknown request" in str(letter["error"])


def test_offsets_are_committed_only_after_the_handler_returned(buses: BusKit) -> None:
    engine = buses.engine()
    acknowledged, unacknowledged, later = a_result(), a_result(), a_result()

    first = Recorder()
    engine.publish_results([acknowledged])
    with consuming(buses.service().consume_results, first):
        assert wait_for(lambda: acknowledged.request_id in first.handled_ids())

    def store_down(batch: Sequence[object]) -> None:
        raise RuntimeError("store down")

    failing = Recorder(store_down)
    engine.publish_results([unacknowledged])
    with consuming(buses.service(max_attempts=100, **FAST).consume_results, failing):
        assert wait_for(lambda: len(failing.calls_with(unacknowledged.request_id)) >= 2)
    assert failing.calls_with(acknowledged.request_id) == []

    restarted = Recorder()
    engine.publish_results([later])
    with consuming(buses.service().consume_results, restarted):
        assert wait_for(lambda: {unacknowledged.request_id, later.request_id} <= restarted.handled_ids())
    assert acknowledged.request_id not in restarted.handled_ids()


def test_ping_answers(buses: BusKit) -> None:
    buses.service().ping()
