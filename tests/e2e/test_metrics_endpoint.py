"""GET /metrics and X-Request-Id on the Flask app (embedded backends)."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from app.factory import create_app
from tests.conftest import embedded_settings
from tests.e2e.conftest import bearer, deposit, json_of, transfer_body

TRANSFERS = "/api/v1/user/internal_transfer"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    # Metrics on the app's own listener: configured on purpose, as a deployment would.
    app = create_app(embedded_settings(tmp_path, metrics_on_web=True, background_workers="off"))
    yield app.test_client()
    app.extensions["internal_transfer"].close()


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


def test_metrics_are_off_the_public_listener_unless_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # They tell anyone the volumes, the failure reasons and which backend is down.
    monkeypatch.delenv("METRICS_ON_WEB", raising=False)
    app = create_app(embedded_settings(tmp_path))
    try:
        assert app.test_client().get("/metrics").status_code == 404
    finally:
        app.extensions["internal_transfer"].close()


def _request_series() -> set[tuple[tuple[str, str], ...]]:
    return {
        tuple(sorted(sample.labels.items()))
        for family in REGISTRY.collect()
        if family.name == "internal_transfer_http_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    }


def _random_requests(client: FlaskClient, rng: random.Random, count: int) -> set[str]:
    letters = string.ascii_uppercase + string.digits
    sent = set()
    for _ in range(count):
        method = "".join(rng.choice(letters) for _ in range(rng.randint(3, 12)))
        path = "/" + "/".join("".join(rng.choice(string.ascii_lowercase) for _ in range(5)) for _ in range(3))
        client.open(path, method=method)
        client.open(f"/api/v1/user/{path[1:]}", method=rng.choice(["GET", "POST", "DELETE", method]))
        sent |= {method, path, f"/api/v1/user/{path[1:]}"}
    return sent


def test_random_methods_and_paths_do_not_grow_the_series(client: FlaskClient) -> None:
    rng = random.Random(19)
    sent = _random_requests(client, rng, 250)
    before = _request_series()
    sent |= _random_requests(client, rng, 250)
    after = _request_series()
    assert after == before, sorted(after - before)[:5]
    routed = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}
    labelled = [dict(labels) for labels in after]
    assert {labels["method"] for labels in labelled} <= routed
    assert not {value for labels in labelled for value in labels.values()} & sent
