"""`publish_events`, on both buses: every event arrives intact; over Kafka, keyed by request id."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer, TopicPartition

from app.adapters.inprocess_bus import InProcessServiceBus
from app.domain.events import StatusEvent
from app.domain.transfer import API, SETTLEMENT, Status
from app.ports.bus import ServiceBus
from tests.conftest import make_transfer, random_user_id
from tests.support.kafka_fixtures import KafkaTestBuses


@dataclass
class EventKit:
    bus: ServiceBus
    # Every event published so far, as (key, message), waiting up to the deadline for `count`.
    read: Callable[[int], list[tuple[str | None, dict[str, object]]]]


def _kafka_reader(buses: KafkaTestBuses) -> Callable[[int], list[tuple[str | None, dict[str, object]]]]:
    def read(count: int) -> list[tuple[str | None, dict[str, object]]]:
        topic = buses.topics.events
        consumer = KafkaConsumer(bootstrap_servers=buses.servers.split(","), enable_auto_commit=False)
        found: list[tuple[str | None, dict[str, object]]] = []
        deadline = time.monotonic() + 30
        try:
            partitions = consumer.partitions_for_topic(topic)
            assert partitions, f"topic {topic} was not created"
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while len(found) < count and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    found.extend((r.key.decode() if r.key else None, json.loads(r.value)) for r in records)
        finally:
            consumer.close(autocommit=False)
        return found

    return read


@pytest.fixture(params=["inprocess", "kafka"])
def events(request: pytest.FixtureRequest) -> Iterator[EventKit]:
    if request.param == "inprocess":
        bus = InProcessServiceBus()
        seen: list[tuple[str | None, dict[str, object]]] = []
        bus.subscribe_events(lambda event: seen.append((str(event.request_id), event.to_message())))
        yield EventKit(bus, lambda count: list(seen))
        return
    buses: KafkaTestBuses = request.getfixturevalue("kafka_buses")
    yield EventKit(buses.service(), _kafka_reader(buses))


def _events_of_one_transfer() -> list[StatusEvent]:
    transfer = make_transfer(random_user_id(), 2**70)
    now = datetime.now(UTC)
    pending = transfer.moved_to(Status.PENDING, now + timedelta(milliseconds=1))
    success = pending.moved_to(Status.SUCCESS, now + timedelta(milliseconds=2))
    return [
        StatusEvent.status_changed(None, transfer, API, "accepted"),
        StatusEvent.status_changed(transfer, pending, API, "funds locked"),
        StatusEvent.status_changed(pending, success, SETTLEMENT, "confirmed by the engine"),
    ]


def test_events_arrive_intact_and_in_order_keyed_by_request_id(events: EventKit) -> None:
    first, second = _events_of_one_transfer(), _events_of_one_transfer()
    events.bus.publish_events(first)
    events.bus.publish_events(second)
    received = events.read(6)
    assert len(received) == 6
    for batch in (first, second):
        mine = [(key, message) for key, message in received if message["request_id"] == str(batch[0].request_id)]
        # One key per transfer: one partition, so its events keep their order.
        assert [key for key, _ in mine] == [str(batch[0].request_id)] * 3
        assert [StatusEvent.from_message(message) for _, message in mine] == batch
        assert mine[0][1]["amount"] == str(2**70) and mine[0][1]["schema_version"] == 1


def test_publishing_nothing_is_harmless(events: EventKit) -> None:
    events.bus.publish_events([])
    one = _events_of_one_transfer()[:1]
    events.bus.publish_events(one)
    assert [StatusEvent.from_message(m) for _, m in events.read(1)] == one
