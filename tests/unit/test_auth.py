"""What a bearer token must satisfy, and the keys and addresses the settings allow."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import jwt
import pytest

from app.api.auth import Principal, issue_token, verify_token
from app.config import DEV_JWT_SECRET, Settings
from app.domain.errors import Unauthenticated, ValidationFailed
from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET, TEST_TOKEN_POLICY

POLICY = TEST_TOKEN_POLICY


def minted(key: str = TEST_JWT_SECRET, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "3001",
        "role": "user",
        "iss": POLICY.issuer,
        "aud": POLICY.audience,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="HS256")


def test_a_well_formed_token_names_its_user() -> None:
    assert verify_token(POLICY, minted()) == Principal(3001, "user")
    assert verify_token(POLICY, minted(TEST_OPERATOR_JWT_SECRET, role="operator")) == Principal(3001, "operator")


def test_issued_tokens_verify() -> None:
    assert verify_token(POLICY, issue_token(POLICY, 42)) == Principal(42, "user")
    assert verify_token(POLICY, issue_token(POLICY, 42, operator=True)) == Principal(42, "operator")


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "someone-else"},
        {"iss": None},
        {"aud": "another-service"},
        {"aud": None},
        {"iat": None},
        {"exp": None},
        {"sub": None},
        {"sub": "03001"},
        {"sub": "+3001"},
        {"sub": " 3001"},
        {"sub": 3001},
        {"sub": "0"},
        {"role": "admin"},
    ],
    ids=repr,
)
def test_a_token_failing_any_check_is_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(Unauthenticated):
        verify_token(POLICY, minted(**claims))


def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    now = int(time.time())
    century = 100 * 365 * 86_400
    with pytest.raises(Unauthenticated, match="longer than allowed"):
        verify_token(POLICY, minted(iat=now, exp=now + century))
    # Nor does an issue time moved to make the lifetime look short.
    with pytest.raises(Unauthenticated):
        verify_token(POLICY, minted(iat=now + century - 600, exp=now + century))
    with pytest.raises(Unauthenticated, match="longer than allowed"):
        verify_token(POLICY, minted(iat=now - century, exp=now + 600))
    assert verify_token(POLICY, minted(iat=now, exp=now + POLICY.max_ttl_seconds)).user_id == 3001


def test_the_user_key_cannot_mint_an_operator_token() -> None:
    with pytest.raises(Unauthenticated):
        verify_token(POLICY, minted(TEST_JWT_SECRET, role="operator"))
    # Nor the operator key a user token: each role has exactly one key.
    with pytest.raises(Unauthenticated):
        verify_token(POLICY, minted(TEST_OPERATOR_JWT_SECRET, role="user"))


def test_issue_refuses_a_lifetime_out_of_bounds() -> None:
    for ttl in (-5, 0, POLICY.max_ttl_seconds + 1):
        with pytest.raises(ValidationFailed):
            issue_token(POLICY, 1, ttl_seconds=ttl)
    shorter = replace(POLICY, max_ttl_seconds=60)
    with pytest.raises(ValidationFailed):
        issue_token(shorter, 1, ttl_seconds=61)


def embedded(**overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "store_url": "sqlite:///x",
        "ledger_url": "embedded:///y",
        "bus_url": "inprocess://",
        "jwt_secret": "",
        "operator_jwt_secret": "",
    }
    fields.update(overrides)
    return Settings(**fields)


def test_both_keys_are_required_and_must_differ() -> None:
    with pytest.raises(RuntimeError, match="OPERATOR_JWT_SECRET must be set"):
        embedded(jwt_secret=TEST_JWT_SECRET).effective_secrets()
    with pytest.raises(RuntimeError, match="JWT_SECRET must be set"):
        embedded(operator_jwt_secret=TEST_OPERATOR_JWT_SECRET).effective_secrets()
    with pytest.raises(RuntimeError, match="must differ"):
        embedded(jwt_secret=TEST_JWT_SECRET, operator_jwt_secret=TEST_JWT_SECRET).effective_secrets()
    with pytest.raises(RuntimeError, match="at least 32"):
        embedded(jwt_secret=TEST_JWT_SECRET, operator_jwt_secret="short").effective_secrets()
    keys = embedded(jwt_secret=TEST_JWT_SECRET, operator_jwt_secret=TEST_OPERATOR_JWT_SECRET).effective_secrets()
    assert keys == (TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET)


def test_the_dev_secrets_differ_per_role() -> None:
    user_key, operator_key = embedded().effective_secrets()
    assert user_key == DEV_JWT_SECRET and operator_key != user_key


@pytest.mark.parametrize(
    "bind",
    # A unix socket (or an inherited fd) is as public as the proxy in front of it.
    ["0.0.0.0:8000", "[::]:8000", "10.1.2.3:80", "example.org:80", "0.0.0.0", "unix:/run/web.sock", "fd://3"],  # noqa: S104
)
def test_the_dev_secrets_refuse_a_public_listener(bind: str) -> None:
    with pytest.raises(RuntimeError, match="refusing to listen"):
        embedded().check_listen_addresses(["127.0.0.1:8000", bind])


@pytest.mark.parametrize("bind", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "127.0.0.2"])
def test_the_dev_secrets_allow_loopback(bind: str) -> None:
    embedded().check_listen_addresses([bind])


def test_real_secrets_may_listen_anywhere() -> None:
    settings = embedded(jwt_secret=TEST_JWT_SECRET, operator_jwt_secret=TEST_OPERATOR_JWT_SECRET)
    settings.check_listen_addresses(["0.0.0.0:8000"])
