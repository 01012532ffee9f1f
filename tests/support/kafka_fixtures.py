"""Pytest plugin: the real Kafka bus for the tests that need one.

Set KAFKA_BOOTSTRAP_SERVERS (e.g. 127.0.0.1:9092, as `devservices/up kafka`
serves it) to run them; unset, they are skipped with a reason, or fail under
REQUIRE_REAL_BACKENDS=1. Every test gets topics and consumer groups of its
own (a unique `test-<uuid>-` prefix), so tests never see each other's
messages; its topics and groups are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from app.adapters.kafka_bus import KafkaBusConfig, KafkaEngineBus, KafkaServiceBus, KafkaTopics, _KafkaEndpoint
from app.ports.errors import DependencyUnavailable

ENV = "KAFKA_BOOTSTRAP_SERVERS"
NOT_CONFIGURED = "Kafka not configured (KAFKA_BOOTSTRAP_SERVERS unset): real-bus tests skipped"
# The broker may be restarting (devservices/restart): wait this long for it.
BROKER_WAIT_SECONDS = 120.0
_FIXTURES = frozenset({"kafka_bootstrap", "kafka_buses"})


def _require_real_backends() -> bool:
    return os.environ.get("REQUIRE_REAL_BACKENDS") == "1"


def _uses_kafka(item: pytest.Item) -> bool:
    if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "kafka" in callspec.params.values()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _uses_kafka(item):
            item.add_marker(pytest.mark.real_backends)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The broker list, once a broker there answers."""
    servers = os.environ.get(ENV, "").strip()
    if not servers:
        if _require_real_backends():
            pytest.fail(NOT_CONFIGURED.replace("skipped", "required (REQUIRE_REAL_BACKENDS=1)"))
        pytest.skip(NOT_CONFIGURED)
    probe = KafkaServiceBus(KafkaBusConfig(bootstrap_servers=tuple(servers.split(",")), create_topics=False))
    deadline = time.monotonic() + BROKER_WAIT_SECONDS
    try:
        while True:
            try:
                probe.ping()
                return servers
            except DependencyUnavailable as exc:
                if time.monotonic() > deadline:
                    pytest.fail(f"{ENV}={servers} but no broker answered within {BROKER_WAIT_SECONDS:.0f}s: {exc}")
                time.sleep(1)
    finally:
        probe.close()


@dataclass
class KafkaTestBuses:
    """Buses sharing one test's topics and groups: a second one is a restart, or another member.

    It is the Kafka implementation of tests/support/bus_kits.BusKit, for the shared contract suite.
    """

    servers: str
    prefix: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:12]}-")
    _made: list[_KafkaEndpoint] = field(default_factory=list)

    @property
    def group(self) -> str:
        return f"{self.prefix}settlement"

    @property
    def engine_group(self) -> str:
        return f"{self.prefix}engine"

    @property
    def topics(self) -> KafkaTopics:
        return KafkaTopics.with_prefix(self.prefix)

    def url(self, **params: object) -> str:
        query = {"topic_prefix": self.prefix, "group": self.group, "engine_group": self.engine_group, **params}
        return f"kafka://{self.servers}?" + "&".join(f"{k}={v}" for k, v in query.items())

    def service(self, **params: object) -> KafkaServiceBus:
        bus = KafkaServiceBus.from_url(self.url(**params))
        self._made.append(bus)
        return bus

    def engine(self, **params: object) -> KafkaEngineBus:
        bus = KafkaEngineBus.from_url(self.url(**params))
        self._made.append(bus)
        return bus

    def dead_letters(self, side: str, count: int, deadline_seconds: float = 30.0) -> list[dict[str, object]]:
        """The first `count` dead letters of the requests or results topic (fewer if none come in time)."""
        topic = self.topics.requests_dlq if side == "requests" else self.topics.results_dlq
        return self.read_all(topic, count, deadline_seconds)

    # Raw access, around the adapter, for what a test must do or see directly.

    def send_raw(self, topic: str, key: bytes | None, values: list[bytes]) -> None:
        producer = KafkaProducer(bootstrap_servers=self.servers.split(","), acks="all")
        try:
            for value in values:
                producer.send(topic, key=key, value=value).get(timeout=30)
        finally:
            producer.close(timeout=10)

    def read_all(self, topic: str, count: int, deadline_seconds: float = 30.0) -> list[dict[str, object]]:
        """The first `count` records of `topic` (JSON-decoded), across its partitions."""
        consumer = KafkaConsumer(bootstrap_servers=self.servers.split(","), enable_auto_commit=False)
        found: list[dict[str, object]] = []
        deadline = time.monotonic() + deadline_seconds
        try:
            partitions = None
            while not partitions and time.monotonic() < deadline:
                partitions = consumer.partitions_for_topic(topic)
            assert partitions, f"topic {topic} has no partitions"
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while len(found) < count and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    found.extend(json.loads(r.value) for r in records)
        finally:
            consumer.close(autocommit=False)
        return found

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets on `topic`, by partition."""
        admin = KafkaAdminClient(bootstrap_servers=self.servers.split(","))
        try:
            offsets = admin.list_consumer_group_offsets(group)
        finally:
            admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}

    def partition_count(self, topic: str) -> int:
        admin = KafkaAdminClient(bootstrap_servers=self.servers.split(","))
        try:
            (described,) = admin.describe_topics([topic])
        finally:
            admin.close()
        return len(described["partitions"])

    def cleanup(self) -> None:
        for bus in self._made:
            bus.close()
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.servers.split(","), request_timeout_ms=10_000)
        except Exception:
            return
        try:
            existing = set(admin.list_topics())
            mine = [t for t in self.topics.all() if t in existing]
            if mine:
                admin.delete_topics(mine, timeout_ms=10_000)
            admin.delete_consumer_groups([self.group, self.engine_group])  # answers per-group errors, never raises
        except Exception:
            pass  # best effort: leftovers only cost the dev broker a little disk
        finally:
            admin.close()


@pytest.fixture
def kafka_buses(kafka_bootstrap: str) -> Iterator[KafkaTestBuses]:
    buses = KafkaTestBuses(kafka_bootstrap)
    yield buses
    buses.cleanup()
