"""The bus inside one process, for embedded mode: two in-memory topics.

An `InProcessLink` holds the topics; `InProcessServiceBus` and
`InProcessEngineBus` are its two ends (`InProcessServiceBus().engine_side()`
gives the engine's end of the same link, for the reference engine running
in the same process). Each topic behaves like one Kafka partition with one
consumer group: records stay until a consumer commits past them, so a
consumer that stops (or fails) leaves what it had not acknowledged to the
next one. Batching, retries and dead letters follow the same rules as Kafka
(app/adapters/bus_delivery.py).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

from app.adapters.bus_delivery import BatchDelivery, DeliveryPolicy, Polled
from app.adapters.bus_messages import encode_request, encode_result
from app.domain.events import StatusEvent
from app.ports.bus import (
    AnyEngineRequest,
    EngineBus,
    EngineResult,
    RequestBatchHandler,
    ResultBatchHandler,
    ServiceBus,
)

log = logging.getLogger(__name__)


Message = TypeVar("Message")

# How long one read waits for records: also how quickly a consumer notices `stop`.
_POLL_SECONDS = 0.1
_PARTITION = 0
DLQ_SCHEMA_VERSION = 1


class InProcessTopic(Generic[Message]):
    """An append-only log with one committed offset: a single partition, a single group."""

    def __init__(self, name: str, encode: Callable[[Message], dict[str, object]]) -> None:
        self.name = name
        # The wire form, for a dead letter's payload (docs/messages.md).
        self.encode = encode
        self._records: deque[Message] = deque()
        self._first_offset = 0  # offset of _records[0]: everything before is committed and gone
        self._changed = threading.Condition()
        # One consumer at a time, as one Kafka partition has one owner in a group.
        self.consumer_slot = threading.Lock()

    def append(self, messages: Sequence[Message]) -> None:
        with self._changed:
            self._records.extend(messages)
            self._changed.notify_all()

    def read(self, max_count: int, wait_seconds: float) -> list[tuple[int, Message]]:
        """Up to `max_count` uncommitted records, oldest first, with their offsets."""
        with self._changed:
            if not self._records:
                self._changed.wait(wait_seconds)
            count = min(max_count, len(self._records))
            return [(self._first_offset + i, self._records[i]) for i in range(count)]

    def commit(self, next_offset: int) -> None:
        with self._changed:
            while self._first_offset < next_offset and self._records:
                self._records.popleft()
                self._first_offset += 1

    def pending(self) -> int:
        with self._changed:
            return len(self._records)


class InProcessLink:
    """The two topics both ends share, and what was dead-lettered from them."""

    def __init__(self) -> None:
        self.requests: InProcessTopic[AnyEngineRequest] = InProcessTopic("internal_transfer.requests", encode_request)
        self.results: InProcessTopic[EngineResult] = InProcessTopic("internal_transfer.results", encode_result)
        # The same JSON shape as Kafka's DLQ records (docs/messages.md), minus the Kafka-only fields.
        self.dead_letters: list[dict[str, object]] = []
        self._dead_letters_lock = threading.Lock()
        # The status event stream in embedded mode: callbacks, called in publishing order.
        self.event_subscribers: list[Callable[[StatusEvent], None]] = []

    def dead_letter(
        self, topic: InProcessTopic[Message], offset: int, message: Message | None, kind: str, error: str, attempts: int
    ) -> bool:
        letter: dict[str, object] = {
            "schema_version": DLQ_SCHEMA_VERSION,
            "kind": kind,
            "error": error,
            "attempts": attempts,
            "source_topic": topic.name,
            "source_partition": _PARTITION,
            "source_offset": offset,
            # In-process messages are objects, never undecodable bytes: None cannot happen here.
            "payload": None if message is None else json.dumps(topic.encode(message), sort_keys=True),
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        with self._dead_letters_lock:
            self.dead_letters.append(letter)
        log.error("dead-lettered %s@%d: %s", topic.name, offset, error)
        return True


class _InProcessEnd:
    def __init__(self, link: InProcessLink, policy: DeliveryPolicy) -> None:
        self.link = link
        self.policy = policy

    def close(self) -> None:
        # Nothing to release: the link lives as long as the process.
        return None

    def _consume(
        self, topic: InProcessTopic[Message], handler: Callable[[Sequence[Message]], None], stop: threading.Event
    ) -> None:
        while not topic.consumer_slot.acquire(timeout=_POLL_SECONDS):
            if stop.is_set():
                return
        try:
            self._poll_loop(topic, handler, stop)
        finally:
            topic.consumer_slot.release()

    def _poll_loop(
        self, topic: InProcessTopic[Message], handler: Callable[[Sequence[Message]], None], stop: threading.Event
    ) -> None:
        delivery: BatchDelivery[int, Message] = BatchDelivery(
            handler,
            self.policy,
            lambda polled, kind, error, attempts: self.link.dead_letter(
                topic, polled.offset, polled.message, kind, error, attempts
            ),
            topic.name,
        )

        def running() -> bool:
            return not stop.is_set()

        while running():
            records = topic.read(self.policy.max_batch, _POLL_SECONDS)
            if not records:
                continue
            polled = {_PARTITION: [Polled(_PARTITION, offset, message) for offset, message in records]}
            outcome = delivery.deliver(polled, running)[_PARTITION]
            if outcome.commit_up_to is not None:
                topic.commit(outcome.commit_up_to)
            if outcome.retry_from is not None:
                # The next read starts at the committed offset: the failed record.
                stop.wait(outcome.retry_after_seconds)


class InProcessServiceBus(_InProcessEnd, ServiceBus):
    def __init__(self, link: InProcessLink | None = None, policy: DeliveryPolicy | None = None) -> None:
        super().__init__(link or InProcessLink(), policy or DeliveryPolicy())

    def publish_request(self, request: AnyEngineRequest) -> None:
        self.link.requests.append([request])

    def consume_results(self, handler: ResultBatchHandler, stop: threading.Event) -> None:
        self._consume(self.link.results, handler, stop)

    def publish_events(self, events: Sequence[StatusEvent]) -> None:
        # Every subscriber gets every event; one that fails makes the publish
        # fail (after the others had theirs), so the outbox keeps the events
        # for the relay: at least once, as over Kafka.
        failures = 0
        for event in events:
            for subscriber in list(self.link.event_subscribers):
                try:
                    subscriber(event)
                except Exception:
                    failures += 1
                    log.exception("an event subscriber failed on %s", event.event_id)
        if failures:
            raise RuntimeError(f"{failures} event deliveries to subscribers failed")

    def subscribe_events(self, subscriber: Callable[[StatusEvent], None]) -> None:
        """Embedded mode's stand-in for consuming `internal_transfer.events`."""
        self.link.event_subscribers.append(subscriber)

    def ping(self) -> None:
        return None

    def engine_side(self, policy: DeliveryPolicy | None = None) -> InProcessEngineBus:
        """The engine's end of this same link (embedded mode: the engine runs in this process)."""
        return InProcessEngineBus(self.link, policy or self.policy)


class InProcessEngineBus(_InProcessEnd, EngineBus):
    def __init__(self, link: InProcessLink, policy: DeliveryPolicy | None = None) -> None:
        super().__init__(link, policy or DeliveryPolicy())

    def consume_requests(self, handler: RequestBatchHandler, stop: threading.Event) -> None:
        self._consume(self.link.requests, handler, stop)

    def publish_results(self, results: Sequence[EngineResult]) -> None:
        self.link.results.append(results)
