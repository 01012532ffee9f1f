"""Balances and the asset catalogue."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal
from app.api.blueprint import Blueprint
from app.api.inbound import container
from app.api.schemas import AssetsSchema, BalancesSchema

blp = Blueprint(
    "accounts", __name__, url_prefix="/api/v1", description="Balances and assets.", public_endpoints=["assets"]
)


@blp.route("/user/balances")
@blp.response(200, BalancesSchema)
def balances() -> dict[str, Any]:
    """Your available and locked balance per asset and account type"""
    services = container()
    return {
        "balances": [
            {
                "asset": b.asset.symbol,
                "account_type": b.account_type.value,
                "available": b.asset.format(b.available),
                "locked": b.asset.format(b.locked),
            }
            for b in services.accounts.balances(current_principal().user_id)
        ]
    }


@blp.route("/assets")
@blp.response(200, AssetsSchema)
def assets() -> dict[str, Any]:
    """The supported assets, their decimals and transfer limits (public: no token)"""
    return {
        "assets": [
            {
                "symbol": a.symbol,
                "decimals": a.decimals,
                "min_amount": a.format(a.min_units),
                "max_amount": a.format(a.max_units),
            }
            for a in container().catalog
        ]
    }
