"""Atomic batch transfers: several of the user's own transfers that lock, settle or fail together."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView

from app.api.auth import current_principal
from app.api.blueprint import TRANSFER_ERRORS, Blueprint, raises, takes_idempotency_key
from app.api.inbound import container, idempotency_key
from app.api.path_ids import path_id
from app.api.schemas import BatchRequestSchema, BatchSchema
from app.api.transfers import rfc3339, transfer_view
from app.domain.batch import BatchCommand, BatchView
from app.domain.errors import NotFound
from app.domain.money import AssetCatalog
from app.services.submit import build_command

LOCATION_HEADER = {"description": "The batch's URL", "schema": {"type": "string"}}

blp = Blueprint(
    "internal_transfer_batch",
    __name__,
    url_prefix="/api/v1/user/internal_transfer/batch",
    description="Move several amounts between your own accounts at once: all or nothing.",
)


def batch_view(view: BatchView, catalog: AssetCatalog) -> dict[str, Any]:
    return {
        "batch_id": str(view.batch.batch_id),
        "status": view.status.value,
        "created_at": rfc3339(view.batch.created_at),
        # A leg whose record is missing (a first attempt that died) is left out until a retry records it.
        "legs": [transfer_view(leg, catalog) for leg in view.legs if leg is not None],
    }


@blp.route("")
class Batches(MethodView):
    @raises(*TRANSFER_ERRORS)
    @takes_idempotency_key(required=False)
    @blp.arguments(BatchRequestSchema)
    @blp.response(
        202,
        BatchSchema,
        description="Accepted: every leg is locked, the engine is asked (also every replay of such a request).",
        headers={"Location": LOCATION_HEADER},
    )
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Move funds in 2 to 50 legs at once, all or nothing

        Every leg is an ordinary transfer between your own funding and spot
        accounts, in any asset and either direction. All legs lock in one
        ledger request: if one leg is short of balance or of its daily limit,
        none locks, and the 422 names it in `details.leg` (its index) and
        `details.request_id`. The engine then confirms or rejects the batch as
        a whole.
        """
        services = container()
        user_id = current_principal().user_id
        legs = tuple(
            build_command(services.catalog, user_id, leg["from_account"], leg["to_account"], leg["amount"])
            for leg in body["legs"]
        )
        result = services.submit.batch(BatchCommand(user_id, legs), idempotency_key())
        if result.replayed:
            # As for a single transfer (app/api/transfers.py): a refused batch's replay answers its 422 again.
            refusal = services.submit.batch_refusal(result.view)
            if refusal is not None:
                raise refusal
        location = url_for("internal_transfer_batch.get_batch", batch_id=str(result.view.batch.batch_id))
        return batch_view(result.view, services.catalog), 202, {"Location": location}


@blp.route("/<batch_id>", endpoint="get_batch")
@raises(NotFound)
@blp.response(200, BatchSchema)
def get_batch(batch_id: str) -> dict[str, Any]:
    """One of your batches, with its legs (another user's looks exactly like a missing one)"""
    wanted = path_id(batch_id)
    services = container()
    return batch_view(services.queries.batch_for_user(current_principal().user_id, wanted), services.catalog)
