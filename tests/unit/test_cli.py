"""The CLI answers every bad input with `Error: CODE: message` and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import jwt
import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskCliRunner

from app.cli import deposit, token, transfers
from app.factory import create_app
from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET, embedded_settings


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    settings = embedded_settings(
        tmp_path,
        background_workers="0",
    )
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["internal_transfer"].close()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def refused(result: Result, code: str) -> None:
    """Exit 1 with `Error: CODE: ...` and no traceback."""
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {code}: "), result.output
    assert "Traceback" not in result.output
    # click turned it into its own error: nothing escaped as an exception.
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_commands_are_module_level_groups_added_to_the_app(app: Flask) -> None:
    assert isinstance(transfers, click.Group)
    assert app.cli.get_command(None, "transfers") is transfers  # type: ignore[arg-type]
    assert app.cli.get_command(None, "deposit") is deposit  # type: ignore[arg-type]
    assert app.cli.get_command(None, "token") is token  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["transfers", "show", "1"], "NOT_FOUND"),
        (["transfers", "show", "99999999999999999999999"], "INVALID_REQUEST"),
        (["transfers", "show", "abc"], "INVALID_REQUEST"),
        (["transfers", "reconcile", "--request-id", "1"], "NOT_FOUND"),
        (["transfers", "reconcile", "--request-id", "-4"], "INVALID_REQUEST"),
        (["transfers", "reconcile", "--user-id", "99999999999999999999999"], "INVALID_REQUEST"),
        (["transfers", "void", "99999999999999999999999", "--reason", "r", "--operator", "o"], "INVALID_REQUEST"),
        (["transfers", "void", "5", "--reason", "r", "--operator", "o"], "NOT_FOUND"),
        (["transfers", "stuck", "--older-than", "100000000000"], "INVALID_REQUEST"),
        (["transfers", "stuck", "--older-than", str(10**30)], "INVALID_REQUEST"),
        (["transfers", "stuck", "--older-than", "-1"], "INVALID_REQUEST"),
        (["transfers", "stuck", "--limit", "0"], "INVALID_REQUEST"),
        (["transfers", "stuck", "--limit", "abc"], "INVALID_REQUEST"),
        (["transfers", "stuck", "--older-than", "abc"], "INVALID_REQUEST"),
        (["transfers", "stuck", "--older-than", "9" * 5000], "INVALID_REQUEST"),
        (["token", "3001", "--ttl", "abc"], "INVALID_REQUEST"),
        (["token", "3001", "--ttl", "-5"], "INVALID_REQUEST"),
        (["token", "3001", "--ttl", "0"], "INVALID_REQUEST"),
        (["token", "3001", "--ttl", str(100 * 365 * 86_400)], "INVALID_REQUEST"),
        (["token", "0"], "INVALID_REQUEST"),
        (["token", "99999999999999999999999"], "INVALID_REQUEST"),
    ],
)
def test_bad_input_gets_a_code_and_no_traceback(runner: FlaskCliRunner, args: list[str], code: str) -> None:
    refused(runner.invoke(args=args), code)


DEPOSIT = ["deposit", "3001", "USDT", "1", "--idempotency-key", "k-1", "--reason", "ticket 9", "--operator", "ann"]


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("0", "INVALID_AMOUNT"),
        ("abc", "INVALID_AMOUNT"),
        ("1e3", "INVALID_AMOUNT"),
        ("1.123456789", "INVALID_PRECISION"),
    ],
)
def test_deposit_refuses_bad_amounts(runner: FlaskCliRunner, amount: str, code: str) -> None:
    refused(runner.invoke(args=[*DEPOSIT[:3], amount, *DEPOSIT[4:]]), code)


def test_deposit_refuses_an_unknown_asset(runner: FlaskCliRunner) -> None:
    refused(runner.invoke(args=[DEPOSIT[0], DEPOSIT[1], "XXX", *DEPOSIT[3:]]), "UNSUPPORTED_ASSET")


@pytest.mark.parametrize("missing", ["--idempotency-key", "--reason", "--operator"])
def test_deposit_needs_a_key_a_reason_and_an_operator(runner: FlaskCliRunner, missing: str) -> None:
    at = DEPOSIT.index(missing)
    result = runner.invoke(args=DEPOSIT[:at] + DEPOSIT[at + 2 :])
    assert result.exit_code == 2 and f"Missing option '{missing}'" in result.output


def test_deposit_refuses_a_blank_reason(runner: FlaskCliRunner) -> None:
    at = DEPOSIT.index("--reason") + 1
    refused(runner.invoke(args=[*DEPOSIT[:at], "  ", *DEPOSIT[at + 1 :]]), "INVALID_REQUEST")


def test_deposit_credits_once_per_key_and_is_audited(runner: FlaskCliRunner, app: Flask) -> None:
    first = runner.invoke(args=DEPOSIT)
    again = runner.invoke(args=DEPOSIT)
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert first.output == again.output and "deposited 1.00000000 USDT to user 3001" in first.output
    services = app.extensions["internal_transfer"]
    funding = [b for b in services.accounts.balances(3001) if b.asset.symbol == "USDT" and b.available]
    assert [b.available for b in funding] == [10**8]
    deposit_id = int(first.output.rsplit("deposit ", 1)[1].rstrip(")\n"))
    audit = services.store.get_deposit(deposit_id)
    assert audit is not None and (audit.operator, audit.reason) == ("operator:ann", "ticket 9")
    other = runner.invoke(args=[*DEPOSIT[:3], "2", *DEPOSIT[4:]])
    refused(other, "IDEMPOTENCY_KEY_REUSED")


def test_token_is_signed_with_the_key_of_its_role(runner: FlaskCliRunner) -> None:
    user = runner.invoke(args=["token", "3001"]).output.strip()
    operator = runner.invoke(args=["token", "7", "--admin", "--ttl", "60"]).output.strip()
    claims = jwt.decode(user, TEST_JWT_SECRET, algorithms=["HS256"], audience="internal-transfer")
    assert (claims["sub"], claims["role"], claims["iss"], claims["exp"] - claims["iat"]) == (
        "3001",
        "user",
        "internal-transfer",
        3600,
    )
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(operator, TEST_JWT_SECRET, algorithms=["HS256"], audience="internal-transfer")
    claims = jwt.decode(operator, TEST_OPERATOR_JWT_SECRET, algorithms=["HS256"], audience="internal-transfer")
    assert (claims["role"], claims["exp"] - claims["iat"]) == ("operator", 60)


def test_stuck_lists_with_good_input(runner: FlaskCliRunner) -> None:
    listed = runner.invoke(args=["transfers", "stuck", "--older-than", "60", "--limit", "5"])
    assert listed.exit_code == 0, listed.output
    assert "0 transfer(s)" in listed.output


def test_show_prints_the_transfer_with_its_audit(runner: FlaskCliRunner, app: Flask) -> None:
    runner.invoke(args=DEPOSIT)
    services = app.extensions["internal_transfer"]
    from app.domain.transfer import AccountType, TransferCommand

    command = TransferCommand(3001, "USDT", AccountType.FUNDING, AccountType.SPOT, 10)
    request_id = services.submit.transfer(command).transfer.request_id
    shown = runner.invoke(args=["transfers", "show", str(request_id)])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["transfer"]["request_id"] == str(request_id)
    assert [e["actor"] for e in report["audit"]][:2] == ["api", "api"]


def test_operator_commands_take_a_batch_id_and_act_on_every_leg(runner: FlaskCliRunner, app: Flask) -> None:
    runner.invoke(args=DEPOSIT)
    services = app.extensions["internal_transfer"]
    from app.domain.batch import BatchCommand
    from app.domain.transfer import AccountType, TransferCommand

    legs = tuple(TransferCommand(3001, "USDT", AccountType.FUNDING, AccountType.SPOT, n) for n in (10, 20))
    view = services.submit.batch(BatchCommand(3001, legs)).view
    batch_id = str(view.batch.batch_id)
    checked = runner.invoke(args=["transfers", "reconcile", "--request-id", batch_id, "--json"])
    assert checked.exit_code == 0, checked.output
    rows = json.loads(checked.output)["rows"]
    assert [row["request_id"] for row in rows] == [str(i) for i in view.batch.request_ids]
    voided = runner.invoke(args=["transfers", "void", batch_id, "--reason", "ticket 12", "--operator", "ann"])
    assert voided.exit_code == 0, voided.output
    stored = services.store.get_many(view.batch.request_ids)
    assert {(t.status.value, t.failure_reason) for t in stored.values()} == {("failed", "VOIDED_BY_OPERATOR")}
