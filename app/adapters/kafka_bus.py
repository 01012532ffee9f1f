"""The bus over Apache Kafka, with kafka-python: the service's side and the engine's.

Topics (see docs/messages.md for the message shapes):

* ``{prefix}internal_transfer.requests``: service -> engine, keyed by user_id,
  so one user's requests stay in order on one partition;
* ``{prefix}internal_transfer.results``: engine -> service, keyed by request_id;
* ``{prefix}internal_transfer.requests.dlq`` / ``.results.dlq``: what a
  consumer could never handle, with the error and the original payload;
* ``{prefix}internal_transfer.events``: the status event stream, keyed by
  request_id, so one transfer's events stay in order (docs/events.md).

Publishing blocks until every in-sync replica has the record (acks=all, an
idempotent producer) or raises DependencyUnavailable within
``request_timeout_ms``; the record may still land later, which is harmless
because every consumer of these topics is idempotent. The producer lingers
``linger_ms`` (default 5) before sending, so records published by concurrent
web threads share produce requests instead of queueing one behind another
(an idempotent producer has one request in flight per connection).

Consuming is at-least-once and in batches: an offset is committed only after
the batch handler returned (or the message was safely dead-lettered), so a
crash or a failing handler means redelivery, never loss. What happens when a
handler fails is in app/adapters/bus_delivery.py.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import kafka
import kafka.producer.sender
from kafka import ConsumerRebalanceListener, KafkaClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import BrokerResponseError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from app.adapters.backend_url import BackendUrl, flag
from app.adapters.bus_delivery import Backoff, BatchDelivery, DeliveryPolicy, Polled
from app.adapters.bus_messages import decode_request, decode_result, encode_request, encode_result
from app.domain.events import StatusEvent
from app.ports.bus import (
    AnyEngineRequest,
    EngineBus,
    EngineResult,
    RequestBatchHandler,
    ResultBatchHandler,
    ServiceBus,
)
from app.ports.errors import DependencyUnavailable
from app.services.crash_points import crash_point

log = logging.getLogger(__name__)

Message = TypeVar("Message")

BACKEND = "bus"
DLQ_SCHEMA_VERSION = 1

# How long one poll waits for records: also how quickly a consumer notices `stop`.
_POLL_TIMEOUT_MS = 500
# A failing handler: the partition is paused, then the message retried after
# retry_backoff_ms, doubling per consecutive failure of that partition up to this.
_RETRY_BACKOFF_MAX_SECONDS = 5.0
# The consumer itself failing (broker gone, ...): it is rebuilt after this backoff.
_RECONNECT_BACKOFF_SECONDS = 1.0
_RECONNECT_BACKOFF_MAX_SECONDS = 10.0
# The clients' own reconnect backoff cap (kafka-python's default, 30 s, would
# make resuming after an outage needlessly slow).
_CLIENT_RECONNECT_BACKOFF_MAX_MS = 2000
# Broker version probe when a client is created; also bounds failing fast.
_API_VERSION_PROBE_MS = 2000
_CONSUMER_CLOSE_TIMEOUT_MS = 5000
_PRODUCER_CLOSE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class KafkaTopics:
    requests: str
    results: str
    requests_dlq: str
    results_dlq: str
    events: str

    @classmethod
    def with_prefix(cls, prefix: str) -> KafkaTopics:
        return cls(
            requests=f"{prefix}internal_transfer.requests",
            results=f"{prefix}internal_transfer.results",
            requests_dlq=f"{prefix}internal_transfer.requests.dlq",
            results_dlq=f"{prefix}internal_transfer.results.dlq",
            events=f"{prefix}internal_transfer.events",
        )

    def all(self) -> tuple[str, ...]:
        return (self.requests, self.results, self.requests_dlq, self.results_dlq, self.events)


@dataclass(frozen=True)
class KafkaBusConfig:
    bootstrap_servers: tuple[str, ...]
    topic_prefix: str = ""
    group: str = "internal-transfer-settlement"
    engine_group: str = "reference-engine"
    # The bound on one publish (and on an offset commit, a topic check): a
    # publish never blocks longer than this before raising DependencyUnavailable.
    request_timeout_ms: int = 10_000
    ping_timeout_ms: int = 2_000
    partitions: int = 6
    replication_factor: int = 1
    create_topics: bool = True
    client_id: str = "internal-transfer"
    # How long the producer waits for more records to share a produce request
    # with; part of request_timeout_ms, not added to it.
    linger_ms: int = 5
    # At most this many records in one batch handed to a consumer's handler.
    max_batch: int = 500
    # Attempts of one failing message before it is dead-lettered (outages do not count).
    max_attempts: int = 5
    # The first retry's delay after a handler failed; doubles up to 5 s.
    retry_backoff_ms: int = 500
    # A consumer's fetch waits up to fetch_max_wait_ms for fetch_min_bytes to
    # gather: fewer, fuller fetches (much of the broker's and the consumers'
    # CPU per message) for at most that much latency per hop.
    fetch_min_bytes: int = 16_384
    fetch_max_wait_ms: int = 100
    # kafka-python's own client metrics: nowhere exported, and a measurable
    # share of a publish's CPU, so off unless asked for (tests read them).
    client_metrics: bool = False
    topics: KafkaTopics = field(init=False)

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ValueError("a kafka:// URL needs at least one host:port")
        for name in (
            "request_timeout_ms",
            "ping_timeout_ms",
            "partitions",
            "replication_factor",
            "max_batch",
            "max_attempts",
            "retry_backoff_ms",
            "fetch_min_bytes",
            "fetch_max_wait_ms",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.request_timeout_ms < 1000:
            raise ValueError("request_timeout_ms must be at least 1000")
        if not 0 <= self.linger_ms <= 100:
            raise ValueError("linger_ms must be between 0 and 100: it delays every publish")
        object.__setattr__(self, "topics", KafkaTopics.with_prefix(self.topic_prefix))

    @property
    def delivery(self) -> DeliveryPolicy:
        backoff = self.retry_backoff_ms / 1000
        return DeliveryPolicy(
            max_batch=self.max_batch,
            max_attempts=self.max_attempts,
            backoff_seconds=backoff,
            backoff_max_seconds=max(backoff, _RETRY_BACKOFF_MAX_SECONDS),
        )

    _INT_PARAMS = (
        "request_timeout_ms",
        "ping_timeout_ms",
        "partitions",
        "replication_factor",
        "linger_ms",
        "max_batch",
        "max_attempts",
        "retry_backoff_ms",
        "fetch_min_bytes",
        "fetch_max_wait_ms",
    )
    _STR_PARAMS = ("topic_prefix", "group", "engine_group", "client_id")

    _FLAG_PARAMS = ("create_topics", "client_metrics")

    @classmethod
    def from_url(cls, url: str) -> KafkaBusConfig:
        """kafka://host1:9092,host2:9092?topic_prefix=&group=...&engine_group=...&request_timeout_ms=..."""
        converters: dict[str, Callable[[str], Any]] = {
            **dict.fromkeys(cls._INT_PARAMS, int),
            **dict.fromkeys(cls._STR_PARAMS, str),
            **dict.fromkeys(cls._FLAG_PARAMS, flag),
        }
        parsed = BackendUrl.parse(url, "kafka", converters)
        servers = tuple(s.strip() for s in parsed.hosts.split(",") if s.strip())
        # Every given option is a known one (parse refused the rest), so each converts.
        params: dict[str, Any] = {name: parsed.get_optional(name, converters[name]) for name in parsed.options}
        return cls(bootstrap_servers=servers, **params)


class _Malformed(Exception):
    """A record that cannot be decoded into a message: it goes to the DLQ."""


@dataclass(frozen=True)
class _Stream(Generic[Message]):
    """One consumed topic: where it dead-letters, its group, how it decodes."""

    topic: str
    dlq_topic: str
    group: str
    decode: Callable[[dict[str, object]], Message]


class _AssignmentTracker(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python ships no types
    """Keeps the bus's view of which partitions its consumers own."""

    def __init__(self, owner: _KafkaEndpoint, key: str) -> None:
        self.owner, self.key = owner, key

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.owner._set_assignment(self.key, ())
        self.owner._forget_unconfirmed(self.key, revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner._set_assignment(self.key, assigned)


def _log_failed_commit(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("asynchronous offset commit failed: %r; the messages may be delivered again", response)


def _encode(message: Mapping[str, object]) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _fix_failed_produce(producer: KafkaProducer) -> None:
    """Work around a kafka-python 2.x bug that wedges a partition for good.

    When a produce request fails in the client (request timeout, connection
    lost) and its batch may not be retried any more (delivery timeout
    reached), 2.x's Sender._failed_produce hands an exception *instance* to
    code that calls it like a class. The TypeError ("Error processing
    errback") skips unmuting the partition, and with idempotence (one request
    in flight per partition) every later record for it then expires unsent
    until the producer is replaced: seen here after a broker hung for 25 s.
    Fixed upstream in kafka-python 3.0 (dpkp/kafka-python#2851); here the
    batch is completed with the error's class, as the rest of 2.x expects.
    """
    sender = getattr(producer, "_sender", None)
    response_type = getattr(kafka.producer.sender, "PartitionResponse", None)
    if sender is None or response_type is None or not kafka.__version__.startswith("2."):
        return

    def failed_produce(batches: Any, node_id: Any, error: Any) -> None:
        log.warning("produce request to node %s failed: %s", node_id, error)
        error_type = error if isinstance(error, type) else type(error)
        for batch in batches:
            sender._complete_batch(batch, response_type(error=error_type, error_message=str(error)))

    sender._failed_produce = failed_produce


def _decode_body(value: bytes | None) -> dict[str, object]:
    if value is None:
        raise _Malformed("empty record (no value)")
    try:
        body = json.loads(value)
    except Exception as exc:  # bad UTF-8, bad JSON, absurd nesting: all the same to us
        raise _Malformed(f"invalid JSON: {type(exc).__name__}: {exc}") from exc
    if not isinstance(body, dict):
        raise _Malformed(f"not a JSON object but {type(body).__name__}")
    return body


class _KafkaEndpoint:
    """What both sides share: the producer, topic creation, the consumer loop, ping."""

    def __init__(self, config: KafkaBusConfig) -> None:
        self.config = config
        self.topics = config.topics
        self._closed = False
        self._lock = threading.Lock()  # guards the lazily built clients below
        self._producer: KafkaProducer | None = None
        self._producer_pid = 0
        self._ping_client: KafkaClient | None = None
        self._ping_pid = 0
        self._ping_lock = threading.Lock()
        self._topics_lock = threading.Lock()
        self._topics_ready = not config.create_topics
        self._assignments: dict[str, frozenset[tuple[str, int]]] = {}
        self._assignments_lock = threading.Lock()
        # Per running consumer: offsets committed without waiting, by partition.
        self._unconfirmed: dict[str, dict[TopicPartition, int]] = {}

    # -- publishing -----------------------------------------------------------

    def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._send_all(topic, [(key, value)])

    def _send_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Send every record, then block until the broker acknowledged all, or raise within the timeout."""
        timeout = self.config.request_timeout_ms / 1000
        started = time.monotonic()
        deadline = started + timeout
        producer: KafkaProducer | None = None
        try:
            # Setting up (topics, the producer) may use half the budget: the
            # producer's own metadata wait (max_block_ms) is the other half.
            self._ensure_topics(started + timeout / 2)
            producer = self._get_producer(started + timeout / 2)
            futures: list[Any] = []  # kafka-python's FutureRecordMetadata, untyped
            for key, value in records:
                if time.monotonic() > deadline:  # send() itself may block (metadata, a full buffer)
                    raise TimeoutError(f"{len(futures)} of {len(records)} records sent")
                futures.append(producer.send(topic, key=key, value=value))
            # All are in the producer's batches before the first wait, so they
            # travel together rather than one acknowledgement after another.
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except DependencyUnavailable:
            raise
        except Exception as exc:  # KafkaError, timeouts, a closed producer: all "not accepted"
            elapsed = time.monotonic() - started
            if producer is not None:
                # After records expired unsent, kafka-python 2.x's idempotent
                # producer can keep a partition muted for good (seen after a
                # broker restart): the next publish gets a new producer.
                self._discard_producer(producer)
            raise DependencyUnavailable(
                BACKEND,
                f"publish of {len(records)} to {topic} not acknowledged after {elapsed:.1f}s: "
                f"{type(exc).__name__}: {exc}",
            ) from exc

    def _discard_producer(self, producer: KafkaProducer) -> None:
        with self._lock:
            replaced = self._producer is not producer
            if not replaced:
                self._producer = None
        if replaced:
            return  # another thread replaced it already
        try:
            producer.close(timeout=0)
        except Exception:
            log.debug("closing a discarded producer failed", exc_info=True)
        log.warning("Kafka producer discarded after a failed publish; the next publish makes a new one")

    def _get_producer(self, deadline: float) -> KafkaProducer:
        with self._lock:
            if self._closed:
                raise DependencyUnavailable(BACKEND, "the bus is closed")
            if self._producer is not None and self._producer_pid == os.getpid():
                return self._producer
            # None yet, or one inherited across a fork: its I/O thread did not
            # survive the fork, so it is abandoned (not closed) and rebuilt here.
            timeout_ms = self.config.request_timeout_ms
            self._producer = KafkaProducer(
                bootstrap_servers=list(self.config.bootstrap_servers),
                client_id=f"{self.config.client_id}-producer",
                acks="all",
                enable_idempotence=True,  # supported by kafka-python 2.x and Kafka >= 0.11
                # retries are left at their default (unbounded) and bounded by
                # delivery_timeout_ms instead, as kafka-python recommends.
                # Lingering lets concurrent publishes share a produce request;
                # kafka-python wants delivery_timeout_ms >= request_timeout_ms +
                # linger_ms, so the linger comes out of the request's share.
                linger_ms=self.config.linger_ms,
                request_timeout_ms=timeout_ms - self.config.linger_ms,
                delivery_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms // 2,
                api_version_auto_timeout_ms=self._probe_ms(deadline),
                reconnect_backoff_max_ms=_CLIENT_RECONNECT_BACKOFF_MAX_MS,
                metrics_enabled=self.config.client_metrics,
            )
            _fix_failed_produce(self._producer)
            self._producer_pid = os.getpid()
            return self._producer

    @staticmethod
    def _probe_ms(deadline: float) -> int:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        return max(100, min(_API_VERSION_PROBE_MS, remaining_ms))

    # -- topics ---------------------------------------------------------------

    def _ensure_topics(self, deadline: float) -> None:
        """Create the bus's topics on first use; existing ones are left as they are."""
        if self._topics_ready:
            return
        with self._topics_lock:
            if self._topics_ready:
                return
            budget_ms = max(500, int((deadline - time.monotonic()) * 1000))
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=list(self.config.bootstrap_servers),
                    client_id=f"{self.config.client_id}-admin",
                    request_timeout_ms=budget_ms,
                    api_version_auto_timeout_ms=self._probe_ms(deadline),
                    reconnect_backoff_max_ms=_CLIENT_RECONNECT_BACKOFF_MAX_MS,
                )
            except Exception as exc:
                raise DependencyUnavailable(BACKEND, f"cannot reach Kafka to check topics: {exc!r}") from exc
            try:
                for topic in self.topics.all():
                    self._create_topic(admin, topic, budget_ms)
            finally:
                admin.close()
            self._topics_ready = True

    def _create_topic(self, admin: KafkaAdminClient, topic: str, timeout_ms: int) -> None:
        new = NewTopic(topic, num_partitions=self.config.partitions, replication_factor=self.config.replication_factor)
        try:
            admin.create_topics([new], timeout_ms=timeout_ms)
            log.info("created topic %s (%d partitions)", topic, self.config.partitions)
        except TopicAlreadyExistsError:
            pass
        except BrokerResponseError as exc:
            # The broker answered but refused (no ACL for it, a policy, a bad
            # replication factor...): the topics may well be provisioned by
            # operations, so carry on; publishing says so if they are not.
            log.warning("could not create topic %s: %s", topic, exc)
        except Exception as exc:
            raise DependencyUnavailable(BACKEND, f"cannot create topic {topic}: {exc!r}") from exc

    # -- consuming ------------------------------------------------------------

    def assigned_partitions(self, topic: str) -> frozenset[int]:
        """The partitions of `topic` that this bus's running consumers own right now."""
        with self._assignments_lock:
            return frozenset(p for owned in self._assignments.values() for t, p in owned if t == topic)

    def _set_assignment(self, key: str, partitions: Any) -> None:
        with self._assignments_lock:
            self._assignments[key] = frozenset((tp.topic, tp.partition) for tp in partitions)

    def _forget_unconfirmed(self, key: str, revoked: Any) -> None:
        # A revoked partition's offsets are its next owner's business: committing
        # ours later, should it come back, could move the group's offset backwards.
        unconfirmed = self._unconfirmed.get(key, {})
        for tp in revoked:
            unconfirmed.pop(tp, None)

    def _running(self, stop: threading.Event) -> bool:
        return not stop.is_set() and not self._closed

    def _consume(
        self, stream: _Stream[Message], handler: Callable[[Sequence[Message]], None], stop: threading.Event
    ) -> None:
        """Run a group consumer until `stop`; whatever fails, rebuild it and go on."""
        key = f"{stream.group}/{uuid.uuid4().hex}"
        backoff = Backoff(_RECONNECT_BACKOFF_SECONDS, _RECONNECT_BACKOFF_MAX_SECONDS)
        log.info("consuming %s as group %s", stream.topic, stream.group)
        try:
            while self._running(stop):
                consumer: KafkaConsumer | None = None
                try:
                    self._ensure_topics(time.monotonic() + self.config.request_timeout_ms / 1000)
                    consumer = self._new_consumer(stream, key)
                    self._poll_loop(consumer, stream, handler, stop, backoff, key)
                except Exception as exc:
                    delay = backoff.next_delay()
                    log.warning(
                        "consumer of %s (group %s) failed: %r; retrying in %.1fs",
                        stream.topic,
                        stream.group,
                        exc,
                        delay,
                    )
                    stop.wait(delay)
                finally:
                    self._set_assignment(key, ())
                    if consumer is not None:
                        self._close_consumer(consumer)
        finally:
            with self._assignments_lock:
                self._assignments.pop(key, None)
        log.info("stopped consuming %s", stream.topic)

    def _new_consumer(self, stream: _Stream[Message], key: str) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=list(self.config.bootstrap_servers),
            client_id=f"{self.config.client_id}-{stream.group}",
            group_id=stream.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.config.max_batch,
            fetch_min_bytes=self.config.fetch_min_bytes,
            fetch_max_wait_ms=self.config.fetch_max_wait_ms,
            # must exceed session_timeout_ms (10 s); kafka-python's default is 305 s
            request_timeout_ms=max(30_000, self.config.request_timeout_ms),
            api_version_auto_timeout_ms=_API_VERSION_PROBE_MS,
            reconnect_backoff_max_ms=_CLIENT_RECONNECT_BACKOFF_MAX_MS,
            metrics_enabled=self.config.client_metrics,
        )
        try:
            consumer.subscribe([stream.topic], listener=_AssignmentTracker(self, key))
        except Exception:
            self._close_consumer(consumer)
            raise
        return consumer

    @staticmethod
    def _close_consumer(consumer: KafkaConsumer) -> None:
        try:
            # Leaves the group, so the others take its partitions over at once.
            consumer.close(autocommit=False, timeout_ms=_CONSUMER_CLOSE_TIMEOUT_MS)
        except Exception:
            log.warning("closing a Kafka consumer failed", exc_info=True)

    def _poll_loop(
        self,
        consumer: KafkaConsumer,
        stream: _Stream[Message],
        handler: Callable[[Sequence[Message]], None],
        stop: threading.Event,
        backoff: Backoff,
        key: str,
    ) -> None:
        delivery: BatchDelivery[TopicPartition, Message] = BatchDelivery(
            handler,
            self.config.delivery,
            lambda polled, kind, error, attempts: self._dead_letter(stream, polled.raw, kind, error, attempts),
            stream.topic,
        )
        # Partitions held back after a handler failure, and when to retry them.
        paused_until: dict[TopicPartition, float] = {}
        # Offsets committed without waiting; the latest are committed for sure on the way out.
        unconfirmed: dict[TopicPartition, int] = {}
        self._unconfirmed[key] = unconfirmed
        try:
            self._poll_batches(consumer, stream, delivery, stop, backoff, paused_until, unconfirmed)
        finally:
            # Only what is still ours: a revoked partition's new owner has moved on.
            owned = consumer.assignment()
            latest = {tp: offset for tp, offset in unconfirmed.items() if tp in owned}
            self._unconfirmed.pop(key, None)
            if latest:
                self._commit(consumer, latest)

    def _poll_batches(
        self,
        consumer: KafkaConsumer,
        stream: _Stream[Message],
        delivery: BatchDelivery[TopicPartition, Message],
        stop: threading.Event,
        backoff: Backoff,
        paused_until: dict[TopicPartition, float],
        unconfirmed: dict[TopicPartition, int],
    ) -> None:
        while self._running(stop):
            self._resume_due(consumer, paused_until, delivery)
            records = consumer.poll(timeout_ms=_POLL_TIMEOUT_MS, max_records=self.config.max_batch)
            backoff.reset()
            if not records:
                continue
            polled = {tp: [self._decoded(stream, tp, record) for record in batch] for tp, batch in records.items()}
            outcomes = delivery.deliver(polled, lambda: self._running(stop))
            done = {tp: outcome.commit_up_to for tp, outcome in outcomes.items() if outcome.commit_up_to is not None}
            if done:
                self._commit(consumer, done, wait=False)
                unconfirmed.update(done)
            for tp, outcome in outcomes.items():
                if outcome.retry_from is None:
                    continue
                # Not committed: rewind to the failed record, hold the partition
                # back for a while, then get it (and what follows it) again, in order.
                consumer.seek(tp, outcome.retry_from)
                consumer.pause(tp)
                paused_until[tp] = time.monotonic() + outcome.retry_after_seconds

    @staticmethod
    def _resume_due(
        consumer: KafkaConsumer, paused_until: dict[TopicPartition, float], delivery: BatchDelivery[Any, Any]
    ) -> None:
        assigned = consumer.assignment()
        # Revoked meanwhile: its new owner starts at the committed offset, and counts afresh.
        delivery.retain(assigned)
        now = time.monotonic()
        for tp, due in list(paused_until.items()):
            if tp not in assigned:
                del paused_until[tp]
            elif due <= now:
                del paused_until[tp]
                consumer.resume(tp)

    @staticmethod
    def _decoded(stream: _Stream[Message], tp: TopicPartition, record: Any) -> Polled[TopicPartition, Message]:
        try:
            message = stream.decode(_decode_body(record.value))
        except _Malformed as exc:
            return Polled(tp, record.offset, None, str(exc), record)
        except Exception as exc:  # decoding: wrong schema_version, unknown outcome, missing fields...
            return Polled(tp, record.offset, None, f"{type(exc).__name__}: {exc}", record)
        return Polled(tp, record.offset, message, None, record)

    def _dead_letter(self, stream: _Stream[Message], record: Any, kind: str, error: str, attempts: int) -> bool:
        value: bytes | None = record.value
        key: bytes | None = record.key
        letter = {
            "schema_version": DLQ_SCHEMA_VERSION,
            "kind": kind,
            "error": error,
            "attempts": attempts,
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "source_timestamp_ms": record.timestamp,
            "source_key": None if key is None else key.decode("utf-8", errors="replace"),
            "consumer_group": stream.group,
            "payload": None if value is None else value.decode("utf-8", errors="replace"),
            "payload_base64": None if value is None else base64.b64encode(value).decode("ascii"),
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        try:
            self._send(stream.dlq_topic, key, _encode(letter))
        except DependencyUnavailable as exc:
            log.warning("could not dead-letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
            return False
        log.error(
            "dead-lettered %s[%d]@%d to %s: %s", record.topic, record.partition, record.offset, stream.dlq_topic, error
        )
        return True

    def _commit(self, consumer: KafkaConsumer, next_offsets: Mapping[TopicPartition, int], wait: bool = True) -> None:
        """Commit every partition of a batch in one request.

        Without `wait`, the commit goes out with the next poll and the batch
        loop does not stop for it: a commit that is lost only means the
        messages are delivered again, which every handler tolerates.
        """
        crash_point("before_offset_commit")
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in next_offsets.items()}
        try:
            if wait:
                consumer.commit(offsets, timeout_ms=self.config.request_timeout_ms)
            else:
                consumer.commit_async(offsets, callback=_log_failed_commit)
        except Exception as exc:
            # The work is done and durable; without the commit it is merely
            # delivered again later (after a restart or a rebalance), which
            # every handler tolerates. A later commit on the partition covers it.
            log.warning(
                "offset commit %s failed: %r", {f"{tp.topic}[{tp.partition}]": o for tp, o in next_offsets.items()}, exc
            )

    # -- health and shutdown --------------------------------------------------

    def ping(self) -> None:
        """A metadata round trip to a broker, bounded by ping_timeout_ms."""
        timeout_ms = self.config.ping_timeout_ms
        started = time.monotonic()
        if not self._ping_lock.acquire(timeout=timeout_ms / 1000):
            raise DependencyUnavailable(BACKEND, f"no answer within {timeout_ms} ms (a ping is already waiting)")
        try:
            client = self._get_ping_client(started + timeout_ms / 1000)
            future = client.cluster.request_update()
            remaining_ms = max(0, int(timeout_ms - (time.monotonic() - started) * 1000))
            client.poll(timeout_ms=remaining_ms, future=future)
            if not future.is_done:
                raise DependencyUnavailable(BACKEND, f"no metadata answer within {timeout_ms} ms")
            if future.failed():
                raise DependencyUnavailable(BACKEND, f"metadata request failed: {future.exception!r}")
        except DependencyUnavailable:
            raise
        except Exception as exc:
            raise DependencyUnavailable(BACKEND, f"ping failed: {exc!r}") from exc
        finally:
            self._ping_lock.release()

    def _get_ping_client(self, deadline: float) -> KafkaClient:
        with self._lock:
            if self._closed:
                raise DependencyUnavailable(BACKEND, "the bus is closed")
            if self._ping_client is not None and self._ping_pid == os.getpid():
                return self._ping_client
            self._ping_client = KafkaClient(
                bootstrap_servers=list(self.config.bootstrap_servers),
                client_id=f"{self.config.client_id}-ping",
                request_timeout_ms=self.config.ping_timeout_ms,
                api_version_auto_timeout_ms=self._probe_ms(deadline),
                reconnect_backoff_max_ms=_CLIENT_RECONNECT_BACKOFF_MAX_MS,
            )
            self._ping_pid = os.getpid()
            return self._ping_client

    def close(self) -> None:
        """Flush and release the clients; consumers stop at their next poll. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            producer, self._producer = self._producer, None
            ping_client, self._ping_client = self._ping_client, None
            same_process = self._producer_pid == os.getpid()
            ping_same_process = self._ping_pid == os.getpid()
        if producer is not None and same_process:
            try:
                producer.close(timeout=_PRODUCER_CLOSE_TIMEOUT_SECONDS)
            except Exception:
                log.warning("closing the Kafka producer failed", exc_info=True)
        if ping_client is not None and ping_same_process:
            try:
                ping_client.close()
            except Exception:
                log.warning("closing the Kafka ping client failed", exc_info=True)


class KafkaServiceBus(_KafkaEndpoint, ServiceBus):
    """The service's side: publishes requests, consumes results (group `group=`)."""

    @classmethod
    def from_url(cls, url: str) -> KafkaServiceBus:
        return cls(KafkaBusConfig.from_url(url))

    def publish_request(self, request: AnyEngineRequest) -> None:
        self._send(self.topics.requests, str(request.user_id).encode("utf-8"), _encode(encode_request(request)))

    def publish_events(self, events: Sequence[StatusEvent]) -> None:
        records = [(str(e.request_id).encode(), _encode(e.to_message())) for e in events]
        if records:
            self._send_all(self.topics.events, records)

    def consume_results(self, handler: ResultBatchHandler, stop: threading.Event) -> None:
        stream = _Stream(self.topics.results, self.topics.results_dlq, self.config.group, decode_result)
        self._consume(stream, handler, stop)

    def engine_side(self) -> KafkaEngineBus:
        """The engine's side of the same topics, with clients of its own."""
        return KafkaEngineBus(self.config)


class KafkaEngineBus(_KafkaEndpoint, EngineBus):
    """The engine's side: consumes requests (group `engine_group=`), publishes results."""

    @classmethod
    def from_url(cls, url: str) -> KafkaEngineBus:
        return cls(KafkaBusConfig.from_url(url))

    def consume_requests(self, handler: RequestBatchHandler, stop: threading.Event) -> None:
        stream = _Stream(self.topics.requests, self.topics.requests_dlq, self.config.engine_group, decode_request)
        self._consume(stream, handler, stop)

    def publish_results(self, results: Sequence[EngineResult]) -> None:
        if not results:
            return
        records = [(str(r.request_id).encode("utf-8"), _encode(encode_result(r))) for r in results]
        self._send_all(self.topics.results, records)
