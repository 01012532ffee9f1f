"""The Kafka monitor reads lag and dead-letter depth from the brokers, on a real broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from app.adapters.kafka_monitor import BusBacklog, KafkaMonitor
from app.ports.bus import EngineRequest
from tests.support.kafka_fixtures import KafkaTestBuses


def _request(n: int) -> EngineRequest:
    return EngineRequest(request_id=1000 + n, user_id=7, asset="USDT", from_account_type="funding",
                         to_account_type="spot", amount_units=n + 1)  # fmt: skip


def _sample_until(monitor: KafkaMonitor, done: object, timeout: float = 30) -> BusBacklog:
    deadline = time.monotonic() + timeout
    while True:
        backlog = monitor.sample()
        if done(backlog) or time.monotonic() > deadline:  # type: ignore[operator]
            return backlog
        time.sleep(0.5)


def test_lag_counts_what_the_engine_has_not_committed_and_falls_to_zero(kafka_buses: KafkaTestBuses) -> None:
    service = kafka_buses.service()
    for n in range(3):
        service.publish_request(_request(n))
    monitor = KafkaMonitor.from_url(kafka_buses.url())
    try:
        backlog = _sample_until(monitor, lambda b: sum(v for (t, _), v in b.lag.items() if t == "requests") == 3)
        assert sum(lag for (topic, _), lag in backlog.lag.items() if topic == "requests") == 3
        assert all(lag == 0 for (topic, _), lag in backlog.lag.items() if topic == "results")
        assert backlog.dead_letters == {"requests": 0, "results": 0}

        engine = kafka_buses.engine()
        seen: list[int] = []
        stop = threading.Event()

        def handle(batch: Sequence[EngineRequest]) -> None:
            seen.extend(r.request_id for r in batch)

        consumer = threading.Thread(target=engine.consume_requests, args=(handle, stop), daemon=True)
        consumer.start()
        try:
            backlog = _sample_until(
                monitor, lambda b: sum(v for (t, _), v in b.lag.items() if t == "requests") == 0 and len(seen) == 3
            )
        finally:
            stop.set()
            consumer.join(timeout=30)
        assert sorted(seen) == [1000, 1001, 1002]
        assert sum(lag for (topic, _), lag in backlog.lag.items() if topic == "requests") == 0
    finally:
        monitor.close()


def test_dead_letter_depth_counts_the_records_in_each_dlq(kafka_buses: KafkaTestBuses) -> None:
    kafka_buses.service().ping()
    kafka_buses.send_raw(kafka_buses.topics.results_dlq, None, [b'{"kind": "poison"}', b'{"kind": "malformed"}'])
    monitor = KafkaMonitor.from_url(kafka_buses.url())
    try:
        backlog = _sample_until(monitor, lambda b: b.dead_letters.get("results") == 2)
        assert backlog.dead_letters["results"] == 2
        assert backlog.dead_letters["requests"] == 0
    finally:
        monitor.close()
