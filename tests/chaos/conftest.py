from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cassandra_fixtures import cassandra_hosts, skip_or_fail
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if cassandra_hosts() is None or not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        skip_or_fail("Cassandra/Kafka not configured (run through `make test`): crash and chaos tests skipped")
    running = Stack(Path(tmp_path_factory.mktemp("stack"))).start()
    yield running
    running.stop()
