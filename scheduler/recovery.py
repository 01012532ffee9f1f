"""Runs the recovery scanner every few seconds on APScheduler."""

from __future__ import annotations

import logging
from datetime import UTC

from apscheduler.schedulers.background import BackgroundScheduler

from app.observability.context import log_context, new_trace_id
from app.services.recovery import RecoveryService

log = logging.getLogger(__name__)


def _scan_safely(recovery: RecoveryService) -> None:
    # A trace id per pass: what the pass re-sends carries it to the engine and
    # back, so a settlement that came from a re-send says which pass sent it.
    try:
        with log_context(trace_id=f"scan-{new_trace_id()[:20]}"):
            recovery.scan()
    except Exception:
        # The next run tries again; a scan must never kill the scheduler.
        log.exception("recovery scan failed")


def start_scanner(recovery: RecoveryService, interval_seconds: float) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        _scan_safely,
        "interval",
        args=[recovery],
        seconds=interval_seconds,
        id="recovery-scan",
        max_instances=1,
        coalesce=True,
    )
    scheduler.start()
    log.info("recovery scanner every %ss", interval_seconds)
    return scheduler
