"""Atomic batch transfers over HTTP, on the embedded ledger and on TigerBeetle (when TIGERBEETLE_BIN is set)."""

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
from app.config import ReferenceEngineSettings, Settings
from app.factory import create_app
from consumers.worker import ensure_background_workers
from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET, random_user_id
from tests.e2e.conftest import REJECT_SUFFIX, bearer, deposit, json_of, transfer_body

BATCH = "/api/v1/user/internal_transfer/batch"
TRANSFERS = "/api/v1/user/internal_transfer"


@pytest.fixture(params=["embedded", "tigerbeetle"])
def batch_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    settings = Settings(
        store_url=f"sqlite:///{tmp_path}/store.db",
        ledger_url=f"embedded:///{tmp_path}/ledger.db",
        bus_url="inprocess://",
        jwt_secret=TEST_JWT_SECRET,
        operator_jwt_secret=TEST_OPERATOR_JWT_SECRET,
        scanner_interval_seconds=0.5,
        # The race below sends many requests of one user at once; rate limits have their own tests.
        transfer_rate_limit="1000000 per second",
        read_rate_limit="1000000 per second",
    )
    ledger = request.getfixturevalue("tigerbeetle_ledger") if request.param == "tigerbeetle" else None
    flask_app = create_app(container=build(settings, ledger=ledger))
    ensure_background_workers(flask_app, ReferenceEngineSettings(reject_suffix=REJECT_SUFFIX))
    yield flask_app
    flask_app.extensions["background_workers"].shutdown()
    flask_app.extensions["internal_transfer"].close()


@pytest.fixture
def client(batch_app: Flask) -> FlaskClient:
    return batch_app.test_client()


def leg(amount: str, asset: str = "USDT", from_type: str = "funding") -> dict[str, object]:
    to_type = "spot" if from_type == "funding" else "funding"
    return transfer_body(
        amount,
        from_account={"account_type": from_type, "asset": asset},
        to_account={"account_type": to_type, "asset": asset},
    )


def wait_for_batch(client: FlaskClient, user_id: int, batch_id: str, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        body: dict[str, Any] = json_of(client.get(f"{BATCH}/{batch_id}", headers=bearer(user_id)))
        if body["status"] == wanted or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def balances(client: FlaskClient, user_id: int) -> dict[tuple[str, str], tuple[str, str]]:
    body = json_of(client.get("/api/v1/user/balances", headers=bearer(user_id)))
    return {(b["asset"], b["account_type"]): (b["available"], b["locked"]) for b in body["balances"]}


def test_a_batch_across_assets_settles_as_a_whole_and_every_leg_is_a_transfer(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "1000")
    deposit(client, user_id, "2", asset="BTC")
    body = {"legs": [leg("100"), leg("0.5", asset="BTC"), leg("50")]}
    response = client.post(BATCH, json=body, headers=bearer(user_id))
    assert response.status_code == 202, response.json
    accepted = json_of(response)
    assert accepted["status"] == "pending"
    assert response.headers["Location"].endswith(f"{BATCH}/{accepted['batch_id']}")
    assert [entry["amount"] for entry in accepted["legs"]] == ["100.00000000", "0.50000000", "50.00000000"]
    done = wait_for_batch(client, user_id, accepted["batch_id"], "success")
    assert done["status"] == "success"
    assert {entry["status"] for entry in done["legs"]} == {"success"}
    # Every leg is an ordinary transfer: by id, and in history.
    ids = [entry["request_id"] for entry in done["legs"]]
    for request_id in ids:
        assert json_of(client.get(f"{TRANSFERS}/{request_id}", headers=bearer(user_id)))["status"] == "success"
    history = json_of(client.get(f"{TRANSFERS}/history", headers=bearer(user_id)))
    assert set(ids) <= {item["request_id"] for item in history["items"]}
    funds = balances(client, user_id)
    assert funds[("USDT", "spot")][0] == "150.00000000"
    assert funds[("BTC", "spot")][0] == "0.50000000"
    # Another user sees neither the batch nor its legs.
    assert client.get(f"{BATCH}/{accepted['batch_id']}", headers=bearer(random_user_id())).status_code == 404


def test_a_leg_short_of_balance_fails_the_whole_batch_and_is_named(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "100")
    body = {"legs": [leg("60"), leg("30"), leg("20")]}
    headers = {**bearer(user_id), "Idempotency-Key": "batch-short-1"}
    response = client.post(BATCH, json=body, headers=headers)
    assert response.status_code == 422
    error = json_of(response)["error"]
    assert error["code"] == "INSUFFICIENT_BALANCE"
    assert error["details"]["leg"] == 2
    batch_id = error["details"]["batch_id"]
    # Nothing moved or stays locked.
    assert balances(client, user_id)[("USDT", "funding")] == ("100.00000000", "0.00000000")
    view = json_of(client.get(f"{BATCH}/{batch_id}", headers=bearer(user_id)))
    assert view["status"] == "failed"
    assert [entry["failure_reason"] for entry in view["legs"]] == [
        "BATCH_FAILED",
        "BATCH_FAILED",
        "INSUFFICIENT_BALANCE",
    ]
    # The replay answers the same 422, naming the same leg.
    replay = client.post(BATCH, json=body, headers=headers)
    assert replay.status_code == 422
    assert json_of(replay)["error"]["details"]["leg"] == 2
    assert json_of(replay)["error"]["details"]["batch_id"] == batch_id


def test_a_replayed_key_answers_the_same_batch_and_another_body_is_a_conflict(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "1000")
    body = {"legs": [leg("10"), leg("20")]}
    headers = {**bearer(user_id), "Idempotency-Key": "batch-replay-1"}
    first = json_of(client.post(BATCH, json=body, headers=headers))
    again = client.post(BATCH, json=body, headers=headers)
    assert again.status_code == 202
    assert json_of(again)["batch_id"] == first["batch_id"]
    other = client.post(BATCH, json={"legs": [leg("10"), leg("21")]}, headers=headers)
    assert other.status_code == 409
    assert json_of(other)["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # A single transfer under the batch's key is a reuse too.
    single = client.post(TRANSFERS, json=transfer_body("10"), headers=headers)
    assert single.status_code == 409
    wait_for_batch(client, user_id, first["batch_id"], "success")
    assert balances(client, user_id)[("USDT", "spot")][0] == "30.00000000"


def test_the_engine_rejects_a_batch_as_a_whole(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "1000")
    # The reference engine rejects amounts ending in 777 units: one leg is enough.
    body = {"legs": [leg("10"), leg("0.00000777")]}
    accepted = json_of(client.post(BATCH, json=body, headers=bearer(user_id)))
    done = wait_for_batch(client, user_id, accepted["batch_id"], "failed")
    assert [entry["failure_reason"] for entry in done["legs"]] == ["REJECTED_BY_ENGINE"] * 2
    assert balances(client, user_id)[("USDT", "funding")] == ("1000.00000000", "0.00000000")


def test_an_operator_void_by_the_batch_id_acts_on_every_leg(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "1000")
    accepted = json_of(client.post(BATCH, json={"legs": [leg("10"), leg("20")]}, headers=bearer(user_id)))
    # The engine answers in the background: the void races its confirmation, and one wins for every leg.
    response = client.post(
        f"/api/v1/admin/transfers/{accepted['batch_id']}/void",
        json={"reason": "customer asked"},
        headers=bearer(1, operator=True),
    )
    assert response.status_code in (200, 409), response.json
    # 200 answers what the ledger decided (a void that lost to the post answers `success`, with an alert);
    # 409: the engine's confirmation was recorded first.
    wanted = json_of(response)["status"] if response.status_code == 200 else "success"
    assert wanted in ("failed", "success")
    done = wait_for_batch(client, user_id, accepted["batch_id"], wanted)
    assert [entry["status"] for entry in done["legs"]] == [wanted, wanted]
    if wanted == "failed":
        assert [entry["failure_reason"] for entry in done["legs"]] == ["VOIDED_BY_OPERATOR"] * 2
    spot = balances(client, user_id)[("USDT", "spot")]
    assert spot == (("0.00000000" if wanted == "failed" else "30.00000000"), "0.00000000")


def test_invalid_batches_are_refused_with_stable_codes(client: FlaskClient) -> None:
    user_id = random_user_id()
    assert client.post(BATCH, json={"legs": [leg("1")]}, headers=bearer(user_id)).status_code == 400
    assert client.post(BATCH, json={"legs": [leg("1")] * 51}, headers=bearer(user_id)).status_code == 400
    foreign = leg("1")
    foreign["from_account"] = {"account_type": "funding", "asset": "USDT", "user_id": user_id + 1}
    response = client.post(BATCH, json={"legs": [leg("1"), foreign]}, headers=bearer(user_id))
    assert response.status_code == 403
    assert client.post(BATCH, json={"legs": [leg("1"), leg("1")]}).status_code == 401


def test_concurrent_batches_never_overspend_and_each_is_all_or_nothing(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "100")
    # 12 batches of 2 legs of 10: exactly 5 fit in 100.
    start = threading.Barrier(12)

    def submit(_: int) -> Any:
        start.wait()
        return client.post(BATCH, json={"legs": [leg("10"), leg("10")]}, headers=bearer(user_id))

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(submit, range(12)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 5 + [422] * 7
    for response in responses:
        body = json_of(response)
        batch_id = body["batch_id"] if response.status_code == 202 else body["error"]["details"]["batch_id"]
        wanted = "success" if response.status_code == 202 else "failed"
        view = wait_for_batch(client, user_id, batch_id, wanted)
        assert {entry["status"] for entry in view["legs"]} == {wanted}
    assert balances(client, user_id)[("USDT", "spot")] == ("100.00000000", "0.00000000")


def test_a_leg_past_its_daily_limit_fails_the_batch_and_is_named_with_what_remains(client: FlaskClient) -> None:
    user_id = random_user_id()
    deposit(client, user_id, "1000")
    deposit(client, user_id, "1", asset="BTC")
    override = {"asset": "USDT", "direction": "funding_to_spot", "limit": "50", "reason": "support ticket 7"}
    response = client.post(f"/api/v1/admin/users/{user_id}/limits", json=override, headers=bearer(1, operator=True))
    assert response.status_code == 201, response.json
    # 30 + 30 USDT on the same quota: each fits the limit of 50, together they do not.
    body = {"legs": [leg("0.1", asset="BTC"), leg("30"), leg("30")]}
    refused = client.post(BATCH, json=body, headers=bearer(user_id))
    assert refused.status_code == 422
    error = json_of(refused)["error"]
    assert error["code"] == "DAILY_LIMIT_EXCEEDED"
    assert (error["details"]["leg"], error["details"]["remaining"]) == (2, "50.00000000")
    funds = balances(client, user_id)
    assert funds[("USDT", "funding")] == ("1000.00000000", "0.00000000")
    assert funds[("BTC", "funding")] == ("1.00000000", "0.00000000")
    # Within the limit, the same legs go through.
    within = {"legs": [leg("0.1", asset="BTC"), leg("30"), leg("20")]}
    accepted = client.post(BATCH, json=within, headers=bearer(user_id))
    assert accepted.status_code == 202
    assert wait_for_batch(client, user_id, json_of(accepted)["batch_id"], "success")["status"] == "success"
    limits = json_of(client.get("/api/v1/user/limits", headers=bearer(user_id)))["limits"]
    usdt = next(row for row in limits if (row["asset"], row["direction"]) == ("USDT", "funding_to_spot"))
    assert (usdt["used"], usdt["remaining"]) == ("50.00000000", "0.00000000")
