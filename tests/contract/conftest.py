"""One fixture per port, parametrised over every implementation of it.

The same contract tests run against each; an implementation whose server
is not available here is skipped with a reason (and fails the run instead
when REQUIRE_REAL_BACKENDS=1, as under `make test`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapters.embedded_ledger import EmbeddedLedger
from app.adapters.sqlite_store import SqliteTransferStore
from app.ports.ledger import Ledger
from app.ports.store import TransferStore
from tests.support.bus_kits import BusKit, InProcessKit

LEDGERS = ["embedded", "tigerbeetle"]
STORES = ["sqlite", "cassandra"]
BUSES = ["inprocess", "kafka"]


@pytest.fixture(params=LEDGERS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "embedded":
        implementation: Ledger = EmbeddedLedger(str(tmp_path / "ledger.db"))
    else:
        implementation = request.getfixturevalue(f"{request.param}_ledger")
    yield implementation
    implementation.close()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TransferStore]:
    if request.param == "sqlite":
        implementation: TransferStore = SqliteTransferStore(str(tmp_path / "store.db"))
    else:
        implementation = request.getfixturevalue(f"{request.param}_store")
    yield implementation
    implementation.close()


@pytest.fixture(params=BUSES)
def buses(request: pytest.FixtureRequest) -> BusKit:
    """Both ends of one bus implementation; the kit closes what it made (Kafka) or holds nothing."""
    if request.param == "inprocess":
        return InProcessKit()
    kit: BusKit = request.getfixturevalue(f"{request.param}_buses")
    return kit
