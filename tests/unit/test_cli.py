"""The CLI answers every bad input with `Error: CODE: message` and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import pwd
import socket
from collections.abc import Iterator
from pathlib import Path

import click
import jwt
import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskCliRunner

from app import cli_identity
from app.api.auth import issue_token
from app.cli import deposit, token, transfers
from app.domain.errors import ValidationFailed
from app.domain.transfer import AccountType, AuditActor, TransferCommand
from app.factory import create_app
from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET, TEST_TOKEN_POLICY, embedded_settings


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
    assert audit is not None and audit.reason == "ticket 9"
    assert AuditActor.parse(audit.operator).stated_name == "ann"
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


# -- who a CLI action records -------------------------------------------------------
# `--operator` is only what was typed: a CLI action also records the OS user and
# host it ran as, next to the stated name, and the audit shows both.


@pytest.fixture
def os_identity(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.setattr(cli_identity, "os_login", lambda: "bob")
    monkeypatch.setattr(socket, "gethostname", lambda: "ops-box-1")
    return "bob", "ops-box-1"


def _pending_transfer(runner: FlaskCliRunner, app: Flask) -> int:
    assert runner.invoke(args=DEPOSIT).exit_code == 0
    command = TransferCommand(3001, "USDT", AccountType.FUNDING, AccountType.SPOT, 10)
    request_id: int = app.extensions["internal_transfer"].submit.transfer(command).transfer.request_id
    return request_id


@pytest.mark.parametrize("action", ["void", "force-post", "resend"])
def test_a_cli_operator_action_records_the_stated_name_with_the_os_user_and_host(
    runner: FlaskCliRunner, app: Flask, os_identity: tuple[str, str], action: str
) -> None:
    request_id = _pending_transfer(runner, app)
    done = runner.invoke(args=["transfers", action, str(request_id), "--reason", "ticket 7", "--operator", "alice"])
    assert done.exit_code == 0, done.output
    entry = app.extensions["internal_transfer"].store.audit_trail(request_id)[-1]
    assert str(entry.actor) == "operator:alice (cli: bob@ops-box-1)"
    assert (entry.actor.stated_name, entry.actor.cli_origin) == ("alice", os_identity)
    # Read back from the store, the actor is the one the CLI made.
    assert AuditActor.parse(str(entry.actor)) == entry.actor


def test_the_audit_views_show_the_stated_name_and_the_os_identity(
    runner: FlaskCliRunner, app: Flask, os_identity: tuple[str, str]
) -> None:
    request_id = _pending_transfer(runner, app)
    voided = runner.invoke(args=["transfers", "void", str(request_id), "--reason", "ticket 8", "--operator", "alice"])
    assert voided.exit_code == 0, voided.output
    shown = runner.invoke(args=["transfers", "show", str(request_id)])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["audit"][-1]["actor"] == "operator:alice (cli: bob@ops-box-1)"
    bearer = issue_token(TEST_TOKEN_POLICY, 7, operator=True, ttl_seconds=600)
    answer = app.test_client().get(
        f"/api/v1/admin/transfers/{request_id}", headers={"Authorization": f"Bearer {bearer}"}
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["audit"][-1]["actor"] == "operator:alice (cli: bob@ops-box-1)"


def test_a_cli_deposit_records_the_stated_name_with_the_os_user_and_host(
    runner: FlaskCliRunner, app: Flask, os_identity: tuple[str, str]
) -> None:
    done = runner.invoke(args=DEPOSIT)
    assert done.exit_code == 0, done.output
    deposit_id = int(done.output.rsplit("deposit ", 1)[1].rstrip(")\n"))
    audit = app.extensions["internal_transfer"].store.get_deposit(deposit_id)
    assert audit is not None and audit.operator == "operator:ann (cli: bob@ops-box-1)"
    actor = AuditActor.parse(audit.operator)
    assert (actor.stated_name, actor.cli_origin) == ("ann", os_identity)


def test_the_real_os_user_and_host_are_recorded(runner: FlaskCliRunner, app: Flask) -> None:
    done = runner.invoke(args=DEPOSIT)
    assert done.exit_code == 0, done.output
    deposit_id = int(done.output.rsplit("deposit ", 1)[1].rstrip(")\n"))
    audit = app.extensions["internal_transfer"].store.get_deposit(deposit_id)
    assert audit is not None
    login = pwd.getpwuid(os.getuid()).pw_name if os.getuid() in {p.pw_uid for p in pwd.getpwall()} else None
    expected = (AuditActor.recordable_os_user(login, os.getuid()), socket.gethostname())
    assert AuditActor.parse(audit.operator).cli_origin == expected


def test_without_a_login_name_the_uid_is_recorded(
    runner: FlaskCliRunner, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setattr(socket, "gethostname", lambda: "ops-box-1")
    request_id = _pending_transfer(runner, app)
    done = runner.invoke(args=["transfers", "void", str(request_id), "--reason", "ticket 9", "--operator", "alice"])
    assert done.exit_code == 0, done.output
    entry = app.extensions["internal_transfer"].store.audit_trail(request_id)[-1]
    assert str(entry.actor) == f"operator:alice (cli: #{os.getuid()}@ops-box-1)"


def test_a_login_name_that_cannot_be_recorded_is_replaced_by_the_uid(
    runner: FlaskCliRunner, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the password database holds must not garble the audit.
    monkeypatch.setattr(cli_identity, "os_login", lambda: "root) (cli: x@y")
    monkeypatch.setattr(socket, "gethostname", lambda: "ops-box-1")
    done = runner.invoke(args=DEPOSIT)
    assert done.exit_code == 0, done.output
    deposit_id = int(done.output.rsplit("deposit ", 1)[1].rstrip(")\n"))
    audit = app.extensions["internal_transfer"].store.get_deposit(deposit_id)
    assert audit is not None and audit.operator == f"operator:ann (cli: #{os.getuid()}@ops-box-1)"


SPOOFS_AND_GARBAGE = [
    "mallory (cli: root@prod-1)",
    "mallory)",
    "ann\nbob",
    "ann\x1b[31m",
    "ann\u202egnp",
    "ann\u2028bob",
    "a" * 65,
    "   ",
]


@pytest.mark.parametrize("name", SPOOFS_AND_GARBAGE)
def test_the_cli_refuses_a_stated_name_that_could_spoof_or_garble_the_audit(
    runner: FlaskCliRunner, app: Flask, os_identity: tuple[str, str], name: str
) -> None:
    request_id = _pending_transfer(runner, app)
    store = app.extensions["internal_transfer"].store
    before = store.audit_trail(request_id)
    refused(
        runner.invoke(args=["transfers", "void", str(request_id), "--reason", "r", "--operator", name]),
        "INVALID_REQUEST",
    )
    assert store.audit_trail(request_id) == before
    at = DEPOSIT.index("--operator") + 1
    other_key = [*DEPOSIT[:5], "k-spoof", *DEPOSIT[6:at], name]
    refused(runner.invoke(args=other_key), "INVALID_REQUEST")


def test_the_stated_name_may_be_a_longest_name_and_is_stripped(
    runner: FlaskCliRunner, app: Flask, os_identity: tuple[str, str]
) -> None:
    request_id = _pending_transfer(runner, app)
    name = "Zoë O'Neil-" + "x" * 53
    done = runner.invoke(args=["transfers", "void", str(request_id), "--reason", "r", "--operator", f" {name} "])
    assert done.exit_code == 0, done.output
    actor = app.extensions["internal_transfer"].store.audit_trail(request_id)[-1].actor
    assert (actor.stated_name, actor.cli_origin) == (name, os_identity)


def test_an_operator_named_by_its_token_cannot_pass_as_a_cli_action(runner: FlaskCliRunner, app: Flask) -> None:
    # The admin API names an operator by its token's subject; a name in the CLI's form,
    # handed to the operator tools as plain text from any path but the CLI, is refused.
    request_id = _pending_transfer(runner, app)
    services = app.extensions["internal_transfer"]
    with pytest.raises(ValidationFailed):
        services.operations.void(request_id, "mallory (cli: root@prod-1)", "r")
    with pytest.raises(ValidationFailed):
        AuditActor.operator("mallory (cli: root@prod-1)")
    bearer = issue_token(TEST_TOKEN_POLICY, 7, operator=True, ttl_seconds=600)
    voided = app.test_client().post(
        f"/api/v1/admin/transfers/{request_id}/void",
        json={"reason": "ticket 10"},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert voided.status_code == 200, voided.get_json()
    actor = services.store.audit_trail(request_id)[-1].actor
    assert (str(actor), actor.stated_name, actor.cli_origin) == ("operator:7", "7", None)


@pytest.mark.parametrize(
    ("stored", "stated", "origin"),
    [
        ("operator:alice (cli: bob@ops-box-1)", "alice", ("bob", "ops-box-1")),
        ("operator:alice (cli: #1000@ops-box-1)", "alice", ("#1000", "ops-box-1")),
        ("operator:7", "7", None),
        # Written before the CLI recorded its OS identity, when a name was free text: still read.
        ("operator:old (free) text", "old (free) text", None),
        ("scanner", "", None),
    ],
)
def test_an_audit_actor_reads_back_as_it_was_written(stored: str, stated: str, origin: tuple[str, str] | None) -> None:
    actor = AuditActor.parse(stored)
    assert (str(actor), actor.stated_name, actor.cli_origin) == (stored, stated, origin)


def test_a_cli_actor_round_trips_through_its_wire_form() -> None:
    actor = AuditActor.cli("alice", "bob", "ops-box-1.example")
    assert str(actor) == "operator:alice (cli: bob@ops-box-1.example)"
    assert AuditActor.parse(str(actor)) == actor and actor.is_operator


@pytest.mark.parametrize(
    ("os_user", "host"),
    [("bob", "bad host"), ("bob", "h\x00st"), ("bob", "h" * 254), ("bob", ""), ("b@d", "ops"), ("", "ops")],
)
def test_a_cli_actor_refuses_an_os_identity_it_cannot_record(os_user: str, host: str) -> None:
    with pytest.raises(ValidationFailed):
        AuditActor.cli("alice", os_user, host)


def test_the_login_name_comes_from_the_uid_not_from_the_environment(
    runner: FlaskCliRunner, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LOGNAME and USER are whatever the caller set; the password entry of the uid is not.
    monkeypatch.setenv("LOGNAME", "someone-else")
    monkeypatch.setenv("USER", "someone-else")
    assert cli_identity.os_login() != "someone-else"


def test_a_limit_override_from_the_cli_records_the_os_user_and_host(
    runner: FlaskCliRunner, app: Flask, os_identity: tuple[str, str]
) -> None:
    done = runner.invoke(
        args=["limits", "set", "3001", "USDT", "funding_to_spot", "500", "--reason", "ticket 10", "--operator", "alice"]
    )
    assert done.exit_code == 0, done.output
    shown = runner.invoke(args=["limits", "show", "3001"])
    assert "operator:alice (cli: bob@ops-box-1)" in shown.output, shown.output
