"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.api.auth import TokenPolicy
from app.config import PROJECT_ROOT, Settings
from app.domain.ids import MAX_WORKER_ID, SnowflakeGenerator
from app.domain.money import Asset, AssetCatalog
from app.domain.transfer import API, AccountType, AuditActor, FailureReason, Status, Transfer, TransferCommand
from app.ports.store import StatusChange, TransferStore

pytest_plugins = [
    "tests.support.tigerbeetle_fixtures",
    "tests.support.cassandra_fixtures",
    "tests.support.kafka_fixtures",
    "tests.support.figures",
]

TEST_JWT_SECRET = "test-secret-" + "x" * 32
TEST_OPERATOR_JWT_SECRET = "test-operator-secret-" + "y" * 32
TEST_TOKEN_POLICY = TokenPolicy(
    user_key=TEST_JWT_SECRET,
    operator_key=TEST_OPERATOR_JWT_SECRET,
    issuer="internal-transfer",
    audience="internal-transfer",
    max_ttl_seconds=86_400,
)


def embedded_settings(directory: Path, **overrides: Any) -> Settings:
    """Settings of a fully embedded app under `directory`, with the test keys; `overrides` win."""
    fields: dict[str, Any] = {
        "store_url": f"sqlite:///{directory}/store.db",
        "ledger_url": f"embedded:///{directory}/ledger.db",
        "bus_url": "inprocess://",
        "jwt_secret": TEST_JWT_SECRET,
        "operator_jwt_secret": TEST_OPERATOR_JWT_SECRET,
    }
    return Settings(**{**fields, **overrides})


def require_real_backends() -> bool:
    """In `make test` the real backends are up, and their tests must not skip."""
    return os.environ.get("REQUIRE_REAL_BACKENDS") == "1"


@pytest.fixture(scope="session")
def catalog() -> AssetCatalog:
    return AssetCatalog.from_toml((PROJECT_ROOT / "app" / "assets.toml").read_text())


@pytest.fixture(scope="session")
def usdt(catalog: AssetCatalog) -> Asset:
    return catalog.get("USDT")


def random_user_id() -> int:
    # Tests share real servers, so every test works on users of its own.
    return secrets.randbelow(2**62) + 1


_REQUEST_IDS = SnowflakeGenerator(secrets.randbelow(MAX_WORKER_ID + 1))


def random_request_id() -> int:
    # Real request ids are Snowflakes: time-ordered, which the stores rely on.
    return _REQUEST_IDS.next_id()


def make_transfer(
    user_id: int,
    amount: int,
    asset: str = "USDT",
    from_type: AccountType = AccountType.FUNDING,
    request_id: int | None = None,
    created_at: datetime | None = None,
) -> Transfer:
    to_type = AccountType.SPOT if from_type == AccountType.FUNDING else AccountType.FUNDING
    command = TransferCommand(user_id=user_id, asset=asset, from_type=from_type, to_type=to_type, amount=amount)
    return Transfer.new(request_id or random_request_id(), command, created_at or datetime.now(UTC))


def record_move(
    store: TransferStore,
    transfer: Transfer,
    target: Status,
    actor: AuditActor = API,
    reason: str = "test",
    failure_reason: FailureReason | None = None,
    now: datetime | None = None,
) -> Transfer:
    """Move a transfer as the service would: the state machine first, then the store."""
    after = transfer.moved_to(target, now or datetime.now(UTC), failure_reason)
    store.record_statuses([StatusChange(transfer, after, actor, reason)])
    return after
