"""Runs the event relay every few seconds on the worker's scheduler (docs/events.md)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.base import BaseScheduler

from app.services.events import EventRelay

log = logging.getLogger(__name__)


def _relay_safely(relay: EventRelay) -> None:
    try:
        relay.run_once()
    except Exception:
        # What is unpublished stays in the outbox: the next run sends it.
        log.exception("event relay pass failed")


def add_event_relay(scheduler: BaseScheduler, relay: EventRelay, interval_seconds: float) -> None:
    scheduler.add_job(
        _relay_safely,
        "interval",
        args=[relay],
        seconds=interval_seconds,
        id="event-relay",
        max_instances=1,
        coalesce=True,
    )
    log.info("event relay every %ss", interval_seconds)
