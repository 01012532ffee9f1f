"""Bad input of every kind gets a clean, stable answer in the one error shape (issue 9)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app.domain.errors import DomainError
from tests.e2e.conftest import bearer, deposit, transfer_body

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
