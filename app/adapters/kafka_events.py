"""Reading the status event stream from Kafka, for tools such as consumers/events_tail.py.

No consumer group and no commits: a support tool that follows the stream
must never move (or hold) a group's position that a real consumer relies on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from app.adapters.kafka_bus import KafkaBusConfig
from app.domain.events import StatusEvent
from app.ports.errors import DependencyUnavailable

log = logging.getLogger(__name__)

_POLL_MS = 500
_TOPIC_WAIT_SECONDS = 10.0


def follow_events(
    config: KafkaBusConfig,
    on_event: Callable[[StatusEvent], None],
    done: Callable[[], bool],
    *,
    from_beginning: bool = False,
) -> None:
    """Feed every event on the events topic to `on_event` until `done()`; malformed records are logged and skipped."""
    topic = config.topics.events
    consumer = KafkaConsumer(
        bootstrap_servers=list(config.bootstrap_servers),
        client_id=f"{config.client_id}-events-tail",
        group_id=None,
        enable_auto_commit=False,
    )
    try:
        deadline = time.monotonic() + _TOPIC_WAIT_SECONDS
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise DependencyUnavailable("bus", f"topic {topic} not found: has the service published yet?")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if from_beginning:
            consumer.seek_to_beginning(*assigned)
        else:
            consumer.seek_to_end(*assigned)
        while not done():
            for records in consumer.poll(timeout_ms=_POLL_MS).values():
                for record in records:
                    try:
                        event = StatusEvent.from_message(json.loads(record.value))
                    except Exception as exc:
                        log.warning("skipping a malformed event at %s@%d: %s", record.partition, record.offset, exc)
                        continue
                    on_event(event)
    finally:
        consumer.close(autocommit=False)
