"""Runs the continuous reconciliation every few minutes on the worker's scheduler."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from apscheduler.schedulers.base import BaseScheduler

from app.observability.context import log_context, new_trace_id
from app.services.reconciliation import ReconciliationPolicy, ReconciliationService

log = logging.getLogger(__name__)


def policy_from_env() -> tuple[float, ReconciliationPolicy]:
    """RECONCILE_INTERVAL_SECONDS (300), RECONCILE_WINDOW_SECONDS (900), RECONCILE_GRACE_SECONDS (30),
    RECONCILE_LIMIT (10000)."""
    interval = float(os.environ.get("RECONCILE_INTERVAL_SECONDS", "300"))
    policy = ReconciliationPolicy(
        window=timedelta(seconds=float(os.environ.get("RECONCILE_WINDOW_SECONDS", "900"))),
        grace=timedelta(seconds=float(os.environ.get("RECONCILE_GRACE_SECONDS", "30"))),
        limit=int(os.environ.get("RECONCILE_LIMIT", "10000")),
    )
    return interval, policy


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
