"""Every metric the service exports, in one place, how they are exposed, and what a transfer's progress records.

Names start with `internal_transfer_`; labels take a small, fixed set of
values (routes, statuses, backends, reasons, partitions), never a user id
or a request id, so the number of series stays bounded.

Under gunicorn the web workers write their samples to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), and a
scrape of any worker adds them all up. Gauges say how to combine workers;
`livemostrecent` keeps the latest value among live processes.
"""

from __future__ import annotations

import logging

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from app.domain.transfer import Transfer

# Resolves the request targets: p50 < 10 ms, p99 < 50 ms, p99.9 < 100 ms
# each fall on a bucket boundary, with neighbours close enough to interpolate.
REQUEST_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05,
    0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
# POST to terminal: milliseconds when all is well, up to hours when stuck.
SETTLE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0)
DEPENDENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
SCAN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# -- requests ---------------------------------------------------------------
HTTP_REQUEST_SECONDS = Histogram(
    "internal_transfer_http_request_duration_seconds",
    "HTTP request latency, by route template, method and status",
    ["method", "route", "status"],
    buckets=REQUEST_BUCKETS,
)

# -- transfers --------------------------------------------------------------
# outcome: accepted (a new transfer locked and sent), success, failed;
# failure_reason is empty unless failed (INSUFFICIENT_BALANCE among them).
TRANSFERS = Counter("internal_transfer_transfers", "Transfers by outcome", ["outcome", "failure_reason"])
SETTLE_SECONDS = Histogram(
    "internal_transfer_settle_duration_seconds",
    "From the POST (the transfer's creation) to its terminal status",
    ["outcome"],
    buckets=SETTLE_BUCKETS,
)

# -- backlog (set by the scanner) ---------------------------------------------
OPEN_TRANSFERS = Gauge(
    "internal_transfer_open",
    "Transfers not yet terminal, by status (as of the scanner's last pass)",
    ["status"],
    multiprocess_mode="livemostrecent",
)
OLDEST_PENDING = Gauge(
    "internal_transfer_oldest_pending_seconds",
    "Age of the oldest pending transfer",
    multiprocess_mode="livemostrecent",
)
OLDEST_REQUESTING = Gauge(
    "internal_transfer_oldest_requesting_seconds",
    "Age of the oldest requesting transfer",
    multiprocess_mode="livemostrecent",
)

# -- scanner ------------------------------------------------------------------
SCAN_SECONDS = Histogram("internal_transfer_scanner_pass_duration_seconds", "One scanner pass", buckets=SCAN_BUCKETS)
SCAN_LAST_SUCCESS = Gauge(
    "internal_transfer_scanner_last_success_timestamp_seconds",
    "Unix time of the last scanner pass that finished",
    multiprocess_mode="livemax",
)
# action: resent, locked_sent, completed_success, completed_failed,
# failed_not_locked (fenced), mismatch, waiting, refiled, error, unavailable:<backend>.
SCAN_ACTIONS = Counter("internal_transfer_scanner_actions", "What the scanner did, by action", ["action"])

# -- reconciliation -----------------------------------------------------------
LEDGER_MISMATCHES = Counter(
    "internal_transfer_ledger_mismatches",
    "Store/ledger disagreements found, by who found them",
    ["source"],
)
RECONCILE_MISMATCHES = Gauge(
    "internal_transfer_reconcile_mismatches",
    "Mismatches found by the last reconciliation pass",
    multiprocess_mode="livemostrecent",
)
RECONCILE_CHECKED = Gauge(
    "internal_transfer_reconcile_checked",
    "Settled transfers compared with the ledger by the last reconciliation pass",
    multiprocess_mode="livemostrecent",
)
RECONCILE_LAST_SUCCESS = Gauge(
    "internal_transfer_reconcile_last_success_timestamp_seconds",
    "Unix time of the last reconciliation pass that finished",
    multiprocess_mode="livemax",
)

# -- the status event stream (docs/events.md) -----------------------------------
# path: inline (published right after the status write) or relay (recovered from the outbox).
EVENTS_PUBLISHED = Counter("internal_transfer_events_published", "Status events the bus accepted", ["path"])
# Inline publishes that failed or were dropped (queue full): the relay sends them later.
EVENTS_DEFERRED = Counter("internal_transfer_events_deferred", "Status events left to the relay", ["why"])
EVENTS_RELAY_BACKLOG = Gauge(
    "internal_transfer_events_relay_backlog",
    "Unpublished events the relay found in the outbox on its last pass",
    multiprocess_mode="livemostrecent",
)

# -- the bus ------------------------------------------------------------------
DEAD_LETTERS = Counter("internal_transfer_dead_letters", "Messages dead-lettered, by topic and kind", ["topic", "kind"])
DLQ_MESSAGES = Gauge(
    "internal_transfer_dlq_messages",
    "Messages held in a dead-letter topic",
    ["topic"],
    multiprocess_mode="livemostrecent",
)
CONSUMER_LAG = Gauge(
    "internal_transfer_consumer_lag",
    "Records behind the partition's end, as of the consumer's last fetch",
    ["topic", "partition"],
    multiprocess_mode="livemostrecent",
)

# -- dependencies ---------------------------------------------------------------
DEPENDENCY_SECONDS = Histogram(
    "internal_transfer_dependency_call_duration_seconds",
    "Calls to a backend, by backend, operation and outcome (ok, unavailable, error)",
    ["backend", "operation", "outcome"],
    buckets=DEPENDENCY_BUCKETS,
)
BACKEND_UP = Gauge(
    "internal_transfer_backend_up",
    "1 if the backend answered the last health check, else 0",
    ["backend"],
    multiprocess_mode="livemostrecent",
)


def exposition(multiproc_dir: str | None) -> tuple[bytes, str]:
    """The text exposition of this process's metrics (of every gunicorn worker's, in multiprocess mode)."""
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def start_exporter(port: int | None, addr: str, multiproc_dir: str | None = None) -> int | None:
    """Serve /metrics on its own port (worker, engine, or the gunicorn master), in a daemon thread.

    No port: no exporter. Returns the port.
    """
    if port is None:
        return None
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
        start_http_server(port, addr=addr, registry=registry)
    else:
        start_http_server(port, addr=addr)
    return port


def _initialise_series() -> None:
    """Known label values start at 0, so a panel has data and the first increment is a visible rise."""
    from app.domain.transfer import FailureReason

    TRANSFERS.labels(outcome="accepted", failure_reason="")
    TRANSFERS.labels(outcome="success", failure_reason="")
    for reason in FailureReason:
        TRANSFERS.labels(outcome="failed", failure_reason=reason.value)
    for source in ("scanner", "reconciliation"):
        LEDGER_MISMATCHES.labels(source=source)
    for topic in ("requests", "results"):
        for kind in ("malformed", "poison", "retries_exhausted"):
            DEAD_LETTERS.labels(topic=topic, kind=kind)
    for action in ("resent", "locked_sent", "completed_success", "completed_failed", "failed_not_locked", "mismatch"):
        SCAN_ACTIONS.labels(action=action)


_initialise_series()


# -- a transfer's progress: a counter, a latency, and one log line per step ---
# Called by the handlers after each write; no I/O beyond the log line.

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
