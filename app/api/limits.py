"""Daily transfer limits: a user's own usage today, and operators' per-user overrides."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate

from app.api.auth import current_principal
from app.api.blueprint import Blueprint, raises
from app.api.inbound import container
from app.api.path_ids import path_id
from app.api.schemas import ASSET, REASON
from app.domain.account_model import Direction
from app.domain.errors import InvalidAmount, InvalidPrecision, NotFound, OverrideConflict, UnsupportedAsset
from app.domain.limits import LimitOverride, LimitUsage, day_start, utc_day
from app.services.limits import LimitService

# Two blueprints, so each checks its caller before anything else (app/api/blueprint.py):
# any user for their own limits, operators only for the overrides.
user_blp = Blueprint("limits", __name__, url_prefix="/api/v1/user", description="Your daily transfer limits.")
admin_blp = Blueprint(
    "admin_limits",
    __name__,
    url_prefix="/api/v1/admin",
    description="Operators' per-user daily limit overrides.",
    operator_only=True,
)

_DECIMAL = {"description": "a decimal string in whole units of the asset", "example": "1000.5"}


class LimitUsageSchema(Schema):
    asset = fields.String()
    direction = fields.String(metadata={"enum": [d.value for d in Direction]})
    limit = fields.String(metadata=_DECIMAL)
    used = fields.String(metadata=_DECIMAL)
    remaining = fields.String(metadata=_DECIMAL)


class LimitsSchema(Schema):
    day = fields.String(metadata={"description": "the UTC day these figures are for", "example": "2026-11-26"})
    limits = fields.List(fields.Nested(LimitUsageSchema))


class LimitOverrideSchema(Schema):
    asset = fields.String()
    direction = fields.String()
    version = fields.Integer()
    limit = fields.String(metadata=_DECIMAL)
    actor = fields.String()
    reason = fields.String()
    set_at = fields.String()


class UserLimitsSchema(LimitsSchema):
    user_id = fields.Integer()
    overrides = fields.List(fields.Nested(LimitOverrideSchema), metadata={"description": "every version, the audit"})


class LimitOverrideRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    asset = fields.String(required=True, metadata=ASSET)
    direction = fields.String(required=True, validate=validate.OneOf([d.value for d in Direction]))
    # Its pattern depends on the asset's decimals: app/api/openapi.py adds it.
    limit = fields.String(required=True, metadata={**_DECIMAL, "description": "the new daily limit; 0 blocks"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500), metadata=REASON)


def _usage_view(service: LimitService, items: list[LimitUsage]) -> list[dict[str, Any]]:
    views = []
    for item in items:
        asset = service.catalog.get(item.asset)
        views.append(
            {
                "asset": item.asset,
                "direction": item.direction.value,
                "limit": asset.format(item.limit),
                "used": asset.format(item.used),
                "remaining": asset.format(item.remaining),
            }
        )
    return views


def _override_view(service: LimitService, item: LimitOverride) -> dict[str, Any]:
    return {
        "asset": item.asset,
        "direction": item.direction.value,
        "version": item.version,
        "limit": service.catalog.get(item.asset).format(item.limit),
        "actor": item.actor,
        "reason": item.reason,
        "set_at": item.set_at.isoformat(),
    }


def _today(service: LimitService) -> str:
    return day_start(utc_day(service.clock())).date().isoformat()


@user_blp.route("/limits")
@user_blp.response(200, LimitsSchema)
def my_limits() -> dict[str, Any]:
    """Today's (UTC) limit, used and remaining, per asset and direction, for the caller."""
    service = container().limits
    return {"day": _today(service), "limits": _usage_view(service, service.today(current_principal().user_id))}


def _user_id(text: str) -> int:
    return path_id(text, "user")


@admin_blp.route("/users/<user_id>/limits")
@raises(NotFound)
@admin_blp.response(200, UserLimitsSchema)
def user_limits(user_id: str) -> dict[str, Any]:
    """A user's limits today and every override ever set for them."""
    return user_limits_view(container().limits, _user_id(user_id))


def user_limits_view(service: LimitService, uid: int) -> dict[str, Any]:
    return {
        "user_id": uid,
        "day": _today(service),
        "limits": _usage_view(service, service.today(uid)),
        "overrides": [_override_view(service, o) for o in service.overrides(uid)],
    }


@admin_blp.route("/users/<user_id>/limits", methods=["POST"])
@raises(NotFound, UnsupportedAsset, InvalidAmount, InvalidPrecision, OverrideConflict)
@admin_blp.arguments(LimitOverrideRequestSchema)
@admin_blp.response(201, UserLimitsSchema)
def set_user_limit(body: dict[str, Any], user_id: str) -> dict[str, Any]:
    """Override a user's daily limit for one asset and direction, with a reason; applies today at once."""
    service, uid = container().limits, _user_id(user_id)
    service.set_override(
        uid, body["asset"], body["direction"], body["limit"], f"operator:{current_principal().user_id}", body["reason"]
    )
    return user_limits_view(service, uid)
