"""Operations end to end: metrics, correlated JSON logs, no secrets in logs, and a real Prometheus.

One stack (gunicorn with two workers, the worker, the engine, on Cassandra
and Kafka) serves the whole module. Debian's Prometheus scrapes it on
loopback with the repository's alert rules and a thresholds file of the
test's own (stuck after 2 s, scanner silent for 5 s instead of 30 min and
60 s): thresholds shortened by configuration, the rules untouched.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from app.api.auth import issue_token
from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET, TEST_TOKEN_POLICY, random_user_id
from tests.ops.test_dashboard import load as load_dashboard
from tests.support.cassandra_fixtures import cassandra_hosts, skip_or_fail
from tests.support.prometheus import PrometheusServer, ensure_prometheus
from tests.support.stack import Stack

pytestmark = pytest.mark.real_backends

RULES = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
# Never a real password: only here so the test can look for it in the logs.
CASSANDRA_PASSWORD = "cassandra-pw-" + uuid.uuid4().hex
SHORT_THRESHOLDS = """groups:
  - name: internal-transfer-thresholds
    rules:
      - record: internal_transfer:threshold_stuck_warning_seconds
        expr: vector(2)
      - record: internal_transfer:threshold_stuck_critical_seconds
        expr: vector(3600)
      - record: internal_transfer:threshold_scanner_stale_seconds
        expr: vector(5)
"""
TRANSFER_PATH = "/api/v1/user/internal_transfer"


@dataclass
class Journey:
    """One transfer followed from the POST to success."""

    trace_id: str
    request_id: str
    user_token: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if cassandra_hosts() is None or not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        skip_or_fail("Cassandra/Kafka not configured (run through `make test`): observability e2e skipped")
    running = Stack(tmp_path_factory.mktemp("observed")).start(
        HEALTH_INTERVAL_SECONDS="1",
        RECONCILE_INTERVAL_SECONDS="2",
        RECONCILE_GRACE_SECONDS="1",
        # The driver authenticates only when asked; the password is here to be looked for.
        CASSANDRA_USERNAME="internal_transfer",
        CASSANDRA_PASSWORD=CASSANDRA_PASSWORD,
    )
    yield running
    running.stop()


def headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def transfer_body(amount: str) -> dict[str, Any]:
    return {
        "from_account": {"account_type": "funding", "asset": "USDT"},
        "to_account": {"account_type": "spot", "asset": "USDT"},
        "amount": amount,
    }


def fund(stack: Stack, user_id: int) -> None:
    operator = issue_token(TEST_TOKEN_POLICY, 1, operator=True)
    response = requests.post(
        f"{stack.base_url}/api/v1/admin/deposits",
        json={"user_id": user_id, "asset": "USDT", "amount": "1000", "reason": "test funds"},
        headers=headers(operator, **{"Idempotency-Key": f"seed-{user_id}"}),
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text


def wait_for_status(stack: Stack, token: str, request_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        response = requests.get(f"{stack.base_url}{TRANSFER_PATH}/{request_id}", headers=headers(token), timeout=10)
        seen = response.json().get("status")
        if seen == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"transfer {request_id} is {seen}, not {status}, after {timeout}s")


@pytest.fixture(scope="module")
def journey(stack: Stack) -> Journey:
    user_id = random_user_id()
    token = issue_token(TEST_TOKEN_POLICY, user_id)
    fund(stack, user_id)
    trace_id = f"e2e-{uuid.uuid4().hex[:12]}"
    response = requests.post(
        f"{stack.base_url}{TRANSFER_PATH}",
        json=transfer_body("12.5"),
        headers=headers(token, **{"X-Request-Id": trace_id, "Idempotency-Key": uuid.uuid4().hex}),
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-Id"] == trace_id
    request_id = response.json()["request_id"]
    wait_for_status(stack, token, request_id, "success")
    return Journey(trace_id, request_id, token)


def json_lines(stack: Stack, name: str) -> list[dict[str, Any]]:
    lines = [line for line in stack.processes[name].log_path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{name}.log has a line that is not JSON: {line!r}") from None
    return records


def wait_for_log(stack: Stack, name: str, request_id: str, message: str, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in json_lines(stack, name) if r.get("request_id") == request_id]
        if any(r["message"] == message for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.3)


def test_a_transfer_is_followed_from_post_to_success_across_the_three_logs(stack: Stack, journey: Journey) -> None:
    # One grep by request_id: the web accepted it, the engine confirmed it, the worker settled it.
    web = wait_for_log(stack, "web", journey.request_id, "transfer accepted")
    engine = wait_for_log(stack, "engine", journey.request_id, "engine answered confirmed")
    worker = wait_for_log(stack, "worker", journey.request_id, "transfer success")
    for process, records, message in (
        ("web", web, "transfer accepted"),
        ("engine", engine, "engine answered confirmed"),
        ("worker", worker, "transfer success"),
    ):
        matching = [r for r in records if r["message"] == message]
        assert matching, f"no {message!r} line for {journey.request_id} in {process}.log"
        assert {"timestamp", "level", "logger", "message", "trace_id"} <= matching[0].keys()
        assert all(r["process"] == process for r in records)
    # The POST's trace id names the transfer in the web's log, and rode the
    # request over Kafka to the engine. (The scanner may also have sent it, a
    # harmless duplicate under its pass's trace id, and either copy's result
    # may settle it: the worker's line carries the trace id of whichever it was.)
    assert [r["trace_id"] for r in web if r["message"] == "transfer accepted"] == [journey.trace_id]
    assert journey.trace_id in {r["trace_id"] for r in engine}
    for record in engine + worker:
        assert record["trace_id"] == journey.trace_id or record["trace_id"].startswith("scan-"), record
    # gunicorn's access line for the POST carries the same trace id.
    access = [r for r in json_lines(stack, "web") if r["logger"] == "gunicorn.access"]
    assert any(f"trace_id={journey.trace_id}" in r["message"] and "POST" in r["message"] for r in access)


def test_an_unsafe_trace_id_is_replaced_and_a_missing_one_generated(stack: Stack) -> None:
    unsafe = requests.get(f"{stack.base_url}/healthz", headers={"X-Request-Id": 'bad id {"x": 1}'}, timeout=10)
    too_long = requests.get(f"{stack.base_url}/healthz", headers={"X-Request-Id": "a" * 65}, timeout=10)
    generated = requests.get(f"{stack.base_url}/healthz", timeout=10)
    for response in (unsafe, too_long, generated):
        trace_id = response.headers["X-Request-Id"]
        assert len(trace_id) == 32 and trace_id.isalnum()
    assert unsafe.headers["X-Request-Id"] != generated.headers["X-Request-Id"]


def test_no_token_jwt_secret_or_cassandra_password_reaches_the_logs(stack: Stack, journey: Journey) -> None:
    forged = issue_token(replace(TEST_TOKEN_POLICY, user_key="another-secret-" + "y" * 32), 7)
    now = int(time.time())
    claims = {"iss": TEST_TOKEN_POLICY.issuer, "aud": TEST_TOKEN_POLICY.audience, "iat": now - 120, "exp": now - 60}
    expired = jwt.encode({**claims, "sub": "7", "role": "user"}, TEST_JWT_SECRET, algorithm="HS256")
    for token in (forged, expired, journey.user_token):
        requests.get(f"{stack.base_url}{TRANSFER_PATH}/history", headers=headers(token), timeout=10)
    requests.get(f"{stack.base_url}{TRANSFER_PATH}/history", headers={"Authorization": forged}, timeout=10)
    time.sleep(1)  # the access lines of those requests
    secrets = {
        "JWT secret": TEST_JWT_SECRET,
        "operator JWT secret": TEST_OPERATOR_JWT_SECRET,
        "Cassandra password": CASSANDRA_PASSWORD,
        "user token": journey.user_token,
        "forged token": forged,
        "expired token": expired,
    }
    for name in ("web", "worker", "engine"):
        text = stack.processes[name].log_path.read_text()
        assert text, f"{name}.log is empty"
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in {name}.log"
        # Tokens are three base64url parts; none may appear, whoever issued them.
        assert ".eyJ" not in text and '"eyJ' not in text


def scrape(url: str) -> str:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    return response.text


def sample_value(exposition: str, prefix: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines() if line.startswith(prefix)]
    assert values, f"no sample {prefix}"
    return sum(values)


def test_web_metrics_add_up_both_gunicorn_workers_and_the_worker_serves_its_own(stack: Stack, journey: Journey) -> None:
    # The master's own port serves them; the public listener does not (METRICS_ON_WEB is off).
    assert requests.get(f"{stack.base_url}/metrics", timeout=10).status_code == 404
    web_metrics = f"http://127.0.0.1:{stack.web_metrics_port}/metrics"
    route = 'internal_transfer_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"}'
    before = sample_value(scrape(web_metrics), route) if route in scrape(web_metrics) else 0
    for _ in range(20):
        # A new connection each: gunicorn hands them to either worker.
        requests.get(f"{stack.base_url}/healthz", headers={"Connection": "close"}, timeout=10)
    web = scrape(web_metrics)
    assert sample_value(web, route) == before + 20
    for name in (
        'internal_transfer_transfers_total{failure_reason="",outcome="accepted"}',
        "internal_transfer_http_request_duration_seconds_bucket",
        'internal_transfer_dependency_call_duration_seconds_count{backend="ledger"',
    ):
        assert sample_value(web, name) >= 1, name
    worker = scrape(f"http://127.0.0.1:{stack.worker_metrics_port}/metrics")
    for name in (
        'internal_transfer_transfers_total{failure_reason="",outcome="success"}',
        "internal_transfer_settle_duration_seconds_count",
        "internal_transfer_scanner_last_success_timestamp_seconds",
        "internal_transfer_scanner_pass_duration_seconds_count",
        'internal_transfer_open{status="pending"}',
        "internal_transfer_oldest_pending_seconds",
        "internal_transfer_oldest_requesting_seconds",
        'internal_transfer_backend_up{backend="store"}',
        'internal_transfer_consumer_lag{partition="0",topic="results"}',
        'internal_transfer_dlq_messages{topic="results"}',
        "internal_transfer_reconcile_last_success_timestamp_seconds",
    ):
        assert name in worker, name
    assert sample_value(worker, "internal_transfer_scanner_last_success_timestamp_seconds") > time.time() - 30
    assert sample_value(worker, 'internal_transfer_backend_up{backend="ledger"}') == 1
    engine = scrape(f"http://127.0.0.1:{stack.engine_metrics_port}/metrics")
    assert "internal_transfer_" in engine
    # Bounded labels: no user or request id anywhere in a label.
    for exposition in (web, worker, engine):
        assert journey.request_id not in exposition


def test_a_real_prometheus_fires_the_stuck_and_scanner_alerts_and_answers_every_dashboard_query(
    stack: Stack, journey: Journey, tmp_path: Path
) -> None:
    binary = ensure_prometheus()[1]
    thresholds = tmp_path / "thresholds.yml"
    thresholds.write_text(SHORT_THRESHOLDS)
    prometheus = PrometheusServer(
        binary,
        tmp_path / "prometheus",
        rule_files=[RULES / "alerts.yml", thresholds],
        targets={
            "internal-transfer-web": [f"127.0.0.1:{stack.web_metrics_port}"],
            "internal-transfer-worker": [f"127.0.0.1:{stack.worker_metrics_port}"],
            "internal-transfer-engine": [f"127.0.0.1:{stack.engine_metrics_port}"],
        },
    ).start()
    try:
        # A stuck transfer: with the engine stopped, nobody answers it.
        stack.processes["engine"].stop()
        response = requests.post(
            f"{stack.base_url}{TRANSFER_PATH}",
            json=transfer_body("3"),
            headers=headers(journey.user_token, **{"Idempotency-Key": uuid.uuid4().hex}),
            timeout=30,
        )
        assert response.status_code == 202, response.text
        assert prometheus.alert_states("InternalTransferStuckWarning") == set()
        prometheus.wait_for_alert("InternalTransferStuckWarning", "pending", timeout=30)
        prometheus.wait_for_alert("InternalTransferStuckWarning", "firing", timeout=60)

        # Every dashboard query answers, and every panel has data.
        for panel in load_dashboard()["panels"]:
            results = [prometheus.query(target["expr"]) for target in panel["targets"]]
            assert any(results), f"panel {panel['title']!r} has no data"

        # The scanner stops with its worker.
        assert prometheus.alert_states("InternalTransferScannerStopped") == set()
        stack.processes["worker"].stop()
        prometheus.wait_for_alert("InternalTransferScannerStopped", "pending", timeout=30)
        prometheus.wait_for_alert("InternalTransferScannerStopped", "firing", timeout=60)
    finally:
        prometheus.stop()
        stack.ensure_running()
