"""The direct floor: the least backend work a transfer needs, from Python, no HTTP.

Per transfer, in waves of `concurrency` transfers, each step batched:
Cassandra record insert, TigerBeetle pending transfer, Kafka publish of the
request, an engine stand-in (a thread) that consumes it and publishes a
result, consuming that result, TigerBeetle post of the pending transfer,
Cassandra final status write. Raw clients only (cassandra-driver,
tigerbeetle, kafka-python) and its own keyspace, table and topics, so it does
not depend on the service's code. Plain writes (no lightweight transactions):
it is the floor of the work, not of the service's guarantees.

Without a TigerBeetle server (embedded ledger) the ledger steps are left out.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tigerbeetle as tb
from cassandra.cluster import Cluster, Session
from cassandra.query import ConsistencyLevel
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

LEDGER = 3
CODE = 1
SYSTEM_ACCOUNT = 1
UNITS = 10**8  # one USDT in its smallest unit
_WAIT_SECONDS = 30.0
# A --development TigerBeetle takes smaller batches than a production one; waves above this
# size are split the same way.
_LEDGER_BATCH = 100


@dataclass(frozen=True)
class FloorConfig:
    cassandra_hosts: list[str]
    cassandra_port: int
    kafka_servers: list[str]
    tigerbeetle_address: str | None
    keyspace: str
    topic_prefix: str
    users: int = 200
    partitions: int = 6

    @property
    def requests_topic(self) -> str:
        return f"{self.topic_prefix}floor.requests"

    @property
    def results_topic(self) -> str:
        return f"{self.topic_prefix}floor.results"


@dataclass
class FloorResult:
    concurrency: int
    transfers: int
    elapsed: float
    ledger: bool
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.transfers / self.elapsed if self.elapsed > 0 else 0.0


def funding(user: int) -> int:
    return user * 10 + 1


def spot(user: int) -> int:
    return user * 10 + 2


class _Engine(threading.Thread):
    """Stands in for the balance engine: every request read is answered on the results topic."""

    def __init__(self, config: FloorConfig) -> None:
        super().__init__(name="floor-engine", daemon=True)
        self.config = config
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            consumer = _consumer_at_end(self.config, self.config.requests_topic)
            producer = _producer(self.config)
        except BaseException as exc:
            self.failure = exc
            self.ready.set()
            raise
        self.ready.set()
        try:
            while not self.stop.is_set():
                batches = consumer.poll(timeout_ms=100, max_records=1000)
                sent = False
                for records in batches.values():
                    for record in records:
                        request = json.loads(record.value)
                        answer = {"request_id": request["request_id"], "outcome": "confirmed"}
                        producer.send(self.config.results_topic, key=record.key, value=json.dumps(answer).encode())
                        sent = True
                if sent:
                    producer.flush(timeout=_WAIT_SECONDS)
        finally:
            consumer.close(autocommit=False)
            producer.close(timeout=5)


def _producer(config: FloorConfig) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=config.kafka_servers, acks="all", enable_idempotence=True, linger_ms=0)


def _consumer_at_end(config: FloorConfig, topic: str) -> KafkaConsumer:
    """A consumer of every partition of a topic just created, positioned at its end."""
    consumer = KafkaConsumer(bootstrap_servers=config.kafka_servers, enable_auto_commit=False, fetch_max_wait_ms=50)
    deadline = time.monotonic() + _WAIT_SECONDS
    while len(consumer.partitions_for_topic(topic) or ()) < config.partitions:
        if time.monotonic() > deadline:
            consumer.close()
            raise TimeoutError(f"floor: topic {topic} has no leaders after {_WAIT_SECONDS:.0f}s")
        time.sleep(0.2)
    partitions = [TopicPartition(topic, p) for p in range(config.partitions)]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for partition in partitions:
        # Resolve now, so nothing sent later is skipped; bounded, a new topic's leader may still move.
        consumer.position(partition, timeout_ms=int(_WAIT_SECONDS * 1000))
    return consumer


class Floor:
    def __init__(self, config: FloorConfig) -> None:
        self.config = config
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._ledger: tb.ClientSync | None = None
        self._producer: KafkaProducer | None = None
        self._results: KafkaConsumer | None = None
        self._engine: _Engine | None = None
        self._next_id = 1

    # -- setup ------------------------------------------------------------

    def setup(self) -> None:
        config = self.config
        self._cluster = Cluster(config.cassandra_hosts, port=config.cassandra_port)
        session = self._session = self._cluster.connect()
        session.default_consistency_level = ConsistencyLevel.LOCAL_QUORUM
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {config.keyspace} "
            "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            timeout=60,
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {config.keyspace}.transfers (request_id bigint PRIMARY KEY, "
            "user_id bigint, asset text, amount varint, status text, created_at_us bigint, updated_at_us bigint)",
            timeout=60,
        )
        self._insert = session.prepare(
            f"INSERT INTO {config.keyspace}.transfers (request_id, user_id, asset, amount, status, created_at_us, "
            "updated_at_us) VALUES (?, ?, 'USDT', ?, 'requesting', ?, ?)"
        )
        self._finish = session.prepare(
            f"UPDATE {config.keyspace}.transfers SET status = 'success', updated_at_us = ? WHERE request_id = ?"
        )
        admin = KafkaAdminClient(bootstrap_servers=config.kafka_servers)
        try:
            admin.create_topics(
                [
                    NewTopic(topic, num_partitions=config.partitions, replication_factor=1)
                    for topic in (config.requests_topic, config.results_topic)
                ]
            )
        finally:
            admin.close()
        self._producer = _producer(config)
        self._results = _consumer_at_end(config, config.results_topic)
        self._engine = _Engine(config)
        self._engine.start()
        self._engine.ready.wait(_WAIT_SECONDS)
        if self._engine.failure is not None:
            raise RuntimeError(f"floor engine did not start: {self._engine.failure!r}")
        if config.tigerbeetle_address:
            self._ledger = tb.ClientSync(cluster_id=0, replica_addresses=config.tigerbeetle_address)
            self._open_accounts()

    def _open_accounts(self) -> None:
        assert self._ledger is not None
        users = range(1, self.config.users + 1)
        accounts = [tb.Account(id=SYSTEM_ACCOUNT, ledger=LEDGER, code=CODE)]
        for user in users:
            for account in (funding(user), spot(user)):
                accounts.append(
                    tb.Account(
                        id=account, ledger=LEDGER, code=CODE, flags=tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
                    )
                )
        for start in range(0, len(accounts), _LEDGER_BATCH):
            _check(self._ledger.create_accounts(accounts[start : start + _LEDGER_BATCH]), "create accounts")
        deposits = [
            tb.Transfer(
                id=tb.id(),
                debit_account_id=SYSTEM_ACCOUNT,
                credit_account_id=funding(user),
                amount=10**6 * UNITS,
                ledger=LEDGER,
                code=CODE,
            )
            for user in users
        ]
        for start in range(0, len(deposits), _LEDGER_BATCH):
            _check(self._ledger.create_transfers(deposits[start : start + _LEDGER_BATCH]), "deposits")

    # -- the measured work ------------------------------------------------

    def run(self, transfers: int, concurrency: int) -> FloorResult:
        steps = dict.fromkeys(("cassandra insert", "ledger pending", "publish", "engine+consume", "ledger post"), 0.0)
        steps["cassandra final"] = 0.0
        begun = time.perf_counter()
        done = 0
        while done < transfers:
            wave = min(concurrency, transfers - done)
            self._wave(wave, steps)
            done += wave
        return FloorResult(
            concurrency, transfers, time.perf_counter() - begun, self._ledger is not None, step_seconds=steps
        )

    def _wave(self, size: int, steps: dict[str, float]) -> None:
        assert self._session is not None and self._producer is not None and self._results is not None
        ids = list(range(self._next_id, self._next_id + size))
        self._next_id += size
        users = {request_id: request_id % self.config.users + 1 for request_id in ids}
        pending = {request_id: tb.id() for request_id in ids} if self._ledger is not None else {}

        mark = time.perf_counter()
        now = int(time.time() * 1_000_000)
        _wait_all([self._session.execute_async(self._insert, (i, users[i], UNITS, now, now)) for i in ids])
        mark = _lap(steps, "cassandra insert", mark)

        if self._ledger is not None:
            locks = [
                tb.Transfer(
                    id=pending[i],
                    debit_account_id=funding(users[i]),
                    credit_account_id=spot(users[i]),
                    amount=UNITS,
                    ledger=LEDGER,
                    code=CODE,
                    flags=tb.TransferFlags.PENDING,
                )
                for i in ids
            ]
            _create_transfers(self._ledger, locks, "pending transfers")
        mark = _lap(steps, "ledger pending", mark)

        for i in ids:
            message = {"request_id": i, "user_id": users[i], "asset": "USDT", "amount_units": UNITS}
            self._producer.send(
                self.config.requests_topic, key=str(users[i]).encode(), value=json.dumps(message).encode()
            )
        self._producer.flush(timeout=_WAIT_SECONDS)
        mark = _lap(steps, "publish", mark)

        waiting = set(ids)
        deadline = time.monotonic() + _WAIT_SECONDS
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"floor: {len(waiting)} results never came back")
            for records in self._results.poll(timeout_ms=100).values():
                for record in records:
                    waiting.discard(json.loads(record.value)["request_id"])
        mark = _lap(steps, "engine+consume", mark)

        if self._ledger is not None:
            posts = [
                tb.Transfer(
                    id=tb.id(),
                    pending_id=pending[i],
                    amount=tb.AMOUNT_MAX,
                    flags=tb.TransferFlags.POST_PENDING_TRANSFER,
                )
                for i in ids
            ]
            _create_transfers(self._ledger, posts, "posts")
        mark = _lap(steps, "ledger post", mark)

        now = int(time.time() * 1_000_000)
        _wait_all([self._session.execute_async(self._finish, (now, i)) for i in ids])
        _lap(steps, "cassandra final", mark)

    # -- teardown ---------------------------------------------------------

    def close(self, drop: bool = True) -> None:
        if self._engine is not None:
            self._engine.stop.set()
            self._engine.join(10)
        closers: list[Callable[[], object]] = []
        results, producer, ledger = self._results, self._producer, self._ledger
        if results:
            closers.append(lambda: results.close(autocommit=False))
        if producer:
            closers.append(lambda: producer.close(timeout=5))
        if ledger:
            closers.append(ledger.close)
        for closer in closers:
            with contextlib.suppress(Exception):
                closer()
        if drop:
            with contextlib.suppress(Exception):
                admin = KafkaAdminClient(bootstrap_servers=self.config.kafka_servers)
                try:
                    admin.delete_topics([self.config.requests_topic, self.config.results_topic], timeout_ms=10_000)
                finally:
                    admin.close()
            if self._session is not None:
                with contextlib.suppress(Exception):
                    self._session.execute(f"DROP KEYSPACE IF EXISTS {self.config.keyspace}", timeout=60)
        if self._cluster is not None:
            self._cluster.shutdown()


def _lap(steps: dict[str, float], name: str, mark: float) -> float:
    now = time.perf_counter()
    steps[name] += now - mark
    return now


def _wait_all(futures: list[Any]) -> None:
    for future in futures:
        future.result()


def _create_transfers(ledger: tb.ClientSync, transfers: list[tb.Transfer], what: str) -> None:
    for start in range(0, len(transfers), _LEDGER_BATCH):
        _check(ledger.create_transfers(transfers[start : start + _LEDGER_BATCH]), what)


def _check(results: list[Any], what: str) -> None:
    created = (tb.CreateTransferStatus.CREATED, tb.CreateAccountStatus.CREATED)
    failed = [result for result in results if result.status not in created]
    if failed:
        raise RuntimeError(f"floor: {what}: {len(failed)} not created, first {failed[0]!r}")
