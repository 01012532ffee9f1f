"""Reads consumer lag and dead-letter depth from the brokers, for the metrics.

Measured from the brokers' side (a group's committed offsets against the
partitions' end offsets), not by the consumers themselves: a consumer that
is stuck or gone cannot report its own lag, and that is when it matters.
Called by the worker's health job every few seconds, never on a request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from app.adapters.kafka_bus import KafkaBusConfig, KafkaTopics

log = logging.getLogger(__name__)

_TIMEOUT_MS = 5_000


@dataclass(frozen=True)
class BusBacklog:
    # (topic role, partition) -> records the group has not committed past.
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    # topic role -> records held in its dead-letter topic.
    dead_letters: dict[str, int] = field(default_factory=dict)


class KafkaMonitor:
    def __init__(self, config: KafkaBusConfig) -> None:
        self.config = config
        self.topics = KafkaTopics.with_prefix(config.topic_prefix)
        self._lock = threading.Lock()
        self._admin: KafkaAdminClient | None = None
        self._consumer: KafkaConsumer | None = None

    @classmethod
    def from_url(cls, url: str) -> KafkaMonitor:
        return cls(KafkaBusConfig.from_url(url))

    def _clients(self) -> tuple[KafkaAdminClient, KafkaConsumer]:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=list(self.config.bootstrap_servers),
                client_id=f"{self.config.client_id}-monitor",
                request_timeout_ms=_TIMEOUT_MS,
            )
        if self._consumer is None:
            # No group: it only asks for offsets, it never joins or commits.
            self._consumer = KafkaConsumer(
                bootstrap_servers=list(self.config.bootstrap_servers),
                client_id=f"{self.config.client_id}-monitor",
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=max(_TIMEOUT_MS, 11_000),
            )
        return self._admin, self._consumer

    def _partitions(self, consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]

    def sample(self) -> BusBacklog:
        """Lag of the settlement and engine groups, and the dead-letter topics' depth."""
        with self._lock:
            try:
                return self._sample()
            except Exception:
                self.close()  # rebuilt next time: a broker restart must not wedge the monitor
                raise

    def _sample(self) -> BusBacklog:
        admin, consumer = self._clients()
        backlog = BusBacklog()
        for role, topic, group in (
            ("results", self.topics.results, self.config.group),
            ("requests", self.topics.requests, self.config.engine_group),
        ):
            partitions = self._partitions(consumer, topic)
            if not partitions:
                continue
            ends = consumer.end_offsets(partitions)
            starts = consumer.beginning_offsets(partitions)
            committed = admin.list_consumer_group_offsets(group, partitions=partitions)
            for tp in partitions:
                meta = committed.get(tp)
                # Never committed: the group starts at the beginning (auto_offset_reset=earliest).
                position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                backlog.lag[(role, tp.partition)] = max(0, ends[tp] - position)
        for role, topic in (("requests", self.topics.requests_dlq), ("results", self.topics.results_dlq)):
            partitions = self._partitions(consumer, topic)
            if not partitions:
                backlog.dead_letters[role] = 0
                continue
            ends = consumer.end_offsets(partitions)
            starts = consumer.beginning_offsets(partitions)
            backlog.dead_letters[role] = sum(max(0, ends[tp] - starts[tp]) for tp in partitions)
        return backlog

    def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        for client in (admin, consumer):
            if client is None:
                continue
            try:
                client.close()
            except Exception:
                log.warning("closing a Kafka monitor client failed", exc_info=True)
