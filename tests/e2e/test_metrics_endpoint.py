"""GET /metrics and X-Request-Id on the Flask app (embedded backends)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app.factory import create_app
from tests.conftest import embedded_settings
from tests.e2e.conftest import bearer, deposit, json_of, transfer_body

TRANSFERS = "/api/v1/user/internal_transfer"


def test_metrics_need_no_token_and_label_routes_by_template(client: FlaskClient) -> None:
    deposit(client, 42)
    created = client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(42))
    assert created.status_code == 202
    client.get(f"{TRANSFERS}/{json_of(created)['request_id']}", headers=bearer(42))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    body = response.get_data(as_text=True)
    assert f'route="{TRANSFERS}",status="202"' in body
    # The rule as Flask has it (converter included): bounded, whatever the id.
    assert f'route="{TRANSFERS}/<transfer_id:request_id>",status="200"' in body
    # The id is in the URL, never in a label.
    assert json_of(created)["request_id"] not in body
    assert 'internal_transfer_transfers_total{failure_reason="",outcome="accepted"}' in body


def test_the_trace_id_is_echoed_or_generated(client: FlaskClient) -> None:
    assert client.get("/healthz", headers={"X-Request-Id": "abc-1"}).headers["X-Request-Id"] == "abc-1"
    generated = client.get("/healthz", headers={"X-Request-Id": "no spaces allowed"}).headers["X-Request-Id"]
    assert generated != "no spaces allowed" and len(generated) == 32
    # Errors carry it too.
    assert client.get("/nowhere", headers={"X-Request-Id": "abc-2"}).headers["X-Request-Id"] == "abc-2"


def test_metrics_can_be_kept_off_the_public_listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_ON_WEB", "0")
    settings = embedded_settings(
        tmp_path,
    )
    app = create_app(settings)
    try:
        assert app.test_client().get("/metrics").status_code == 404
    finally:
        app.extensions["internal_transfer"].close()
