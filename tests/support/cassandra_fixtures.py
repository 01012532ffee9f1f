"""Pytest fixtures for the real Cassandra store (a plugin module)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest

from app.adapters.cassandra_store import CassandraTransferStore


def random_keyspace(prefix: str = "it_test") -> str:
    # Tests share one Cassandra: each session works in a keyspace of its own.
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def cassandra_hosts() -> str | None:
    return os.environ.get("CASSANDRA_HOSTS") or None


def skip_or_fail(reason: str) -> None:
    if os.environ.get("REQUIRE_REAL_BACKENDS") == "1":
        pytest.fail(f"{reason}, but REQUIRE_REAL_BACKENDS=1")
    pytest.skip(reason)


def store_url(keyspace: str) -> str:
    hosts = cassandra_hosts()
    port = os.environ.get("CASSANDRA_PORT")
    if port and hosts and ":" not in hosts:
        hosts = ",".join(f"{host}:{port}" for host in hosts.split(","))
    return f"cassandra://{hosts}/{keyspace}?consistency=LOCAL_QUORUM"


@contextmanager
def store_in_fresh_keyspace(
    prefix: str = "it_test", clock: Callable[[], datetime] | None = None
) -> Iterator[CassandraTransferStore]:
    """A store on a keyspace of its own (made with `clock`, if given), dropped afterwards."""
    if cassandra_hosts() is None:
        skip_or_fail("Cassandra not configured (CASSANDRA_HOSTS unset): real-store tests skipped")
    store = CassandraTransferStore.from_url(store_url(random_keyspace(prefix)))
    if clock is not None:
        store.clock = clock
    store.create_schema()
    try:
        yield store
    finally:
        try:
            store.session().execute(f"DROP KEYSPACE IF EXISTS {store.keyspace}", timeout=60)
        finally:
            store.close()


@pytest.fixture(scope="session")
def cassandra_keyspace() -> Iterator[str]:
    with store_in_fresh_keyspace() as store:
        yield store.keyspace


@pytest.fixture
def cassandra_store(cassandra_keyspace: str) -> CassandraTransferStore:
    return CassandraTransferStore.from_url(store_url(cassandra_keyspace))
