"""Token checks over HTTP: each refused token is a 401 with the one error shape."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET
from tests.e2e.conftest import bearer, json_of

CENTURY = 100 * 365 * 86_400


def good_claims() -> dict[str, Any]:
    # Taken at each call: a collection-time clock expires in a long run.
    now = int(time.time())
    return {
        "sub": "3001",
        "role": "user",
        "iss": "internal-transfer",
        "aud": "internal-transfer",
        "iat": now,
        "exp": now + 600,
    }


def header(key: str = TEST_JWT_SECRET, **claims: Any) -> dict[str, str]:
    body = {k: v for k, v in {**good_claims(), **claims}.items() if v is not None}
    return {"Authorization": f"Bearer {jwt.encode(body, key, algorithm='HS256')}"}


def test_a_good_token_is_accepted(client: FlaskClient) -> None:
    assert client.get("/api/v1/user/balances", headers=header()).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) + CENTURY},  # a century
        {"sub": "03001"},
        {"iss": "elsewhere"},
        {"aud": None},
        {"iat": None},
    ],
    ids=repr,
)
def test_a_bad_user_token_is_401(client: FlaskClient, claims: dict[str, Any]) -> None:
    response = client.get("/api/v1/user/balances", headers=header(**claims))
    assert response.status_code == 401
    assert json_of(response)["error"]["code"] == "UNAUTHENTICATED"


def test_only_the_operator_key_makes_an_operator(client: FlaskClient) -> None:
    forged = client.get("/api/v1/admin/transfers/stuck", headers=header(role="operator"))
    assert forged.status_code == 401
    real = client.get("/api/v1/admin/transfers/stuck", headers=header(TEST_OPERATOR_JWT_SECRET, role="operator"))
    assert real.status_code == 200
    assert client.get("/api/v1/admin/transfers/stuck", headers=bearer(1, operator=True)).status_code == 200
