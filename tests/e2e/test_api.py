"""The HTTP contract on the embedded backends, through Flask's test client."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from app.api.health import READINESS_CACHE_SECONDS
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import bearer, deposit, transfer_body

TRANSFERS = "/api/v1/user/internal_transfer"
OTHER_SECRET = "another-secret-of-32-bytes-or-more"


def wait_for_status(client: FlaskClient, user_id: int, request_id: str, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        body = client.get(f"{TRANSFERS}/{request_id}", headers=bearer(user_id)).json
        assert body is not None
        if body["status"] == wanted or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def error_code(response: Any) -> str:
    return response.json["error"]["code"]


def test_transfer_is_accepted_then_settles(client: FlaskClient) -> None:
    deposit(client, 3001)
    response = client.post(
        TRANSFERS,
        json=transfer_body(to_account={"account_type": "spot", "user_id": 3001, "asset": "USDT"}),
        headers=bearer(3001),
    )
    assert response.status_code == 202
    body = response.json
    assert body["status"] == "pending" and body["amount"] == "100.00000000"
    assert body["from_account"] == {"account_type": "funding", "asset": "USDT", "user_id": 3001}
    assert response.headers["Location"] == f"{TRANSFERS}/{body['request_id']}"
    assert body["created_at"].endswith("Z")
    assert wait_for_status(client, 3001, body["request_id"], "success")["status"] == "success"
    balances = client.get("/api/v1/user/balances", headers=bearer(3001)).json["balances"]
    usdt = {b["account_type"]: b for b in balances if b["asset"] == "USDT"}
    assert usdt["funding"] == {
        "asset": "USDT",
        "account_type": "funding",
        "available": "900.00000000",
        "locked": "0.00000000",
    }
    assert usdt["spot"]["available"] == "100.00000000"


def test_amount_is_normalised_to_the_asset_decimals(client: FlaskClient) -> None:
    deposit(client, 5)
    response = client.post(TRANSFERS, json=transfer_body("1.5"), headers=bearer(5))
    assert response.json["amount"] == "1.50000000"


def test_engine_rejection_releases_funds(client: FlaskClient) -> None:
    deposit(client, 7)
    response = client.post(TRANSFERS, json=transfer_body("0.00000777"), headers=bearer(7))
    body = wait_for_status(client, 7, response.json["request_id"], "failed")
    assert body["failure_reason"] == "REJECTED_BY_ENGINE"
    funding = next(
        b
        for b in client.get("/api/v1/user/balances", headers=bearer(7)).json["balances"]
        if b["asset"] == "USDT" and b["account_type"] == "funding"
    )
    assert funding == {"asset": "USDT", "account_type": "funding", "available": "1000.00000000", "locked": "0.00000000"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"from_account": {"account_type": "funding", "asset": "USDT"}}, "INVALID_REQUEST"),
        (transfer_body(extra="x"), "INVALID_REQUEST"),
        (transfer_body(from_account={"account_type": "funding", "asset": 5}), "INVALID_REQUEST"),
        (transfer_body(from_account={"account_type": "funding", "asset": "USDT", "user_id": "9"}), "INVALID_REQUEST"),
        (transfer_body(100), "INVALID_AMOUNT"),
        (transfer_body("-1"), "INVALID_AMOUNT"),
        (transfer_body("+1"), "INVALID_AMOUNT"),
        (transfer_body("1e2"), "INVALID_AMOUNT"),
        (transfer_body(" "), "INVALID_AMOUNT"),
        (transfer_body("0"), "INVALID_AMOUNT"),
        (transfer_body("0.000000001"), "INVALID_PRECISION"),
        (transfer_body("100000000.00000001"), "AMOUNT_TOO_LARGE"),
        (transfer_body("184467440737.09551617"), "AMOUNT_TOO_LARGE"),
        (
            transfer_body(
                from_account={"account_type": "funding", "asset": "DOGE"},
                to_account={"account_type": "spot", "asset": "DOGE"},
            ),
            "UNSUPPORTED_ASSET",
        ),
        (transfer_body(to_account={"account_type": "spot", "asset": "BTC"}), "ASSET_MISMATCH"),
        (transfer_body(to_account={"account_type": "margin", "asset": "USDT"}), "INVALID_ACCOUNT_TYPE"),
        (transfer_body(to_account={"account_type": "funding", "asset": "USDT"}), "SAME_ACCOUNT"),
    ],
)
def test_bad_input_gets_a_stable_code_and_400(client: FlaskClient, body: dict[str, object], code: str) -> None:
    response = client.post(TRANSFERS, json=body, headers=bearer(11))
    assert response.status_code == 400
    assert error_code(response) == code
    assert set(response.json["error"]) == {"code", "message", "details"}


def test_amount_too_small(client: FlaskClient, app: Any) -> None:
    from dataclasses import replace

    catalog = app.extensions["internal_transfer"].catalog
    usdt = catalog.get("USDT")
    catalog._by_symbol["USDT"] = replace(usdt, min_units=100)
    response = client.post(TRANSFERS, json=transfer_body("0.00000099"), headers=bearer(11))
    assert (response.status_code, error_code(response)) == (400, "AMOUNT_TOO_SMALL")


def test_malformed_json_is_invalid_request(client: FlaskClient) -> None:
    response = client.post(TRANSFERS, data="{nope", content_type="application/json", headers=bearer(11))
    assert (response.status_code, error_code(response)) == (400, "INVALID_REQUEST")


def test_bad_idempotency_key_is_invalid_request(client: FlaskClient) -> None:
    headers = {**bearer(11), "Idempotency-Key": "no spaces allowed"}
    response = client.post(TRANSFERS, json=transfer_body(), headers=headers)
    assert (response.status_code, error_code(response)) == (400, "INVALID_REQUEST")
    headers["Idempotency-Key"] = "x" * 65
    assert client.post(TRANSFERS, json=transfer_body(), headers=headers).status_code == 400


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": f"Bearer {jwt.encode({'sub': '5', 'exp': 1}, TEST_JWT_SECRET, algorithm='HS256')}"},
        {"Authorization": f"Bearer {jwt.encode({'sub': '5', 'exp': 2**40}, OTHER_SECRET, algorithm='HS256')}"},
        {"Authorization": f"Bearer {jwt.encode({'sub': '5'}, TEST_JWT_SECRET, algorithm='HS256')}"},
    ],
)
def test_missing_bad_or_expired_tokens_are_401(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.post(TRANSFERS, json=transfer_body(), headers=headers)
    assert (response.status_code, error_code(response)) == (401, "UNAUTHENTICATED")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_someone_elses_account_is_403(client: FlaskClient) -> None:
    deposit(client, 12)
    body = transfer_body(from_account={"account_type": "funding", "asset": "USDT", "user_id": 12})
    response = client.post(TRANSFERS, json=body, headers=bearer(13))
    assert (response.status_code, error_code(response)) == (403, "PERMISSION_DENIED")


def test_admin_routes_need_an_operator(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/admin/deposits",
        json={"user_id": 5, "asset": "USDT", "amount": "1", "reason": "test"},
        headers={**bearer(5), "Idempotency-Key": "dep-5"},
    )
    assert (response.status_code, error_code(response)) == (403, "PERMISSION_DENIED")


def test_someone_elses_transfer_is_404_like_a_missing_one(client: FlaskClient) -> None:
    deposit(client, 14)
    request_id = client.post(TRANSFERS, json=transfer_body(), headers=bearer(14)).json["request_id"]
    for path in (f"{TRANSFERS}/{request_id}", f"{TRANSFERS}/12345"):
        response = client.get(path, headers=bearer(15))
        assert (response.status_code, error_code(response)) == (404, "NOT_FOUND")


def test_idempotent_replay_answers_202_again_and_key_reuse_is_409(client: FlaskClient) -> None:
    deposit(client, 16)
    headers = {**bearer(16), "Idempotency-Key": "order-1"}
    first = client.post(TRANSFERS, json=transfer_body("1"), headers=headers)
    again = client.post(TRANSFERS, json=transfer_body("1"), headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["Location"] == first.headers["Location"]
    assert again.json["request_id"] == first.json["request_id"]
    reused = client.post(TRANSFERS, json=transfer_body("2"), headers=headers)
    assert (reused.status_code, error_code(reused)) == (409, "IDEMPOTENCY_KEY_REUSED")
    history = client.get(f"{TRANSFERS}/history", headers=bearer(16)).json
    assert len(history["items"]) == 1


def test_insufficient_balance_is_422_and_recorded_failed(client: FlaskClient) -> None:
    deposit(client, 17, "5")
    response = client.post(TRANSFERS, json=transfer_body("6"), headers=bearer(17))
    assert (response.status_code, error_code(response)) == (422, "INSUFFICIENT_BALANCE")
    request_id = response.json["error"]["details"]["request_id"]
    stored = client.get(f"{TRANSFERS}/{request_id}", headers=bearer(17)).json
    assert stored["status"] == "failed" and stored["failure_reason"] == "INSUFFICIENT_BALANCE"


def test_dependency_outage_is_503_with_retry_after(client: FlaskClient, app: Any) -> None:
    from app.ports.errors import DependencyUnavailable

    deposit(client, 18)
    ledger = app.extensions["internal_transfer"].ledger

    def down(*_: object) -> None:
        raise DependencyUnavailable("ledger", "timed out")

    ledger.lock = down
    response = client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(18))
    assert (response.status_code, error_code(response)) == (503, "DEPENDENCY_UNAVAILABLE")
    assert response.headers["Retry-After"]
    assert response.json["error"]["details"]["backend"] == "ledger"
    # The transfer was recorded: it stays visible, for the scanner to resolve.
    request_id = response.json["error"]["details"]["request_id"]
    assert client.get(f"{TRANSFERS}/{request_id}", headers=bearer(18)).json["status"] == "requesting"


def test_internal_errors_never_leak_a_stack_trace(client: FlaskClient, app: Any) -> None:
    store = app.extensions["internal_transfer"].store

    def broken(*_: object) -> None:
        raise ZeroDivisionError("secret internals")

    store.history = broken
    response = client.get(f"{TRANSFERS}/history", headers=bearer(19))
    assert response.status_code == 500
    assert response.json == {
        "error": {"code": "INTERNAL_ERROR", "message": "an internal error occurred", "details": {}}
    }
    assert b"Traceback" not in response.data and b"secret" not in response.data


def test_history_pages_newest_first_with_filters(client: FlaskClient) -> None:
    deposit(client, 20)
    ids = [client.post(TRANSFERS, json=transfer_body("1"), headers=bearer(20)).json["request_id"] for _ in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"{TRANSFERS}/history?{query}", headers=bearer(20)).json
        seen.extend(item["request_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, key=int, reverse=True)
    assert client.get(f"{TRANSFERS}/history?asset=BTC", headers=bearer(20)).json["items"] == []
    default = client.get(f"{TRANSFERS}/history", headers=bearer(20)).json
    assert len(default["items"]) == 7


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "status=done", "cursor=@@", "asset=DOGE"])
def test_history_refuses_bad_queries(client: FlaskClient, query: str) -> None:
    response = client.get(f"{TRANSFERS}/history?{query}", headers=bearer(21))
    assert response.status_code == 400
    assert error_code(response) in ("INVALID_REQUEST", "UNSUPPORTED_ASSET")


def test_assets_come_from_the_config(client: FlaskClient) -> None:
    assets = {a["symbol"]: a for a in client.get("/api/v1/assets").json["assets"]}
    assert set(assets) == {"BTC", "ETH", "USDT"}
    assert assets["BTC"] == {"symbol": "BTC", "decimals": 8, "min_amount": "0.00000001", "max_amount": "10000.00000000"}


def test_deposit_is_idempotent_under_a_key(client: FlaskClient) -> None:
    headers = {**bearer(1, operator=True), "Idempotency-Key": "dep-1"}
    body = {"user_id": 22, "asset": "BTC", "amount": "1.5", "reason": "ticket 9"}
    assert client.post("/api/v1/admin/deposits", json=body, headers=headers).status_code == 201
    assert client.post("/api/v1/admin/deposits", json=body, headers=headers).status_code == 201
    conflict = client.post("/api/v1/admin/deposits", json={**body, "amount": "2"}, headers=headers)
    assert (conflict.status_code, error_code(conflict)) == (409, "IDEMPOTENCY_KEY_REUSED")
    btc = next(
        b
        for b in client.get("/api/v1/user/balances", headers=bearer(22)).json["balances"]
        if b["asset"] == "BTC" and b["account_type"] == "funding"
    )
    assert btc["available"] == "1.50000000"


def test_health_readiness_and_openapi(client: FlaskClient, app: Any) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    spec = client.get("/openapi.json").json
    assert "/api/v1/user/internal_transfer" in spec["paths"]
    assert client.get("/docs").status_code == 200
    from app.ports.errors import DependencyUnavailable

    def down() -> None:
        raise DependencyUnavailable("store", "no hosts")

    app.extensions["internal_transfer"].store.ping = down
    time.sleep(READINESS_CACHE_SECONDS + 0.1)  # the last answer is reused for this long
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json["down"] == ["store"]


def test_a_flood_of_readiness_probes_costs_the_backends_a_few_pings(client: FlaskClient, app: Any) -> None:
    # No token and no rate limit: each probe used to ping every backend, with waits of up to 2 s.
    services = app.extensions["internal_transfer"]
    pings: Counter[str] = Counter()
    for name in ("store", "ledger", "bus"):
        backend = getattr(services, name)
        monkeypatched = backend.ping

        def counted(name: str = name, ping: Any = monkeypatched) -> None:
            pings[name] += 1
            ping()

        backend.ping = counted
    started = time.monotonic()
    answers = Counter(client.get("/readyz").status_code for _ in range(1000))
    elapsed = time.monotonic() - started
    assert answers == {200: 1000}
    most = int(elapsed / READINESS_CACHE_SECONDS) + 2
    assert set(pings) == {"store", "ledger", "bus"}
    assert max(pings.values()) <= most, (pings, elapsed)
