"""The reference engine decides a batch at once, and answers every copy of a request alike."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from app.adapters.inprocess_bus import InProcessServiceBus
from app.domain.transfer import Outcome
from app.ports.bus import EngineBus, EngineRequest, EngineResult
from app.ports.errors import DependencyUnavailable
from consumers.reference_engine import ReferenceEngine
from tests.support.inprocess_bus import deliver_queued


class FlakyEngineBus(EngineBus):
    """Records what is published; fails the first `failures` publishes, as an outage would."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.published: list[list[EngineResult]] = []

    def consume_requests(self, handler: object, stop: object) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def publish_results(self, results: Sequence[EngineResult]) -> None:
        if self.failures:
            self.failures -= 1
            raise DependencyUnavailable("bus", "broker away")
        self.published.append(list(results))


def request(request_id: int, amount: int = 100) -> EngineRequest:
    return EngineRequest(request_id, 7, "USDT", "funding", "spot", amount)


def test_a_batch_is_answered_with_one_publish_and_duplicates_get_the_same_answer() -> None:
    bus = FlakyEngineBus()
    engine = ReferenceEngine(bus, reject_suffix="13")
    engine.handle_batch([request(1), request(2, amount=113), request(1)])
    engine.handle_batch([request(2, amount=100)])  # a copy, however it looks now: the first answer stands
    assert bus.published == [
        [
            EngineResult(1, Outcome.CONFIRMED),
            EngineResult(2, Outcome.REJECTED, "reference engine reject rule"),
            EngineResult(1, Outcome.CONFIRMED),
        ],
        [EngineResult(2, Outcome.REJECTED, "reference engine reject rule")],
    ]
    assert engine.applied() == {1: "confirmed", 2: "rejected"}


def test_a_batch_whose_answers_were_not_acknowledged_is_answered_alike_when_it_comes_again() -> None:
    bus = FlakyEngineBus(failures=1)
    engine = ReferenceEngine(bus)
    engine.reject(2)
    with pytest.raises(DependencyUnavailable):
        engine.handle_batch([request(1), request(2)])
    engine.reject(1)  # too late for request 1: it was decided (durably) before the publish failed
    engine.handle_batch([request(1), request(2)])
    assert bus.published == [
        [EngineResult(1, Outcome.CONFIRMED), EngineResult(2, Outcome.REJECTED, "rejected on request")]
    ]


def test_embedded_mode_connects_the_engine_to_the_service_side() -> None:
    service = InProcessServiceBus()
    engine = ReferenceEngine(service.engine_side())
    service.publish_request(request(5))
    settled: list[EngineResult] = []
    assert deliver_queued(service, engine.handle_batch, settled.extend) == 2
    assert settled == [EngineResult(5, Outcome.CONFIRMED)]
