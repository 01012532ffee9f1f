"""The user's internal transfers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import url_for
from flask.views import MethodView

from app.api.auth import current_principal
from app.api.blueprint import TRANSFER_ERRORS, Blueprint, raises, takes_idempotency_key
from app.api.inbound import container, idempotency_key
from app.api.path_ids import path_id
from app.api.schemas import (
    HistoryQuerySchema,
    HistorySchema,
    TransferRequestSchema,
    TransferSchema,
)
from app.domain.errors import NotFound
from app.domain.money import AssetCatalog
from app.domain.transfer import Status, Transfer
from app.services.submit import build_command

# Amounts leave as decimal strings, times as RFC 3339 in UTC.


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def transfer_view(transfer: Transfer, catalog: AssetCatalog) -> dict[str, Any]:
    asset = catalog.get(transfer.asset)
    return {
        "request_id": str(transfer.request_id),
        "from_account": {
            "account_type": transfer.from_type.value,
            "asset": transfer.asset,
            "user_id": transfer.user_id,
        },
        "to_account": {"account_type": transfer.to_type.value, "asset": transfer.asset, "user_id": transfer.user_id},
        "amount": asset.format(transfer.amount),
        "status": transfer.status.value,
        "failure_reason": transfer.failure_reason,
        "created_at": rfc3339(transfer.created_at),
        "updated_at": rfc3339(transfer.updated_at),
    }


LOCATION_HEADER = {"description": "The transfer's URL", "schema": {"type": "string"}}

blp = Blueprint(
    "internal_transfer",
    __name__,
    url_prefix="/api/v1/user/internal_transfer",
    description="Move an asset between your own funding and spot accounts.",
)


@blp.route("")
class InternalTransfers(MethodView):
    @raises(*TRANSFER_ERRORS)
    @takes_idempotency_key(required=False)
    @blp.arguments(TransferRequestSchema)
    @blp.response(
        202,
        TransferSchema,
        description="Accepted: funds are locked, the engine is asked (also every replay of such a request).",
        headers={"Location": LOCATION_HEADER},
    )
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Move funds between your own funding and spot accounts

        The funds are locked at once; the balance engine settles the transfer
        shortly after. An INSUFFICIENT_BALANCE refusal (422) is recorded as a
        failed transfer, named in `details.request_id`.
        """
        services = container()
        command = build_command(
            services.catalog,
            current_principal().user_id,
            body["from_account"],
            body["to_account"],
            body["amount"],
        )
        result = services.submit.transfer(command, idempotency_key())
        if result.replayed:
            # A replayed key whose first answer was 422 answers 422 again, with
            # the same body. The first answer is derived from the record, not
            # stored: only the lock refusal that answered 422 records a refusal's
            # cause (app/services/submit.py), and every other recorded transfer
            # was accepted, 202. (A first answer of 503 is not replayed: the retry
            # carries the work on, which is what it is for.) A 202's body is the
            # transfer's current state, the same resource, fresher; a daily-limit
            # refusal carries the day's figures as they are now.
            refusal = services.submit.refusal(result.transfer)
            if refusal is not None:
                raise refusal
        location = url_for("internal_transfer.get_transfer", request_id=str(result.transfer.request_id))
        # A replay answers what the first request did: 202 (the transfer was accepted).
        return transfer_view(result.transfer, services.catalog), 202, {"Location": location}


@blp.route("/history")
@blp.arguments(HistoryQuerySchema, location="query")
@blp.response(200, HistorySchema)
def history(query: dict[str, Any]) -> dict[str, Any]:
    """Your transfers, newest first, a page at a time"""
    services = container()
    page = services.queries.history(
        current_principal().user_id,
        query["limit"],
        query["cursor"],
        Status(query["status"]) if query["status"] else None,
        query["asset"],
    )
    return {
        "items": [transfer_view(t, services.catalog) for t in page.items],
        "next_cursor": page.next_cursor,
    }


@blp.route("/<transfer_id:request_id>", endpoint="get_transfer")
@raises(NotFound)
@blp.response(200, TransferSchema)
def get_transfer(request_id: str) -> dict[str, Any]:
    """One of your transfers (another user's looks exactly like a missing one)"""
    wanted = path_id(request_id)
    services = container()
    transfer = services.queries.get_for_user(current_principal().user_id, wanted)
    return transfer_view(transfer, services.catalog)
