"""`flask --app wsgi ...` commands.

Flask's own pattern: module-level click groups and commands, added to the
app by `register_cli`. Every command answers bad input with
`Error: CODE: message` and a non-zero exit, the codes the HTTP API uses.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from app import cli_limits
from app.api.auth import issue_token, token_policy
from app.api.presenters import report_view
from app.api.transfers import transfer_view
from app.bootstrap import Container
from app.cli_identity import cli_actor
from app.domain.errors import DomainError, ValidationFailed
from app.domain.ids import parse_id
from app.domain.transfer import Status
from app.ports.errors import DependencyUnavailable
from app.services.operations import TransferReport, report_row, stuck_age

P = ParamSpec("P")
R = TypeVar("R")

REPORT_COLUMNS = (
    "request_id",
    "user_id",
    "asset",
    "amount_units",
    "store_status",
    "ledger_state",
    "agrees",
    "age_seconds",
)


def _container() -> Container:
    found: Container = current_app.extensions["internal_transfer"]
    return found


def clean_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the service's errors into `Error: CODE: message` (exit 1), never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DomainError as exc:
            raise click.ClickException(f"{exc.code}: {exc.message}") from None
        except DependencyUnavailable as exc:
            raise click.ClickException(f"DEPENDENCY_UNAVAILABLE: {exc}") from None

    return wrapper


def _id(name: str, text: str) -> int:
    try:
        return parse_id(text)
    except ValueError:
        raise ValidationFailed(f"{name} must be a decimal id between 1 and 2^63-1", field=name) from None


def _optional_id(name: str, text: str | None) -> int | None:
    return None if text is None else _id(name, text)


def _int(name: str, text: str) -> int:
    """A whole number from an option, with the service's error rather than click's usage error."""
    cleaned = text.strip()
    digits = cleaned.removeprefix("-")
    # Bounded before int(): a 5,000-digit number would hit Python's int-string limit.
    if not digits.isdigit() or not digits.isascii() or len(digits) > 30:
        raise ValidationFailed(f"{name} must be a whole number", field=name)
    return int(cleaned)


# -- token ------------------------------------------------------------------------


@click.command("token")
@click.argument("user_id")
@click.option("--admin", is_flag=True, help="Issue an operator token (signed with OPERATOR_JWT_SECRET).")
@click.option("--ttl", default="3600", show_default=True, help="Lifetime in seconds, at most JWT_MAX_TTL_SECONDS.")
@with_appcontext
@clean_errors
def token(user_id: str, admin: bool, ttl: str) -> None:
    """Print a bearer token for USER_ID."""
    click.echo(issue_token(token_policy(), _id("user_id", user_id), operator=admin, ttl_seconds=_int("ttl", ttl)))


# -- deposit ----------------------------------------------------------------------


@click.command("deposit")
@click.argument("user_id")
@click.argument("asset")
@click.argument("amount")
@click.option("--idempotency-key", required=True, help="Credit at most once for this key; reuse it to retry.")
@click.option("--reason", required=True, help="Why; kept in the deposit audit.")
@click.option(
    "--operator", required=True, help="Who you are; kept in the deposit audit with the OS user and host this runs as."
)
@with_appcontext
@clean_errors
def deposit(user_id: str, asset: str, amount: str, idempotency_key: str, reason: str, operator: str) -> None:
    """Credit AMOUNT of ASSET to USER_ID's funding account."""
    uid = _id("user_id", user_id)
    who = str(cli_actor(operator))
    done = _container().accounts.deposit(uid, asset, amount, idempotency_key, who, reason)
    click.echo(
        f"deposited {done.asset.format(done.amount)} {done.asset.symbol} to user {uid} (deposit {done.deposit_id})"
    )


# -- db ---------------------------------------------------------------------------

db = AppGroup("db", help="The store's schema.")


@db.command("init")
@clean_errors
def db_init() -> None:
    """Apply schema/*.cql to the configured Cassandra store (idempotent)."""
    services = _container()
    create_schema = getattr(services.store, "create_schema", None)
    if create_schema is None:
        click.echo(f"{type(services.store).__name__} creates its own schema; nothing to do")
        return
    create_schema(services.settings.cassandra_replication)
    click.echo("schema applied")


# -- transfers --------------------------------------------------------------------

transfers = AppGroup("transfers", help="Operator tools for transfers; every action is audited.")


def _print_report_table(rows: list[dict[str, object]]) -> None:
    widths = {c: max([len(c), *(len(str(r[c])) for r in rows)]) for c in REPORT_COLUMNS}
    click.echo("  ".join(c.ljust(widths[c]) for c in REPORT_COLUMNS))
    for row in rows:
        click.echo("  ".join(str(row[c]).ljust(widths[c]) for c in REPORT_COLUMNS))


@transfers.command("stuck")
@click.option("--status", type=click.Choice(["requesting", "pending"]), default=None)
@click.option("--older-than", "older_than", default="0", show_default=True, help="Age in seconds.")
@click.option("--limit", default="100", show_default=True)
@clean_errors
def stuck(status: str | None, older_than: str, limit: str) -> None:
    """List open transfers older than --older-than seconds."""
    services = _container()
    age = stuck_age(_int("older_than", older_than))
    found = services.operations.stuck(Status(status) if status else None, age, _int("limit", limit))
    for transfer in found:
        click.echo(json.dumps(transfer_view(transfer, services.catalog)))
    click.echo(f"{len(found)} transfer(s)", err=True)


@transfers.command("show")
@click.argument("request_id")
@clean_errors
def show(request_id: str) -> None:
    """Show one transfer with its ledger state and audit trail."""
    services = _container()
    report = services.operations.show(_id("request_id", request_id))
    click.echo(json.dumps(report_view(report, services.catalog), indent=2))


def _operator_action(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("request_id")
    @click.option("--reason", required=True, help="Why; recorded in the audit trail.")
    @click.option(
        "--operator",
        required=True,
        help="Who you are; recorded in the audit trail with the OS user and host this runs as.",
    )
    @with_appcontext
    @clean_errors
    def action(request_id: str, reason: str, operator: str) -> None:
        services = _container()
        run = getattr(services.operations, name.replace("-", "_"))
        done = run(_id("request_id", request_id), cli_actor(operator).name, reason)
        click.echo(json.dumps(transfer_view(done, services.catalog)))

    return action


for _name, _help in (
    # A batch's leg, or a batch's id, names the whole batch: its legs only ever move together.
    ("void", "Void a pending transfer (a batch: all its legs), releasing its funds."),
    ("force-post", "Post a pending transfer (a batch: all its legs) the engine applied but whose result was lost."),
    ("resend", "Send a pending transfer (a batch: the whole batch) to the engine again."),
):
    transfers.add_command(_operator_action(_name, _help))


@transfers.command("reconcile")
@click.option("--request-id", default=None)
@click.option("--user-id", default=None)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@clean_errors
def reconcile(request_id: str | None, user_id: str | None, as_json: bool) -> None:
    """Compare the store with the ledger: one transfer (a batch: all its legs), a user, or everything open."""
    services = _container()
    reports: list[TransferReport] = services.operations.reconcile(
        _optional_id("request_id", request_id), _optional_id("user_id", user_id)
    )
    rows = [report_row(r, services.deps.clock()) for r in reports]
    mismatches = sum(not r.agrees for r in reports)
    if as_json:
        click.echo(json.dumps({"rows": rows, "mismatches": mismatches}, indent=2))
    else:
        _print_report_table(rows)
        click.echo(f"{len(rows)} checked, {mismatches} mismatch(es)")
    if mismatches:
        raise SystemExit(1)


def register_cli(app: Flask) -> None:
    for command in (token, deposit, db, transfers, cli_limits.limits):
        app.cli.add_command(command)
