"""What the Kafka bus promises beyond the shared bus contract (test_bus_contract.py).

The tests needing a broker use the `kafka_buses` fixture
(tests/support/kafka_fixtures.py): skipped without KAFKA_BOOTSTRAP_SERVERS.
The ones about an unreachable broker need none and always run.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import kafka
import pytest
from kafka.errors import RequestTimedOutError

from app.adapters.bus_messages import encode_result
from app.adapters.kafka_bus import KafkaBusConfig, KafkaEngineBus, KafkaServiceBus, _fix_failed_produce
from app.ports.bus import AnyEngineRequest, EngineRequest, EngineResult, PoisonMessage
from app.ports.errors import DependencyUnavailable
from tests.conftest import random_request_id, random_user_id
from tests.contract.test_bus_contract import DEADLINE_SECONDS, Recorder, a_request, a_result, consuming, wait_for
from tests.support.kafka_fixtures import KafkaTestBuses

UNREACHABLE = "127.0.0.1:1"


# -- configuration and an unreachable broker: no broker needed ------------------


def test_the_url_configures_servers_topics_groups_and_timeouts() -> None:
    config = KafkaBusConfig.from_url(
        "kafka://h1:9092,h2:9093?topic_prefix=dev-&group=g1&engine_group=e1&request_timeout_ms=5000"
        "&partitions=12&replication_factor=3&create_topics=false"
        "&linger_ms=2&max_batch=100&max_attempts=7&retry_backoff_ms=200"
    )
    assert config.bootstrap_servers == ("h1:9092", "h2:9093")
    assert config.topics.requests == "dev-internal_transfer.requests"
    assert config.topics.results == "dev-internal_transfer.results"
    assert config.topics.results_dlq == "dev-internal_transfer.results.dlq"
    assert (config.group, config.engine_group) == ("g1", "e1")
    assert (config.request_timeout_ms, config.partitions, config.replication_factor) == (5000, 12, 3)
    assert config.create_topics is False
    assert (config.linger_ms, config.max_batch, config.max_attempts) == (2, 100, 7)
    assert (config.delivery.max_batch, config.delivery.max_attempts, config.delivery.backoff_seconds) == (100, 7, 0.2)


def test_the_url_defaults() -> None:
    config = KafkaBusConfig.from_url("kafka://127.0.0.1:9092")
    assert config.topics.requests == "internal_transfer.requests"
    assert (config.group, config.engine_group) == ("internal-transfer-settlement", "reference-engine")
    assert (config.request_timeout_ms, config.partitions, config.replication_factor) == (10_000, 6, 1)
    assert (config.linger_ms, config.max_batch, config.max_attempts, config.retry_backoff_ms) == (5, 500, 5, 500)


@pytest.mark.parametrize(
    "url",
    [
        "kafka://",
        "kafka://h:9092?groop=x",
        "kafka://h:9092?partitions=0",
        "kafka://h:9092?max_attempts=0",
        "kafka://h:9092?max_batch=0",
        "kafka://h:9092?linger_ms=-1",
        "kafka://h:9092?linger_ms=1000",
    ],
)
def test_a_bad_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        KafkaBusConfig.from_url(url)


@pytest.mark.parametrize("create_topics", ["true", "false"])
def test_publishing_to_an_unreachable_broker_fails_within_the_timeout(create_topics: str) -> None:
    url = f"kafka://{UNREACHABLE}?request_timeout_ms=3000&create_topics={create_topics}"
    bus, engine = KafkaServiceBus.from_url(url), KafkaEngineBus.from_url(url)
    try:
        publishers: tuple[Callable[[], None], ...] = (
            lambda: bus.publish_request(a_request()),
            lambda: engine.publish_results([a_result() for _ in range(50)]),
        )
        for publish in publishers:
            started = time.monotonic()
            with pytest.raises(DependencyUnavailable) as raised:
                publish()
            assert time.monotonic() - started < 3.0 + 1.0
            assert raised.value.backend == "bus"
    finally:
        bus.close()
        engine.close()


def test_ping_of_an_unreachable_broker_fails_within_its_timeout() -> None:
    bus = KafkaServiceBus.from_url(f"kafka://{UNREACHABLE}?ping_timeout_ms=1000")
    try:
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable):
            bus.ping()
        assert time.monotonic() - started < 1.0 + 1.0
    finally:
        bus.close()


def test_a_consumer_keeps_retrying_while_the_broker_is_away(caplog: pytest.LogCaptureFixture) -> None:
    bus = KafkaServiceBus.from_url(f"kafka://{UNREACHABLE}?request_timeout_ms=2000")

    def retries() -> int:
        return sum("retrying in" in r.getMessage() for r in caplog.records if r.name == "app.adapters.kafka_bus")

    stop = threading.Event()
    thread = threading.Thread(target=bus.consume_results, args=(lambda _: None, stop), daemon=True)
    with caplog.at_level(logging.WARNING, logger="app.adapters.kafka_bus"):
        thread.start()
        try:
            assert wait_for(lambda: retries() >= 2)
            assert thread.is_alive()
        finally:
            stop.set()
            thread.join(DEADLINE_SECONDS)
    assert not thread.is_alive()
    bus.close()


@pytest.mark.skipif(not kafka.__version__.startswith("2."), reason="the bug worked around is kafka-python 2.x's")
def test_a_produce_request_failing_in_the_client_completes_its_batch() -> None:
    # kafka-python 2.x passed an exception instance where a class is called,
    # so the batch never completed and its partition stayed muted for good.
    completed: list[tuple[object, object]] = []

    class Sender:
        def _complete_batch(self, batch: object, response: object) -> None:
            completed.append((batch, response))

        def _failed_produce(self, batches: list[object], node_id: int, error: Exception) -> None:
            raise AssertionError("the original, buggy one ran")

    class Producer:
        _sender = Sender()

    producer = Producer()
    _fix_failed_produce(producer)
    producer._sender._failed_produce(["batch"], 1, RequestTimedOutError("Request timed out after 10000.0 ms"))
    ((batch, response),) = completed
    exception = response.error(response.error_message)  # type: ignore[attr-defined] # as Sender._fail_batch does
    assert batch == "batch"
    assert isinstance(exception, RequestTimedOutError)
    assert "10000.0 ms" in str(exception)


# -- against a real broker -------------------------------------------------------


def encoded(message: dict[str, object]) -> bytes:
    return json.dumps(message).encode()


def test_topics_are_created_with_the_configured_partitions(kafka_buses: KafkaTestBuses) -> None:
    bus = kafka_buses.engine(partitions=3)
    bus.publish_results([a_result()])
    for topic in kafka_buses.topics.all():
        assert kafka_buses.partition_count(topic) == 3


def test_malformed_results_are_dead_lettered_and_the_next_one_is_handled(kafka_buses: KafkaTestBuses) -> None:
    bus = kafka_buses.service()
    good = a_result()
    bad = [
        b"{not json",
        encoded(dict(encode_result(good), schema_version=99)),
        encoded(dict(encode_result(good), outcome="maybe")),
        # A JSON number: an engine going through doubles could name a sibling transfer.
        encoded(dict(encode_result(good), request_id=good.request_id)),
    ]
    handled: list[EngineResult] = []
    with consuming(bus.consume_results, handled.extend):
        assert wait_for(lambda: len(bus.assigned_partitions(bus.topics.results)) == 6)
        # One key, so one partition: the good message comes strictly after the bad ones.
        kafka_buses.send_raw(bus.topics.results, b"same-key", [*bad, encoded(encode_result(good))])
        assert wait_for(lambda: good in handled)
        letters = kafka_buses.read_all(bus.topics.results_dlq, count=4)
        assert len(letters) == 4
        (partition,) = {letter["source_partition"] for letter in letters}
        # All four are committed: a bad message never blocks its partition.
        assert wait_for(lambda: kafka_buses.committed(kafka_buses.group, bus.topics.results) == {partition: 5})
    assert handled == [good]
    assert [letter["source_offset"] for letter in letters] == [0, 1, 2, 3]
    assert [letter["payload"] for letter in letters] == [b.decode() for b in bad]
    assert [base64.b64decode(str(letter["payload_base64"])) for letter in letters] == bad
    assert "invalid JSON" in str(letters[0]["error"])
    assert "unsupported schema_version 99" in str(letters[1]["error"])
    assert "unknown outcome 'maybe'" in str(letters[2]["error"])
    assert "request_id must be a decimal string" in str(letters[3]["error"])
    for letter in letters:
        assert letter["kind"] == "malformed"
        assert letter["attempts"] == 0  # never handed to the handler
        assert letter["source_topic"] == bus.topics.results
        assert letter["source_key"] == "same-key"
        assert letter["consumer_group"] == kafka_buses.group


def test_a_poison_message_is_dead_lettered_with_its_error(kafka_buses: KafkaTestBuses) -> None:
    bus, engine = kafka_buses.service(), kafka_buses.engine()
    poison, healthy = a_result(), a_result()
    handled: list[EngineResult] = []

    def handler(batch: Sequence[EngineResult]) -> None:
        if any(message.request_id == poison.request_id for message in batch):
            raise PoisonMessage("no such transfer")
        handled.extend(batch)

    with consuming(bus.consume_results, handler):
        engine.publish_results([poison, healthy])
        assert wait_for(lambda: healthy in handled)
        (letter,) = kafka_buses.read_all(bus.topics.results_dlq, count=1)
    assert letter["kind"] == "poison"
    assert "no such transfer" in str(letter["error"])
    assert json.loads(str(letter["payload"])) == encode_result(poison)
    assert letter["source_key"] == str(poison.request_id)


def test_one_users_requests_arrive_in_the_order_sent(kafka_buses: KafkaTestBuses) -> None:
    service, engine = kafka_buses.service(), kafka_buses.engine()
    user = random_user_id()
    mine = [EngineRequest(random_request_id(), user, "USDT", "funding", "spot", amount) for amount in range(1, 31)]
    others = [a_request() for _ in range(30)]
    received: list[AnyEngineRequest] = []
    with consuming(engine.consume_requests, received.extend):
        for own, other in zip(mine, others, strict=True):
            service.publish_request(own)
            service.publish_request(other)
        assert wait_for(lambda: sum(r.user_id == user for r in received) >= len(mine))
    assert [r for r in received if r.user_id == user] == mine


def test_consumers_in_one_group_share_the_partitions(kafka_buses: KafkaTestBuses) -> None:
    first, second, service = kafka_buses.engine(), kafka_buses.engine(), kafka_buses.service()
    topic = first.topics.requests
    got_first: list[AnyEngineRequest] = []
    got_second: list[AnyEngineRequest] = []
    with consuming(first.consume_requests, got_first.extend), consuming(second.consume_requests, got_second.extend):

        def balanced() -> bool:
            mine, theirs = first.assigned_partitions(topic), second.assigned_partitions(topic)
            return bool(mine) and bool(theirs) and not mine & theirs and len(mine | theirs) == 6

        assert wait_for(balanced)
        sent = [a_request() for _ in range(60)]
        for request in sent:
            service.publish_request(request)
        assert wait_for(lambda: len(got_first) + len(got_second) >= len(sent))
        assert balanced()  # no rebalance meanwhile, so no redelivery either
    assert got_first and got_second
    ids_first, ids_second = [r.request_id for r in got_first], [r.request_id for r in got_second]
    assert len(set(ids_first)) == len(ids_first) and len(set(ids_second)) == len(ids_second)
    assert not set(ids_first) & set(ids_second)
    assert set(ids_first) | set(ids_second) == {r.request_id for r in sent}


def test_a_failed_message_stays_uncommitted_and_a_restarted_consumer_gets_it(kafka_buses: KafkaTestBuses) -> None:
    bus = kafka_buses.service(max_attempts=100)
    result = a_result()
    attempts: list[float] = []

    def failing(batch: Sequence[EngineResult]) -> None:
        attempts.append(time.monotonic())
        raise RuntimeError("store down")

    kafka_buses.engine().publish_results([result])
    with consuming(bus.consume_results, failing):
        assert wait_for(lambda: len(attempts) >= 3)  # redelivered, again and again
        assert kafka_buses.committed(kafka_buses.group, bus.topics.results) == {}
    # ...with a backoff between attempts, not spinning hot
    assert all(later - earlier >= 0.4 for earlier, later in itertools.pairwise(attempts))
    bus.close()

    restarted = kafka_buses.service()
    handled = threading.Event()
    received: list[EngineResult] = []

    def working(batch: Sequence[EngineResult]) -> None:
        received.extend(batch)
        handled.set()

    with consuming(restarted.consume_results, working):
        assert handled.wait(DEADLINE_SECONDS)
        assert wait_for(lambda: sum(kafka_buses.committed(kafka_buses.group, restarted.topics.results).values()) == 1)
    assert received == [result]


def test_a_batch_commits_every_partition_it_came_from(kafka_buses: KafkaTestBuses) -> None:
    bus, engine = kafka_buses.service(), kafka_buses.engine()
    sent = [a_result() for _ in range(60)]  # keyed by request id: spread over the 6 partitions
    engine.publish_results(sent)
    received = Recorder()
    with consuming(bus.consume_results, received):
        assert wait_for(lambda: {r.request_id for r in sent} <= received.handled_ids())
        committed: dict[int, int] = {}

        def all_committed() -> bool:
            committed.update(kafka_buses.committed(kafka_buses.group, bus.topics.results))
            return sum(committed.values()) == len(sent)

        assert wait_for(all_committed)
    assert len(committed) > 1
    assert any(len(call) > 1 for call in received.calls)


def test_publish_results_sends_them_all_before_waiting(kafka_buses: KafkaTestBuses) -> None:
    engine = kafka_buses.engine(partitions=1, client_metrics="true")
    engine.publish_results([a_result() for _ in range(200)])
    producer = engine._producer
    assert producer is not None
    assert producer.config["linger_ms"] == 5 and producer.config["acks"] == -1
    assert producer.config["enable_idempotence"]
    # Waiting on each record before sending the next would make one record per request.
    assert producer.metrics()["producer-metrics"]["records-per-request-avg"] > 10


def test_concurrent_publishes_share_produce_requests(kafka_buses: KafkaTestBuses) -> None:
    bus = kafka_buses.service(partitions=1, client_metrics="true")
    bus.publish_request(a_request())  # topics and the producer made: what follows measures sharing only
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda _: bus.publish_request(a_request()), range(160)))
    elapsed = time.monotonic() - started
    producer = bus._producer
    assert producer is not None
    assert producer.metrics()["producer-metrics"]["records-per-request-avg"] > 2
    assert elapsed < 10.0


def test_a_failed_publish_replaces_the_producer(kafka_buses: KafkaTestBuses) -> None:
    # kafka-python 2.x's idempotent producer can stay wedged after records
    # expired unsent (a broker restart): the next publish must not reuse it.
    bus = kafka_buses.service(partitions=1)
    bus.publish_request(a_request())
    wedged = bus._producer
    assert wedged is not None

    def expire(*_: object, **__: object) -> object:
        raise kafka.errors.KafkaTimeoutError("Expiring 1 record(s)")

    wedged.send = expire
    with pytest.raises(DependencyUnavailable):
        bus.publish_request(a_request())
    bus.publish_request(a_request())
    assert bus._producer is not None and bus._producer is not wedged
