"""Per-user rate limits on the transfer POST: 429 with Retry-After and the error body, other users unaffected."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.factory import create_app
from tests.conftest import embedded_settings
from tests.e2e.conftest import bearer, deposit, json_of, transfer_body

TRANSFERS = "/api/v1/user/internal_transfer"


@pytest.fixture
def limited_app(tmp_path: Path) -> Iterator[Flask]:
    settings = embedded_settings(
        tmp_path,
        background_workers="off",
        # A burst of 3 within a second, 4 a minute: the fourth or fifth request is refused.
        transfer_rate_limit="3 per second;4 per minute",
        read_rate_limit="5 per second;6 per minute",
        ratelimit_storage_uri="memory://",
    )
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["internal_transfer"].close()


def test_a_user_past_the_rate_gets_429_and_others_are_not_affected(limited_app: Flask) -> None:
    client: FlaskClient = limited_app.test_client()
    for user_id in (41, 42):
        deposit(client, user_id, "100")
    responses = [client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(41)) for _ in range(5)]
    answers = [r.status_code for r in responses]
    assert answers[:3] == [202, 202, 202]
    assert int(responses[0].headers["X-RateLimit-Remaining"]) >= 1
    assert 429 in answers[3:]
    refused = client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(41))
    assert refused.status_code == 429
    assert json_of(refused)["error"]["code"] == "RATE_LIMITED"
    assert set(json_of(refused)["error"]) == {"code", "message", "details"}
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert json_of(refused)["error"]["details"]["limit"] in ("3 per 1 second", "4 per 1 minute")
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # Another user is not slowed by the first one's burst.
    assert client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(42)).status_code == 202
    # Reads have budgets of their own: the POST burst leaves them alone.
    assert client.get("/api/v1/user/balances", headers=bearer(41)).status_code == 200
    assert client.get(f"{TRANSFERS}/history", headers=bearer(41)).status_code == 200


def test_the_limit_counts_per_user_not_per_token_and_refusals_move_nothing(limited_app: Flask) -> None:
    client: FlaskClient = limited_app.test_client()
    deposit(client, 43, "100")
    for _ in range(4):
        client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(43))
    # A fresh token of the same user is the same user.
    refused = client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(43, ttl=7200))
    assert refused.status_code == 429
    history = json_of(client.get(f"{TRANSFERS}/history", headers=bearer(43)))["items"]
    assert len(history) <= 4  # a refused request is never recorded


def test_requests_without_a_token_are_still_401(limited_app: Flask) -> None:
    client: FlaskClient = limited_app.test_client()
    assert client.post(TRANSFERS, json=transfer_body("1")).status_code == 401


def test_the_openapi_spec_has_the_limits_routes_and_the_new_answers(limited_app: Flask) -> None:
    spec = json_of(limited_app.test_client().get("/openapi.json"))
    assert set(spec["paths"]["/api/v1/user/limits"]) == {"get"}
    assert {"get", "post"} <= set(spec["paths"]["/api/v1/admin/users/{user_id}/limits"])
    post = spec["paths"]["/api/v1/user/internal_transfer"]["post"]["responses"]
    assert "429" in post and "DAILY_LIMIT_EXCEEDED" in post["422"]["description"]
    usage = spec["components"]["schemas"]["LimitUsage"]["properties"]
    assert set(usage) == {"asset", "direction", "limit", "used", "remaining"}


def test_retry_after_is_never_zero_whatever_the_clock_reads(
    limited_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Flask-Limiter writes its own Retry-After after ours, rounded down: a
    # refusal less than a second before the window resets told the client to
    # retry after 0 seconds (seen once in CI). A stepped clock lands there.
    client: FlaskClient = limited_app.test_client()
    deposit(client, 44, "100")
    clock = [float(int(time.time())) + 0.5]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    refused = []
    for _ in range(12):
        answer = client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(44))
        if answer.status_code == 429:
            refused.append(int(answer.headers["Retry-After"]))
        clock[0] += 0.15
    assert len(refused) >= 3
    assert min(refused) >= 1, refused


@pytest.mark.parametrize(
    "path",
    ["/api/v1/user/balances", f"{TRANSFERS}/history", "/api/v1/user/limits", f"{TRANSFERS}/122887524536446976"],
)
def test_every_authenticated_read_has_a_per_user_rate_with_the_same_429(limited_app: Flask, path: str) -> None:
    # A history page reads index rows and records: unbounded reads were free.
    client: FlaskClient = limited_app.test_client()
    answers = [client.get(path, headers=bearer(45)) for _ in range(8)]
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) >= 2, [a.status_code for a in answers]
    assert all(a.status_code in (200, 404) for a in answers[:5])
    body = json_of(refused[0])
    assert body["error"]["code"] == "RATE_LIMITED" and set(body["error"]) == {"code", "message", "details"}
    assert int(refused[0].headers["Retry-After"]) >= 1
    # Another user reads on, and the reader's own transfers are a budget of their own.
    assert client.get(path, headers=bearer(46)).status_code in (200, 404)
    deposit(client, 45, "10")
    assert client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(45)).status_code == 202


def test_operator_reads_are_limited_per_operator(limited_app: Flask) -> None:
    client: FlaskClient = limited_app.test_client()
    answers = [client.get("/api/v1/admin/transfers/stuck", headers=bearer(1, operator=True)) for _ in range(8)]
    assert 429 in [a.status_code for a in answers]
    # The user with the same number has a budget of their own: the roles never share one.
    assert client.get("/api/v1/user/balances", headers=bearer(1)).status_code == 200
