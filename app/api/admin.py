"""Operator routes: deposits, and the tools for stuck transfers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.api.auth import current_principal
from app.api.blueprint import AMOUNT_ERRORS, Blueprint, raises, takes_idempotency_key
from app.api.inbound import container, idempotency_key
from app.api.path_ids import path_id
from app.api.presenters import report_view
from app.api.schemas import (
    DepositRequestSchema,
    DepositSchema,
    OperatorActionSchema,
    ReconcileQuerySchema,
    ReconcileSchema,
    StuckQuerySchema,
    TransferListSchema,
    TransferReportSchema,
    TransferSchema,
)
from app.api.transfers import transfer_view
from app.domain.errors import (
    IdempotencyKeyReused,
    IllegalTransition,
    NotFound,
    NotPending,
)
from app.domain.transfer import Status
from app.services.operations import report_row

# Every route here is for operators: the blueprint checks the role before any input is read.
blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Operator tools.", operator_only=True)


@blp.route("/deposits", methods=["POST"])
@blp.doc(
    summary="Credit a user's funding account",
    description="The Idempotency-Key is required and credits at most once; every replay answers 201 with the"
    " same deposit. The operator and the reason go into the deposit audit.",
)
@raises(*AMOUNT_ERRORS, IdempotencyKeyReused)
@takes_idempotency_key(required=True)
@blp.arguments(DepositRequestSchema)
@blp.response(201, DepositSchema)
def create_deposit(body: dict[str, Any]) -> dict[str, Any]:
    """Credit funds; the Idempotency-Key is required, and the operator and reason go into the deposit audit."""
    deposit = container().accounts.deposit(
        body["user_id"],
        body["asset"],
        body["amount"],
        idempotency_key(),
        current_principal().name,
        body["reason"],
    )
    return {
        "deposit_id": str(deposit.deposit_id),
        "user_id": deposit.user_id,
        "asset": deposit.asset.symbol,
        "amount": deposit.asset.format(deposit.amount),
    }


@blp.route("/transfers/stuck")
@blp.arguments(StuckQuerySchema, location="query")
@blp.response(200, TransferListSchema)
def stuck_transfers(query: dict[str, Any]) -> dict[str, Any]:
    """Transfers still requesting or pending, oldest first"""
    services = container()
    found = services.operations.stuck(
        Status(query["status"]) if query["status"] else None,
        timedelta(seconds=query["older_than_seconds"]),
        query["limit"],
    )
    return {"items": [transfer_view(t, services.catalog) for t in found]}


@blp.route("/transfers/<request_id>")
@raises(NotFound)
@blp.response(200, TransferReportSchema)
def show_transfer(request_id: str) -> dict[str, Any]:
    """A transfer, what the ledger holds for it, and its audit trail"""
    services = container()
    return report_view(services.operations.show(path_id(request_id)), services.catalog)


@blp.route("/transfers/<request_id>/<any(void, force_post, resend):action>", methods=["POST"])
@raises(NotFound, NotPending, IllegalTransition)
@blp.arguments(OperatorActionSchema)
@blp.response(200, TransferSchema)
def act_on_transfer(body: dict[str, Any], request_id: str, action: str) -> dict[str, Any]:
    """Void, force-post or re-send a pending transfer, with a reason

    void: release the funds; force_post: the engine applied it but its result
    was lost; resend: ask the engine again. Audited with the operator's name;
    repeating an action that already took effect returns the same result.
    """
    services = container()
    run = {
        "void": services.operations.void,
        "force_post": services.operations.force_post,
        "resend": services.operations.resend,
    }[action]
    done = run(path_id(request_id), str(current_principal().user_id), body["reason"])
    return transfer_view(done, services.catalog)


@blp.route("/reconcile")
@blp.arguments(ReconcileQuerySchema, location="query")
@blp.response(200, ReconcileSchema)
def reconcile(query: dict[str, Any]) -> dict[str, Any]:
    """Compare the store with the ledger for one transfer or one user"""
    services = container()
    reports = services.operations.reconcile(query["request_id"], query["user_id"])
    now = services.deps.clock()
    return {"rows": [report_row(r, now) for r in reports], "mismatches": sum(not r.agrees for r in reports)}
