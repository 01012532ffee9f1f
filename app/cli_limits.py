"""`flask --app wsgi limits ...`: operators read and override a user's daily transfer limits."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup

from app.api.limits import user_limits_view
from app.cli_identity import cli_actor
from app.domain.account_model import Direction
from app.domain.errors import DomainError
from app.services.limits import LimitService

limits = AppGroup("limits", help="Per-user daily transfer limits.")


def _service() -> LimitService:
    service: LimitService = current_app.extensions["internal_transfer"].limits
    return service


@limits.command("show")
@click.argument("user_id", type=click.IntRange(min=1, max=2**63 - 1))
def show(user_id: int) -> None:
    """Today's limit, used and remaining per asset and direction, and every override of the user."""
    click.echo(json.dumps(user_limits_view(_service(), user_id), indent=2))


@limits.command("set")
@click.argument("user_id", type=click.IntRange(min=1, max=2**63 - 1))
@click.argument("asset")
@click.argument("direction", type=click.Choice([d.value for d in Direction]))
@click.argument("limit")
@click.option("--reason", required=True, help="Why; recorded with the override.")
@click.option(
    "--operator", required=True, help="Who you are; recorded with the override, with the OS user and host this runs as."
)
def set_limit(user_id: int, asset: str, direction: str, limit: str, reason: str, operator: str) -> None:
    """Override USER_ID's daily LIMIT (whole units, e.g. 2500.5; 0 blocks) for ASSET in DIRECTION.

    Applies to today's quota at once: a raise adds the difference, a lowering
    takes away at most what remains (what is used or locked stays). Running
    it again after a failure completes what an interrupted run left undone.
    """
    service = _service()
    try:
        override = service.set_override(user_id, asset, direction, limit, str(cli_actor(operator)), reason)
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    click.echo(f"override v{override.version} recorded", err=True)
    click.echo(json.dumps(user_limits_view(service, user_id), indent=2))
