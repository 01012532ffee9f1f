"""Daily limits over HTTP, on the embedded ledger and on TigerBeetle (when TIGERBEETLE_BIN is set)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.bootstrap import build
from app.domain.account_model import Direction
from app.domain.limits import QuotaKey, utc_day
from app.factory import create_app
from consumers.worker import ensure_background_workers
from tests.conftest import embedded_settings, random_user_id
from tests.e2e.conftest import bearer, deposit, json_of, transfer_body

TRANSFERS = "/api/v1/user/internal_transfer"
LIMITS = "/api/v1/user/limits"
OPERATOR = bearer(1, operator=True)


@pytest.fixture(params=["embedded", "tigerbeetle"])
def limits_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    settings = embedded_settings(
        tmp_path,
        scanner_interval_seconds=0.5,
        # The race below sends 24 requests of one user at once; rate limits have their own tests.
        transfer_rate_limit="1000000 per second",
        read_rate_limit="1000000 per second",
    )
    ledger = request.getfixturevalue("tigerbeetle_ledger") if request.param == "tigerbeetle" else None
    flask_app = create_app(container=build(settings, ledger=ledger))
    ensure_background_workers(flask_app)
    yield flask_app
    flask_app.extensions["background_workers"].shutdown()
    flask_app.extensions["internal_transfer"].close()


@pytest.fixture
def client(limits_app: Flask) -> FlaskClient:
    return limits_app.test_client()


def set_limit(client: FlaskClient, user_id: int, limit: str, direction: str = "funding_to_spot") -> Any:
    body = {"asset": "USDT", "direction": direction, "limit": limit, "reason": "support ticket 42"}
    return client.post(f"/api/v1/admin/users/{user_id}/limits", json=body, headers=OPERATOR)


def usdt_row(client: FlaskClient, user_id: int, direction: str = "funding_to_spot") -> dict[str, str]:
    response = client.get(LIMITS, headers=bearer(user_id))
    assert response.status_code == 200, response.json
    (row,) = [r for r in json_of(response)["limits"] if r["asset"] == "USDT" and r["direction"] == direction]
    return dict(row)


def wait_for_status(client: FlaskClient, user_id: int, request_id: str, wanted: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        status = json_of(client.get(f"{TRANSFERS}/{request_id}", headers=bearer(user_id)))["status"]
        if status == wanted or time.monotonic() > deadline:
            return str(status)
        time.sleep(0.05)


def test_limits_show_the_default_for_every_asset_and_direction(client: FlaskClient) -> None:
    assert client.get(LIMITS).status_code == 401
    response = client.get(LIMITS, headers=bearer(random_user_id()))
    assert response.status_code == 200
    rows = {(r["asset"], r["direction"]): r for r in json_of(response)["limits"]}
    assert set(rows) == {(a, d.value) for a in ("BTC", "ETH", "USDT") for d in Direction}
    assert rows[("USDT", "funding_to_spot")] == {
        "asset": "USDT",
        "direction": "funding_to_spot",
        "limit": "1000000.00000000",
        "used": "0.00000000",
        "remaining": "1000000.00000000",
    }
    assert json_of(response)["day"] == time.strftime("%Y-%m-%d", time.gmtime())


def test_over_the_limit_is_422_with_what_remains_and_recorded_failed(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "1000")
    assert set_limit(client, user_id, "150").status_code == 201
    first = client.post(TRANSFERS, json=transfer_body("100"), headers=bearer(user_id))
    assert first.status_code == 202, first.json
    refused = client.post(TRANSFERS, json=transfer_body("60"), headers=bearer(user_id))
    assert refused.status_code == 422
    error = json_of(refused)["error"]
    assert error["code"] == "DAILY_LIMIT_EXCEEDED"
    assert error["details"]["remaining"] == "50.00000000"
    assert error["details"]["limit"] == "150.00000000"
    assert (error["details"]["asset"], error["details"]["direction"]) == ("USDT", "funding_to_spot")
    stored = json_of(client.get(f"{TRANSFERS}/{error['details']['request_id']}", headers=bearer(user_id)))
    assert (stored["status"], stored["failure_reason"]) == ("failed", "DAILY_LIMIT_EXCEEDED")
    # Nothing was taken by the refusal: the funds stay available.
    assert wait_for_status(client, user_id, json_of(first)["request_id"], "success") == "success"
    balances = json_of(client.get("/api/v1/user/balances", headers=bearer(user_id)))["balances"]
    funding = next(b for b in balances if b["asset"] == "USDT" and b["account_type"] == "funding")
    assert (funding["available"], funding["locked"]) == ("900.00000000", "0.00000000")
    assert usdt_row(client, user_id) == {
        "asset": "USDT",
        "direction": "funding_to_spot",
        "limit": "150.00000000",
        "used": "100.00000000",
        "remaining": "50.00000000",
    }
    # The other direction has its own allowance.
    assert usdt_row(client, user_id, "spot_to_funding")["remaining"] == "1000000.00000000"
    back = client.post(
        TRANSFERS,
        json=transfer_body(
            "100",
            from_account={"account_type": "spot", "asset": "USDT"},
            to_account={"account_type": "funding", "asset": "USDT"},
        ),
        headers=bearer(user_id),
    )
    assert back.status_code == 202, back.json


def test_an_override_raises_and_lowers_todays_limit_at_once_and_is_audited(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "1000")
    assert client.post(TRANSFERS, json=transfer_body("100"), headers=bearer(user_id)).status_code == 202
    assert set_limit(client, user_id, "120").status_code == 201
    assert usdt_row(client, user_id)["remaining"] == "20.00000000"
    assert set_limit(client, user_id, "300").status_code == 201
    assert usdt_row(client, user_id)["remaining"] == "200.00000000"
    assert client.post(TRANSFERS, json=transfer_body("200"), headers=bearer(user_id)).status_code == 202
    # Lowered below what is used: nothing remains, and what was moved stays moved (and counted).
    assert set_limit(client, user_id, "50").status_code == 201
    assert usdt_row(client, user_id) == {
        "asset": "USDT",
        "direction": "funding_to_spot",
        "limit": "50.00000000",
        "used": "300.00000000",
        "remaining": "0.00000000",
    }
    refused = client.post(TRANSFERS, json=transfer_body("0.00000001"), headers=bearer(user_id))
    assert json_of(refused)["error"]["code"] == "DAILY_LIMIT_EXCEEDED"
    shown = json_of(client.get(f"/api/v1/admin/users/{user_id}/limits", headers=OPERATOR))
    assert [(o["version"], o["limit"], o["actor"], o["reason"]) for o in shown["overrides"]] == [
        (1, "120.00000000", "operator:1", "support ticket 42"),
        (2, "300.00000000", "operator:1", "support ticket 42"),
        (3, "50.00000000", "operator:1", "support ticket 42"),
    ]


def test_only_operators_override_and_bad_overrides_are_refused(client: FlaskClient) -> None:
    user_id = random_user_id()
    body = {"asset": "USDT", "direction": "funding_to_spot", "limit": "1", "reason": "x"}
    mine = client.post(f"/api/v1/admin/users/{user_id}/limits", json=body, headers=bearer(user_id))
    assert mine.status_code == 403
    assert client.get(f"/api/v1/admin/users/{user_id}/limits", headers=bearer(user_id)).status_code == 403
    assert set_limit(client, user_id, "-1").status_code == 400
    assert set_limit(client, user_id, "1.000000001").status_code == 400
    no_reason = {**body, "reason": ""}
    assert client.post(f"/api/v1/admin/users/{user_id}/limits", json=no_reason, headers=OPERATOR).status_code == 400
    unknown = {**body, "asset": "DOGE"}
    assert client.post(f"/api/v1/admin/users/{user_id}/limits", json=unknown, headers=OPERATOR).status_code == 400
    assert json_of(client.get(f"/api/v1/admin/users/{user_id}/limits", headers=OPERATOR))["overrides"] == []
    # Zero blocks the direction.
    deposit(client, user_id, "10")
    assert set_limit(client, user_id, "0").status_code == 201
    refused = client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(user_id))
    assert json_of(refused)["error"]["code"] == "DAILY_LIMIT_EXCEEDED"


def test_concurrent_transfers_against_a_limit_lock_exactly_what_fits(client: FlaskClient, limits_app: Flask) -> None:
    """The race over HTTP: 24 transfers of 10 at once against a limit of 75: exactly 7 pass."""
    user_id = random_user_id()
    deposit(client, user_id, "1000")
    assert set_limit(client, user_id, "75").status_code == 201
    start = threading.Barrier(24)

    def send(_: int) -> tuple[int, str | None]:
        own = limits_app.test_client()
        start.wait()
        response = own.post(TRANSFERS, json=transfer_body("10"), headers=bearer(user_id))
        return response.status_code, (json_of(response).get("error") or {}).get("code")

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(send, range(24)))
    assert answers.count((202, None)) == 7, answers
    assert answers.count((422, "DAILY_LIMIT_EXCEEDED")) == 17, answers
    services = limits_app.extensions["internal_transfer"]
    usdt = services.catalog.get("USDT")
    key = QuotaKey(user_id, usdt, Direction.FUNDING_TO_SPOT, utc_day(services.deps.clock()))
    balance = services.ledger.quota_balances([key])[key]
    assert balance.consumed + balance.held == 70 * 10**8
    assert balance.remaining == 5 * 10**8


def test_operators_override_from_the_cli_with_a_reason(limits_app: Flask, client: FlaskClient) -> None:
    import json

    user_id = random_user_id()
    runner = limits_app.test_cli_runner()
    missing_reason = runner.invoke(args=["limits", "set", str(user_id), "USDT", "funding_to_spot", "25"])
    assert missing_reason.exit_code != 0 and "--reason" in missing_reason.output
    done = runner.invoke(
        args=[
            "limits",
            "set",
            str(user_id),
            "USDT",
            "funding_to_spot",
            "25",
            "--reason",
            "KYC tier 1",
            "--operator",
            "bob",
        ]
    )
    assert done.exit_code == 0, done.output
    shown = json.loads(done.stdout[done.stdout.index("{") :])
    # The name typed, then the OS user and host the command ran as.
    assert shown["overrides"][0]["actor"].startswith("operator:bob (cli: ")
    assert shown["overrides"][0] | {"set_at": None, "actor": None} == {
        "asset": "USDT",
        "direction": "funding_to_spot",
        "version": 1,
        "limit": "25.00000000",
        "actor": None,
        "reason": "KYC tier 1",
        "set_at": None,
    }
    assert usdt_row(client, user_id)["limit"] == "25.00000000"
    refused = runner.invoke(
        args=["limits", "set", str(user_id), "DOGE", "funding_to_spot", "1", "--reason", "x", "--operator", "bob"]
    )
    assert refused.exit_code != 0 and "UNSUPPORTED_ASSET" in refused.output
    listed = runner.invoke(args=["limits", "show", str(user_id)])
    assert listed.exit_code == 0 and json.loads(listed.output)["user_id"] == user_id


def test_a_replayed_limit_refusal_is_the_same_422(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "1000")
    assert set_limit(client, user_id, "50").status_code == 201
    key = {"Idempotency-Key": f"limit-replay-{user_id}"}
    first = client.post(TRANSFERS, json=transfer_body("60"), headers={**bearer(user_id), **key})
    again = client.post(TRANSFERS, json=transfer_body("60"), headers={**bearer(user_id), **key})
    assert (first.status_code, again.status_code) == (422, 422)
    assert json_of(again) == json_of(first)  # nothing used since, so even the figures agree


def test_a_path_user_id_that_is_not_one_is_404_like_every_path_id(client: FlaskClient) -> None:
    for bad in ("abc", "0", "99999999999999999999999"):
        response = client.get(f"/api/v1/admin/users/{bad}/limits", headers=OPERATOR)
        assert response.status_code == 404, (bad, response.json)
        assert json_of(response)["error"]["code"] == "NOT_FOUND"
