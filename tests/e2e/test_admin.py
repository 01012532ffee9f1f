"""Operator routes and the `flask transfers` CLI: the same service code, two faces."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.e2e.conftest import bearer, deposit, json_of, transfer_body

TRANSFERS = "/api/v1/user/internal_transfer"


def _stuck_pending(client: FlaskClient, app: Flask, user_id: int) -> str:
    deposit(client, user_id)
    bus = app.extensions["internal_transfer"].bus
    bus.publish_request = lambda request: None  # requests are lost on the way to the engine
    request_id: str = json_of(client.post(TRANSFERS, json=transfer_body("10"), headers=bearer(user_id)))["request_id"]
    return request_id


def test_operator_routes_void_and_show(client: FlaskClient, app: Flask) -> None:
    request_id = _stuck_pending(client, app, 31)
    admin = bearer(1, operator=True)
    stuck = json_of(client.get("/api/v1/admin/transfers/stuck?status=pending", headers=admin))["items"]
    assert request_id in [t["request_id"] for t in stuck]
    missing_reason = client.post(f"/api/v1/admin/transfers/{request_id}/void", json={}, headers=admin)
    assert missing_reason.status_code == 400
    voided = client.post(f"/api/v1/admin/transfers/{request_id}/void", json={"reason": "ticket 9"}, headers=admin)
    assert voided.status_code == 200 and json_of(voided)["status"] == "failed"
    shown: dict[str, Any] = json_of(client.get(f"/api/v1/admin/transfers/{request_id}", headers=admin))
    assert shown["ledger_state"] == "voided" and shown["agrees"]
    assert shown["audit"][-1]["actor"] == "operator:1" and "ticket 9" in shown["audit"][-1]["reason"]
    refused = client.post(f"/api/v1/admin/transfers/{request_id}/force_post", json={"reason": "x"}, headers=admin)
    assert refused.status_code == 409 and json_of(refused)["error"]["code"] == "TRANSFER_NOT_PENDING"
    report = json_of(client.get(f"/api/v1/admin/reconcile?request_id={request_id}", headers=admin))
    assert report["mismatches"] == 0 and report["rows"][0]["ledger_state"] == "voided"


def test_operator_routes_refuse_users(client: FlaskClient) -> None:
    response = client.get("/api/v1/admin/transfers/stuck", headers=bearer(31))
    assert response.status_code == 403


def test_cli_force_post_and_reconcile(client: FlaskClient, app: Flask) -> None:
    request_id = _stuck_pending(client, app, 32)
    runner = app.test_cli_runner()
    no_reason = runner.invoke(args=["transfers", "force-post", request_id, "--operator", "dana"])
    assert no_reason.exit_code != 0
    done = runner.invoke(args=["transfers", "force-post", request_id, "--operator", "dana", "--reason", "applied"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["status"] == "success"
    table = runner.invoke(args=["transfers", "reconcile", "--user-id", "32"])
    assert table.exit_code == 0 and "0 mismatch(es)" in table.output and request_id in table.output
    shown = json.loads(runner.invoke(args=["transfers", "show", request_id]).output)
    assert shown["audit"][-1]["actor"].startswith("operator:dana (cli: ")


def test_a_deposit_needs_a_key_and_a_reason_and_a_keyless_retry_cannot_credit_twice(client: FlaskClient) -> None:
    body = {"user_id": 41, "asset": "USDT", "amount": "5", "reason": "wire 42"}
    for _ in range(2):
        keyless = client.post("/api/v1/admin/deposits", json=body, headers=bearer(1, operator=True))
        assert (keyless.status_code, json_of(keyless)["error"]["code"]) == (400, "INVALID_REQUEST")
    no_reason = client.post(
        "/api/v1/admin/deposits",
        json={k: v for k, v in body.items() if k != "reason"},
        headers={**bearer(1, operator=True), "Idempotency-Key": "dep-41"},
    )
    assert no_reason.status_code == 400
    balances = json_of(client.get("/api/v1/user/balances", headers=bearer(41)))["balances"]
    assert all(b["available"] == "0.00000000" for b in balances if b["asset"] == "USDT") and balances
    done = client.post(
        "/api/v1/admin/deposits", json=body, headers={**bearer(7, operator=True), "Idempotency-Key": "dep-41"}
    )
    assert done.status_code == 201
    audit = client.application.extensions["internal_transfer"].store.get_deposit(int(json_of(done)["deposit_id"]))
    assert (audit.operator, audit.reason) == ("operator:7", "wire 42")
