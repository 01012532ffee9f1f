"""The service under gunicorn, as a subprocess, over real HTTP (embedded backends)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from app.api.auth import issue_token
from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET, TEST_TOKEN_POLICY
from tests.support.processes import ServiceProcess, free_port, gunicorn, service_env, wait_until_ready

TRANSFERS = "/api/v1/user/internal_transfer"


@dataclass
class RunningService:
    base_url: str
    process: ServiceProcess

    def headers(self, user_id: int, operator: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(TEST_TOKEN_POLICY, user_id, operator=operator)}"}

    def deposit(self, user_id: int, amount: str) -> None:
        response = requests.post(
            f"{self.base_url}/api/v1/admin/deposits",
            timeout=10,
            json={"user_id": user_id, "asset": "USDT", "amount": amount, "reason": "test funds"},
            headers={**self.headers(1, operator=True), "Idempotency-Key": f"fund-{uuid.uuid4().hex}"},
        )
        assert response.status_code == 201, response.text

    def transfer(self, user_id: int, amount: str, key: str | None = None) -> requests.Response:
        headers = self.headers(user_id)
        if key:
            headers["Idempotency-Key"] = key
        body: dict[str, Any] = {
            "from_account": {"account_type": "funding", "asset": "USDT"},
            "to_account": {"account_type": "spot", "asset": "USDT"},
            "amount": amount,
        }
        return requests.post(f"{self.base_url}{TRANSFERS}", json=body, headers=headers, timeout=30)

    def status_of(self, user_id: int, request_id: str) -> dict[str, object]:
        response = requests.get(f"{self.base_url}{TRANSFERS}/{request_id}", headers=self.headers(user_id), timeout=10)
        assert response.status_code == 200, response.text
        found: dict[str, object] = response.json()
        return found

    def wait_terminal(self, user_id: int, request_id: str, timeout: float = 15) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.status_of(user_id, request_id)
            if body["status"] in ("success", "failed") or time.monotonic() > deadline:
                return body
            time.sleep(0.1)

    def balances(self, user_id: int) -> dict[str, dict[str, str]]:
        response = requests.get(f"{self.base_url}/api/v1/user/balances", headers=self.headers(user_id), timeout=10)
        return {b["account_type"]: b for b in response.json()["balances"] if b["asset"] == "USDT"}


def start_service(tmp_path: Path, **env: str) -> RunningService:
    # The races here send dozens of one user's requests at once; rate limits have their own tests.
    env.setdefault("TRANSFER_RATE_LIMIT", "1000000 per second")
    env.setdefault("READ_RATE_LIMIT", "1000000 per second")
    port = free_port()
    process = gunicorn(
        port,
        service_env(tmp_path, JWT_SECRET=TEST_JWT_SECRET, OPERATOR_JWT_SECRET=TEST_OPERATOR_JWT_SECRET, **env),
        tmp_path,
    ).start()
    service = RunningService(f"http://127.0.0.1:{port}", process)
    wait_until_ready(service.base_url, process)
    return service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(tmp_path, REFERENCE_ENGINE_REJECT_SUFFIX="777")
    yield running
    running.process.stop()


def test_a_transfer_settles_within_about_a_second(service: RunningService) -> None:
    service.deposit(3001, "1000")
    response = service.transfer(3001, "100.00000000")
    assert response.status_code == 202
    started = time.monotonic()
    body = service.wait_terminal(3001, response.json()["request_id"])
    assert body["status"] == "success"
    assert time.monotonic() - started < 2
    assert service.balances(3001)["spot"]["available"] == "100.00000000"


def test_double_spend_race_lets_exactly_the_affordable_ones_through(service: RunningService) -> None:
    service.deposit(4001, "10")
    # 50 concurrent transfers of 1 USDT against a balance of 10.
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda i: service.transfer(4001, "1", key=f"race-{i}"), range(50)))
    codes = Counter(r.status_code for r in responses)
    assert codes == {202: 10, 422: 40}, codes
    assert all(r.json()["error"]["code"] == "INSUFFICIENT_BALANCE" for r in responses if r.status_code == 422)
    accepted = [r.json()["request_id"] for r in responses if r.status_code == 202]
    assert all(service.wait_terminal(4001, rid)["status"] == "success" for rid in accepted)
    refused = [r.json()["error"]["details"]["request_id"] for r in responses if r.status_code == 422]
    assert all(service.status_of(4001, rid)["failure_reason"] == "INSUFFICIENT_BALANCE" for rid in refused)
    balances = service.balances(4001)
    assert balances["funding"] == {
        "asset": "USDT",
        "account_type": "funding",
        "available": "0.00000000",
        "locked": "0.00000000",
    }
    assert balances["spot"]["available"] == "10.00000000"


def test_concurrent_retries_of_one_key_make_one_transfer(service: RunningService) -> None:
    service.deposit(4002, "10")
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: service.transfer(4002, "1", key="same"), range(20)))
    assert {r.json()["request_id"] for r in responses} == {responses[0].json()["request_id"]}
    # Each answer is the first one's: 202, however many retries raced.
    assert Counter(r.status_code for r in responses) == {202: 20}
    service.wait_terminal(4002, responses[0].json()["request_id"])
    assert service.balances(4002)["spot"]["available"] == "1.00000000"


def test_engine_rejection_over_http(service: RunningService) -> None:
    service.deposit(4003, "10")
    response = service.transfer(4003, "0.00000777")
    body = service.wait_terminal(4003, response.json()["request_id"])
    assert (body["status"], body["failure_reason"]) == ("failed", "REJECTED_BY_ENGINE")
    assert service.balances(4003)["funding"]["available"] == "10.00000000"


def test_scanner_completes_a_transfer_whose_worker_died_after_the_lock(tmp_path: Path) -> None:
    crashing = start_service(tmp_path, CRASH_POINTS="after_lock")
    try:
        crashing.deposit(5001, "10")
        with pytest.raises(requests.ConnectionError):
            crashing.transfer(5001, "3", key="crash-1")  # the worker exits with os._exit mid-request
    finally:
        crashing.process.stop()
    restarted = start_service(tmp_path, REQUESTING_GRACE_SECONDS="1", SCANNER_INTERVAL_SECONDS="0.5")
    try:
        replay = restarted.transfer(5001, "3", key="crash-1")
        assert replay.status_code == 202
        body = restarted.wait_terminal(5001, replay.json()["request_id"])
        assert body["status"] == "success"
        assert restarted.balances(5001)["spot"]["available"] == "3.00000000"
        assert restarted.balances(5001)["funding"]["locked"] == "0.00000000"
    finally:
        restarted.process.stop()


def _raw_exchange(service: RunningService, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes (requests would refuse to), read the whole answer."""
    host, port = service.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                length = [
                    int(v)
                    for k, v in (h.split(b":", 1) for h in head.split(b"\r\n")[1:])
                    if k.lower() == b"content-length"
                ]
                if length and len(rest) >= length[0]:
                    break
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _assert_json_error(headers: dict[str, str], body: bytes, code: str) -> None:
    assert headers["content-type"] == "application/json"
    parsed = json.loads(body)
    assert set(parsed) == {"error"} and set(parsed["error"]) == {"code", "message", "details"}
    assert parsed["error"]["code"] == code


def test_gunicorns_own_errors_have_the_one_json_shape(service: RunningService) -> None:
    status, headers, body = _raw_exchange(service, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414
    _assert_json_error(headers, body, "URI_TOO_LONG")

    status, headers, body = _raw_exchange(service, b"NOT A REQUEST LINE AT ALL\r\n\r\n")
    assert status == 400
    _assert_json_error(headers, body, "INVALID_REQUEST")
    assert b"NOT A REQUEST" not in body, "the client's input is not echoed"

    status, headers, body = _raw_exchange(service, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
    assert status == 400
    _assert_json_error(headers, body, "INVALID_REQUEST")


def test_a_huge_unauthenticated_body_is_refused_unread(service: RunningService) -> None:
    # Only the head is sent: the answer must come without waiting for (or reading) 300 MB.
    request = (
        b"POST /api/v1/admin/deposits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 300000000\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = _raw_exchange(service, request)
    assert status == 413
    _assert_json_error(headers, body, "PAYLOAD_TOO_LARGE")
