"""`flask --app wsgi ...` commands."""

from __future__ import annotations

import click
from flask import Flask, current_app

from app.api.auth import issue_token
from app.bootstrap import Container


def _container() -> Container:
    found: Container = current_app.extensions["internal_transfer"]
    return found


def register_cli(app: Flask) -> None:
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
