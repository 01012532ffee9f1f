"""Bad input of every kind gets a clean, stable answer in the one error shape (issue 9)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app.domain.errors import DomainError
from tests.e2e.conftest import bearer, deposit, json_of, transfer_body

TRANSFERS = "/api/v1/user/internal_transfer"


def error_code(response) -> str:  # type: ignore[no-untyped-def]
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return str(body["error"]["code"])


def test_an_undeclared_error_code_is_answered_500_not_400(app: Flask) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise DomainError("no such code", code="NOT_A_DECLARED_CODE")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert error_code(response) == "INTERNAL_ERROR"


def test_an_amount_with_a_trailing_newline_is_refused(client: FlaskClient) -> None:
    deposit(client, 3001)
    response = client.post(TRANSFERS, json=transfer_body("1\n"), headers=bearer(3001))
    assert response.status_code == 400
    assert error_code(response) == "INVALID_AMOUNT"


ADMIN = "/api/v1/admin"


def test_an_amount_of_thousands_of_digits_is_a_clean_400(client: FlaskClient) -> None:
    response = client.post(TRANSFERS, json=transfer_body("9" * 5000), headers=bearer(3001))
    assert response.status_code == 400
    assert error_code(response) == "INVALID_AMOUNT"


def test_a_huge_json_integer_is_a_clean_400(client: FlaskClient) -> None:
    raw = '{"user_id": ' + "9" * 5000 + ', "asset": "USDT", "amount": "1"}'
    response = client.post(
        f"{ADMIN}/deposits",
        data=raw,
        headers={**bearer(1, operator=True), "Content-Type": "application/json", "Idempotency-Key": "k1"},
    )
    assert response.status_code == 400
    assert error_code(response) == "INVALID_REQUEST"


def test_a_deeply_nested_body_is_a_clean_400(client: FlaskClient) -> None:
    # 60,000 levels fit under the size limit and are far past the recursion limit.
    for raw in ("[" * 60_000, '{"amount": ' + "[" * 40 + "]" * 40 + "}"):
        response = client.post(TRANSFERS, data=raw, headers={**bearer(3001), "Content-Type": "application/json"})
        assert response.status_code == 400, raw[:50]
        assert error_code(response) == "INVALID_REQUEST"


def test_nan_is_not_json(client: FlaskClient) -> None:
    raw = '{"from_account": {"account_type": "funding", "asset": "USDT", "user_id": NaN}, "amount": "1"}'
    response = client.post(TRANSFERS, data=raw, headers={**bearer(3001), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_code(response) == "INVALID_REQUEST"


def test_stuck_older_than_is_bounded(client: FlaskClient) -> None:
    response = client.get(f"{ADMIN}/transfers/stuck?older_than_seconds=100000000000", headers=bearer(1, operator=True))
    assert response.status_code == 400
    assert error_code(response) == "INVALID_REQUEST"
    huge = client.get(f"{ADMIN}/transfers/stuck?older_than_seconds={'9' * 5000}", headers=bearer(1, operator=True))
    assert huge.status_code == 400


def test_an_oversized_body_is_413_before_the_token_is_even_checked(client: FlaskClient) -> None:
    raw = b"[" * (64 * 1024 + 1)
    for headers in ({}, bearer(3001)):
        response = client.post(f"{ADMIN}/deposits", data=raw, headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == 413
        assert error_code(response) == "PAYLOAD_TOO_LARGE"


def test_a_chunked_body_over_the_limit_is_413(client: FlaskClient) -> None:
    import io

    # No Content-Length: werkzeug's MAX_CONTENT_LENGTH cuts the stream while it is read.
    stream = io.BytesIO(b'{"reason": "' + b"x" * (64 * 1024) + b'"}')
    response = client.post(
        f"{ADMIN}/transfers/1/void",
        input_stream=stream,
        headers={**bearer(1, operator=True), "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # what gunicorn sets for a chunked body
    )
    assert response.status_code == 413
    assert error_code(response) == "PAYLOAD_TOO_LARGE"


def test_no_token_with_bad_input_is_401_everywhere(client: FlaskClient) -> None:
    cases = [
        ("get", f"{TRANSFERS}/history?limit=0&bogus=1", None),
        ("get", f"{TRANSFERS}/abc", None),
        ("get", "/api/v1/user/balances?x=1", None),
        ("post", TRANSFERS, {"amount": 1}),
        ("post", f"{ADMIN}/deposits", {"nonsense": True}),
        ("get", f"{ADMIN}/transfers/stuck?older_than_seconds=-1", None),
        ("get", f"{ADMIN}/transfers/abc", None),
        ("post", f"{ADMIN}/transfers/abc/void", {"x": 1}),
        ("get", f"{ADMIN}/reconcile?request_id=abc", None),
        ("get", "/api/v1/user/limits?x=1", None),
        ("post", f"{ADMIN}/users/abc/limits", {"nonsense": True}),
    ]
    for method, url, body in cases:
        response = getattr(client, method)(url, json=body)
        assert response.status_code == 401, (method, url, response.json)
        assert error_code(response) == "UNAUTHENTICATED"
        assert json_of(response)["error"]["details"] == {}, "no schema is echoed to an unauthenticated caller"


def test_a_user_token_with_a_bad_admin_body_is_403(client: FlaskClient) -> None:
    cases = [
        ("post", f"{ADMIN}/deposits", {"nonsense": True}),
        ("get", f"{ADMIN}/transfers/stuck?older_than_seconds=-1", None),
        ("post", f"{ADMIN}/transfers/abc/void", {}),
        ("get", f"{ADMIN}/reconcile?bogus=1", None),
        ("post", f"{ADMIN}/users/3001/limits", {"nonsense": True}),
        ("get", f"{ADMIN}/users/abc/limits", None),
    ]
    for method, url, body in cases:
        response = getattr(client, method)(url, json=body, headers=bearer(3001))
        assert response.status_code == 403, (method, url, response.json)
        assert error_code(response) == "PERMISSION_DENIED"


def test_the_asset_catalogue_is_public(client: FlaskClient) -> None:
    assert client.get("/api/v1/assets").status_code == 200


def test_a_body_not_declared_json_is_415(client: FlaskClient) -> None:
    import json

    raw = json.dumps(transfer_body())
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        response = client.post(TRANSFERS, data=raw, headers={**bearer(3001), **headers})
        assert response.status_code == 415, headers
        assert error_code(response) == "UNSUPPORTED_MEDIA_TYPE"
        assert "application/json" in json_of(response)["error"]["message"]
    with_charset = client.post(
        TRANSFERS, data=raw, headers={**bearer(3001), "Content-Type": "application/json; charset=utf-8"}
    )
    assert with_charset.status_code != 415


def test_an_idempotency_key_with_a_trailing_newline_is_refused(app: Flask) -> None:
    import pytest

    from app.api.inbound import idempotency_key
    from app.domain.errors import ValidationFailed

    # werkzeug's test client refuses to send a newline in a header, so the check is called directly.
    with app.test_request_context(environ_base={"HTTP_IDEMPOTENCY_KEY": "abc\n"}):
        with pytest.raises(ValidationFailed):
            idempotency_key()
    with app.test_request_context(environ_base={"HTTP_IDEMPOTENCY_KEY": "abc"}):
        assert idempotency_key() == "abc"


def test_405_names_the_allowed_methods(client: FlaskClient) -> None:
    response = client.delete(TRANSFERS, headers=bearer(3001))
    assert response.status_code == 405
    assert error_code(response) == "METHOD_NOT_ALLOWED"
    assert "POST" in response.headers["Allow"]


def test_a_replayed_key_whose_first_answer_was_422_answers_422_with_the_same_body(client: FlaskClient) -> None:
    deposit(client, 3101, "5")
    headers = {**bearer(3101), "Idempotency-Key": "too-much"}
    first = client.post(TRANSFERS, json=transfer_body("6"), headers=headers)
    again = client.post(TRANSFERS, json=transfer_body("6"), headers=headers)
    assert first.status_code == again.status_code == 422
    assert again.json == first.json
    assert error_code(again) == "INSUFFICIENT_BALANCE"


def test_user_and_admin_routes_agree_on_an_id_that_is_not_one(client: FlaskClient) -> None:
    for bad in ("abc", "0", "-1", "1.5", "9" * 19, "9" * 5000, "%C2%B2"):
        user = client.get(f"{TRANSFERS}/{bad}", headers=bearer(3001))
        admin = client.get(f"{ADMIN}/transfers/{bad}", headers=bearer(1, operator=True))
        action = client.post(f"{ADMIN}/transfers/{bad}/void", json={"reason": "test"}, headers=bearer(1, operator=True))
        for response in (user, admin, action):
            assert response.status_code == 404, (bad, response.json)
            assert error_code(response) == "NOT_FOUND"


def test_the_token_is_checked_before_the_body_is_parsed_or_its_type_judged(client: FlaskClient) -> None:
    for data, content_type in (
        ("[" * 60_000, "application/json"),
        ("{not json", "application/json"),
        ("x", "text/plain"),
    ):
        response = client.post(f"{ADMIN}/deposits", data=data, headers={"Content-Type": content_type})
        assert response.status_code == 401, (content_type, response.json)
        user = client.post(f"{ADMIN}/deposits", data=data, headers={**bearer(3001), "Content-Type": content_type})
        assert user.status_code == 403, (content_type, user.json)


def test_huge_integers_in_a_query_are_a_clean_400(client: FlaskClient) -> None:
    digits = "9" * 5000
    for url, headers in (
        (f"{ADMIN}/reconcile?request_id={digits}", bearer(1, operator=True)),
        (f"{ADMIN}/transfers/stuck?limit={digits}", bearer(1, operator=True)),
        (f"{TRANSFERS}/history?limit={digits}", bearer(3001)),
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 400, (url[:60], response.json)
        assert error_code(response) == "INVALID_REQUEST"
