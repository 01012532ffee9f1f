"""An operator's report of one transfer as JSON (a transfer's own view is app/api/transfers.py)."""

from __future__ import annotations

from typing import Any

from app.api.transfers import rfc3339, transfer_view
from app.domain.money import AssetCatalog
from app.services.operations import TransferReport


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
