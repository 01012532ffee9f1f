"""Alerts: one structured log line each, with a stable `alert` name, plus a counter."""

from __future__ import annotations

import json
import logging

from prometheus_client import Counter

log = logging.getLogger("internal_transfer.alerts")

ALERTS = Counter("internal_transfer_alerts", "Alerts raised", ["alert", "severity"])


def raise_alert(alert: str, severity: str, **fields: object) -> None:
    ALERTS.labels(alert=alert, severity=severity).inc()
    line = json.dumps({"alert": alert, "severity": severity, **fields}, default=str, sort_keys=True)
    log.log(logging.CRITICAL if severity == "critical" else logging.WARNING, line)
