"""The Grafana dashboard: importable, on a datasource variable, with the panels on-call needs.

Every query is also run against a real Prometheus in tests/e2e/test_observability.py.
"""

from __future__ import annotations

import json
from typing import Any

from app.config import PROJECT_ROOT

DASHBOARD = PROJECT_ROOT / "ops" / "grafana" / "internal-transfer.json"


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    return [(panel["title"], target["expr"]) for panel in load()["panels"] for target in panel["targets"]]


def test_the_dashboard_reads_from_a_prometheus_datasource_variable() -> None:
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()


def test_panels_cover_what_on_call_needs() -> None:
    queries = " ".join(expr for _, expr in dashboard_queries())
    for metric in (
        "internal_transfer_http_request_duration_seconds_bucket",
        "internal_transfer_transfers_total",
        "internal_transfer_settle_duration_seconds_bucket",
        "internal_transfer_open",
        "internal_transfer_oldest_pending_seconds",
        "internal_transfer_scanner_last_success_timestamp_seconds",
        "internal_transfer_reconcile_mismatches",
        "internal_transfer_dlq_messages",
        "internal_transfer_consumer_lag",
        "internal_transfer_dependency_call_duration_seconds_bucket",
    ):
        assert metric in queries, metric
    titles = [panel["title"] for panel in load()["panels"]]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    ids = [panel["id"] for panel in load()["panels"]]
    assert len(ids) == len(set(ids))
