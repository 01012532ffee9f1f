"""Domain objects to JSON-ready dicts; amounts leave as decimal strings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.domain.assets import AssetCatalog
from app.domain.transfer import Transfer
from app.services.operations import TransferReport


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


def report_view(report: TransferReport, catalog: AssetCatalog) -> dict[str, Any]:
    return {
        "transfer": transfer_view(report.transfer, catalog),
        "user_id": report.transfer.user_id,
        "ledger_state": report.ledger_state.value,
        "agrees": report.agrees,
        "audit": [
            {
                "at": rfc3339(entry.at),
                "actor": str(entry.actor),
                "from_status": entry.from_status.value if entry.from_status else None,
                "to_status": entry.to_status.value,
                "reason": entry.reason,
            }
            for entry in report.audit
        ],
    }
