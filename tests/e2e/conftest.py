from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.api.auth import issue_token
from app.config import ReferenceEngineSettings
from app.factory import create_app
from consumers.worker import ensure_background_workers
from tests.conftest import TEST_TOKEN_POLICY, embedded_settings

# The reference engine rejects amounts whose minor units end in these digits.
REJECT_SUFFIX = "777"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    settings = embedded_settings(
        tmp_path,
        scanner_interval_seconds=0.5,
    )
    flask_app = create_app(settings)
    ensure_background_workers(flask_app, ReferenceEngineSettings(reject_suffix=REJECT_SUFFIX))
    yield flask_app
    flask_app.extensions["background_workers"].shutdown()
    flask_app.extensions["internal_transfer"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def bearer(user_id: int, *, operator: bool = False, ttl: int = 3600) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(TEST_TOKEN_POLICY, user_id, operator=operator, ttl_seconds=ttl)}"}


def transfer_body(amount: object = "100.00000000", **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "from_account": {"account_type": "funding", "asset": "USDT"},
        "to_account": {"account_type": "spot", "asset": "USDT"},
        "amount": amount,
    }
    body.update(overrides)
    return body


def deposit(client: FlaskClient, user_id: int, amount: str = "1000", asset: str = "USDT") -> None:
    response = client.post(
        "/api/v1/admin/deposits",
        json={"user_id": user_id, "asset": asset, "amount": amount, "reason": "test funds"},
        headers={**bearer(1, operator=True), "Idempotency-Key": f"fund-{uuid.uuid4().hex}"},
    )
    assert response.status_code == 201, response.json


def json_of(response: TestResponse) -> Any:
    """The response's JSON body; fails the test if there is none."""
    body = response.get_json(silent=True)
    assert body is not None, response.data[:200]
    return body
