"""`flask --app wsgi ...` commands."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app import cli_limits
from app.api.auth import issue_token
from app.api.presenters import report_view, transfer_view
from app.bootstrap import Container
from app.domain.errors import DomainError
from app.domain.transfer import Status
from app.ports.errors import DependencyUnavailable
from app.services.operations import report_row


def _container() -> Container:
    found: Container = current_app.extensions["internal_transfer"]
    return found


def register_cli(app: Flask) -> None:
    app.cli.add_command(cli_limits.limits)

    @app.cli.command("token")
    @click.argument("user_id", type=click.IntRange(min=1))
    @click.option("--admin", is_flag=True, help="Issue an operator token.")
    @click.option("--ttl", default=3600, show_default=True, help="Lifetime in seconds.")
    def token(user_id: int, admin: bool, ttl: int) -> None:
        """Print a bearer token for USER_ID."""
        click.echo(issue_token(current_app.config["JWT_SECRET"], user_id, operator=admin, ttl_seconds=ttl))

    @app.cli.command("deposit")
    @click.argument("user_id", type=click.IntRange(min=1))
    @click.argument("asset")
    @click.argument("amount")
    @click.option("--idempotency-key", default=None, help="Credit at most once for this key.")
    def deposit(user_id: int, asset: str, amount: str, idempotency_key: str | None) -> None:
        """Credit AMOUNT of ASSET to USER_ID's funding account."""
        done = _container().accounts.deposit(user_id, asset, amount, idempotency_key, "cli")
        click.echo(
            f"deposited {done.asset.format(done.amount)} {done.asset.symbol} to user {user_id}"
            f" (deposit {done.deposit_id})"
        )

    db = AppGroup("db", help="The store's schema.")
    app.cli.add_command(db)

    @db.command("init")
    def db_init() -> None:
        """Apply schema/*.cql to the configured Cassandra store (idempotent)."""
        store = _container().store
        create_schema = getattr(store, "create_schema", None)
        if create_schema is None:
            click.echo(f"{type(store).__name__} creates its own schema; nothing to do")
            return
        try:
            create_schema(os.environ.get("CASSANDRA_REPLICATION"))
        except DependencyUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        click.echo("schema applied")

    transfers = AppGroup("transfers", help="Operator tools for transfers; every action is audited.")
    app.cli.add_command(transfers)

    def _print_report_table(rows: list[dict[str, object]]) -> None:
        columns = [
            "request_id",
            "user_id",
            "asset",
            "amount_units",
            "store_status",
            "ledger_state",
            "agrees",
            "age_seconds",
        ]
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
        click.echo("  ".join(c.ljust(widths[c]) for c in columns))
        for row in rows:
            click.echo("  ".join(str(row[c]).ljust(widths[c]) for c in columns))

    @transfers.command("stuck")
    @click.option("--status", type=click.Choice(["requesting", "pending"]), default=None)
    @click.option("--older-than", "older_than", default=0, show_default=True, help="Age in seconds.")
    @click.option("--limit", default=100, show_default=True)
    def stuck(status: str | None, older_than: int, limit: int) -> None:
        """List open transfers older than --older-than seconds."""
        services = _container()
        found = services.operations.stuck(Status(status) if status else None, timedelta(seconds=older_than), limit)
        for transfer in found:
            click.echo(json.dumps(transfer_view(transfer, services.catalog)))
        click.echo(f"{len(found)} transfer(s)", err=True)

    @transfers.command("show")
    @click.argument("request_id", type=click.IntRange(min=1))
    def show(request_id: int) -> None:
        """Show one transfer with its ledger state and audit trail."""
        services = _container()
        click.echo(json.dumps(report_view(services.operations.show(request_id), services.catalog), indent=2))

    def _operator_action(name: str, help_text: str) -> None:
        @transfers.command(name, help=help_text)
        @click.argument("request_id", type=click.IntRange(min=1))
        @click.option("--reason", required=True, help="Why; recorded in the audit trail.")
        @click.option("--operator", required=True, help="Who you are; recorded in the audit trail.")
        def action(request_id: int, reason: str, operator: str) -> None:
            services = _container()
            run = getattr(services.operations, name.replace("-", "_"))
            try:
                done = run(request_id, operator, reason)
            except DomainError as exc:
                raise click.ClickException(f"{exc.code}: {exc.message}") from None
            click.echo(json.dumps(transfer_view(done, services.catalog)))

    _operator_action("void", "Void a pending transfer, releasing its funds.")
    _operator_action("force-post", "Post a pending transfer the engine applied but whose result was lost.")
    _operator_action("resend", "Send a pending transfer to the engine again.")

    @transfers.command("reconcile")
    @click.option("--request-id", type=click.IntRange(min=1), default=None)
    @click.option("--user-id", type=click.IntRange(min=1), default=None)
    @click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
    def reconcile(request_id: int | None, user_id: int | None, as_json: bool) -> None:
        """Compare the store with the ledger: one transfer, a user, or everything open."""
        services = _container()
        reports = services.operations.reconcile(request_id, user_id)
        rows = [report_row(r, services.transfers.clock()) for r in reports]
        mismatches = sum(not r.agrees for r in reports)
        if as_json:
            click.echo(json.dumps({"rows": rows, "mismatches": mismatches}, indent=2))
        else:
            _print_report_table(rows)
            click.echo(f"{len(rows)} checked, {mismatches} mismatch(es)")
        if mismatches:
            raise SystemExit(1)
