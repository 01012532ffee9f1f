"""The TransferBus contract: delivery, redelivery on failure, dead letters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from app.ports.bus import EngineRequest, EngineResult, PoisonMessage, TransferBus
from tests.conftest import random_request_id, random_user_id

Message = TypeVar("Message")
DEADLINE_SECONDS = 30.0


@contextmanager
def consuming(
    run: Callable[[Callable[[Message], None], threading.Event], None], handler: Callable[[Message], None]
) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(handler, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=DEADLINE_SECONDS)


def wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def a_request(amount: int = 2**70) -> EngineRequest:
    return EngineRequest(
        request_id=random_request_id(),
        user_id=random_user_id(),
        asset="USDT",
        from_account_type="funding",
        to_account_type="spot",
        amount_units=amount,
    )


def test_requests_reach_the_engine_side_intact(bus: TransferBus) -> None:
    sent = [a_request() for _ in range(5)]
    received: list[EngineRequest] = []
    with consuming(bus.consume_requests, received.append):
        for request in sent:
            bus.publish_request(request)
        assert wait_for(lambda: {r.request_id for r in sent} <= {r.request_id for r in received})
    mine = {r.request_id: r for r in received}
    assert all(mine[r.request_id] == r for r in sent)


def test_results_reach_settlement_intact(bus: TransferBus) -> None:
    sent = [EngineResult(random_request_id(), "confirmed"), EngineResult(random_request_id(), "rejected", "limits")]
    received: list[EngineResult] = []
    with consuming(bus.consume_results, received.append):
        for result in sent:
            bus.publish_result(result)
        assert wait_for(lambda: {r.request_id for r in sent} <= {r.request_id for r in received})
    assert {r.request_id: r for r in received}[sent[1].request_id] == sent[1]


def test_a_failed_handler_gets_the_message_again(bus: TransferBus) -> None:
    result = EngineResult(random_request_id(), "confirmed")
    attempts: list[int] = []
    handled = threading.Event()

    def flaky(message: EngineResult) -> None:
        if message.request_id != result.request_id:
            return
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("store briefly down")
        handled.set()

    with consuming(bus.consume_results, flaky):
        bus.publish_result(result)
        assert handled.wait(DEADLINE_SECONDS)
    assert len(attempts) >= 2


def test_a_poison_message_does_not_block_the_ones_after_it(bus: TransferBus) -> None:
    poison, healthy = EngineResult(random_request_id(), "confirmed"), EngineResult(random_request_id(), "confirmed")
    handled: list[int] = []

    def handler(message: EngineResult) -> None:
        if message.request_id == poison.request_id:
            raise PoisonMessage("unknown request")
        handled.append(message.request_id)

    with consuming(bus.consume_results, handler):
        bus.publish_result(poison)
        bus.publish_result(healthy)
        assert wait_for(lambda: healthy.request_id in handled)
    assert poison.request_id not in handled


def test_ping_answers(bus: TransferBus) -> None:
    bus.ping()
