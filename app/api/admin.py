"""Operator routes: deposits, and the tools for stuck transfers."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from app.api.auth import current_principal, operator_only
from app.api.container import container
from app.api.idempotency import idempotency_key
from app.api.schemas import ApiErrorSchema, DepositRequestSchema, DepositSchema

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Operator tools.")


@blp.route("/deposits", methods=["POST"])
@blp.arguments(DepositRequestSchema)
@blp.response(201, DepositSchema)
@blp.alt_response(403, schema=ApiErrorSchema)
@operator_only
def create_deposit(body: dict[str, Any]) -> dict[str, Any]:
    deposit = container().accounts.deposit(
        body["user_id"], body["asset"], body["amount"], idempotency_key(), current_principal().name
    )
    return {
        "deposit_id": str(deposit.deposit_id),
        "user_id": deposit.user_id,
        "asset": deposit.asset.symbol,
        "amount": deposit.asset.format(deposit.amount),
    }
