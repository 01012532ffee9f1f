"""Runs the continuous reconciliation every few minutes on the worker's scheduler."""

from __future__ import annotations

import logging

from apscheduler.schedulers.base import BaseScheduler

from app.observability.context import log_context, new_trace_id
from app.services.reconciliation import ReconciliationService

log = logging.getLogger(__name__)


def _reconcile_safely(service: ReconciliationService) -> None:
    try:
        with log_context(trace_id=f"reconcile-{new_trace_id()[:20]}"):
            service.run_pass()
    except Exception:
        # The next run tries again; its last-success time shows the gap.
        log.exception("reconciliation pass failed")


def add_reconciliation(scheduler: BaseScheduler, service: ReconciliationService, interval_seconds: float) -> None:
    scheduler.add_job(
        _reconcile_safely,
        "interval",
        args=[service],
        seconds=interval_seconds,
        id="reconciliation",
        max_instances=1,
        coalesce=True,
    )
    log.info("reconciliation every %ss over the last %s", interval_seconds, service.policy.window)
