"""What a transfer's progress tells operators: a counter, a latency, and one log line per step.

Called by the transfer service after each write; no I/O beyond the log line.
"""

from __future__ import annotations

import logging

from app.domain.transfer import Transfer
from app.observability.metrics import SETTLE_SECONDS, TRANSFERS

log = logging.getLogger("internal_transfer.transfers")


def accepted(transfer: Transfer, replayed: bool) -> None:
    if not replayed:
        TRANSFERS.labels(outcome="accepted", failure_reason="").inc()
    log.info(
        "transfer %s",
        "replayed" if replayed else "accepted",
        extra={"request_id": str(transfer.request_id), "status": transfer.status.value},
    )


def reached(before: Transfer, after: Transfer, actor: str, trace_id: str | None = None) -> None:
    """`before` became `after`; counted once it is terminal (a duplicate write is not)."""
    if before.status.is_terminal or not after.status.is_terminal:
        return
    outcome = after.status.value
    TRANSFERS.labels(outcome=outcome, failure_reason=after.failure_reason or "").inc()
    SETTLE_SECONDS.labels(outcome=outcome).observe(max(0.0, (after.updated_at - after.created_at).total_seconds()))
    extra: dict[str, object] = {
        "request_id": str(after.request_id),
        "status": outcome,
        "failure_reason": after.failure_reason,
        "actor": actor,
    }
    if trace_id is not None:
        extra["trace_id"] = trace_id
    log.info("transfer %s", outcome, extra=extra)
