"""The alert rules, checked and unit-tested by promtool, and tied to the runbook and the metrics.

`promtool check rules` and `promtool test rules` run here, so `make test`
runs them; promtool comes from Debian's `prometheus` package, installed by
tests/support/prometheus.py when missing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import app.observability.metrics  # noqa: F401 - registers every metric
from app.config import PROJECT_ROOT
from tests.support.prometheus import ensure_prometheus

RULES = PROJECT_ROOT / "ops" / "prometheus"
ALERTS = RULES / "alerts.yml"
THRESHOLDS = RULES / "thresholds.yml"
RULE_TESTS = sorted((RULES / "tests").glob("*_test.yml"))
RUNBOOK = PROJECT_ROOT / "docs" / "runbook.md"
DASHBOARD = PROJECT_ROOT / "ops" / "grafana" / "internal-transfer.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_prometheus()[0]


def alert_names() -> list[str]:
    return re.findall(r"^\s+- alert: (\w+)$", ALERTS.read_text(), re.MULTILINE)


def test_promtool_check_rules_accepts_every_rule_file(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(ALERTS), str(THRESHOLDS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


def test_promtool_test_rules_pass(promtool: str) -> None:
    assert RULE_TESTS, "no rule tests found"
    result = subprocess.run(
        [promtool, "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True, cwd=RULES / "tests"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = "\n".join(path.read_text() for path in RULE_TESTS)
    # Each alert_rule_test entry: its alertname, then either `exp_alerts: []` or expected alerts.
    entries = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", tests)
    firing = {name for name, empty in entries if not empty}
    quiet = {name for name, empty in entries if empty}
    names = set(alert_names())
    assert len(names) >= 10
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"


def test_every_alert_links_to_its_own_runbook_section() -> None:
    text = ALERTS.read_text()
    urls = re.findall(r"runbook_url: (\S+)", text)
    assert len(urls) == len(alert_names())
    headings = {heading.strip().lower() for heading in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.MULTILINE)}
    for name, url in zip(alert_names(), urls, strict=True):
        assert url == f"docs/runbook.md#{name.lower()}"
        assert name.lower() in headings, f"docs/runbook.md has no section {name}"


def _exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        # Samples of labelled metrics exist once a label is used; the family says what they will be.
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


@pytest.mark.parametrize("source", [ALERTS, DASHBOARD], ids=lambda p: p.name)
def test_rules_and_dashboard_use_only_metrics_the_service_exports(source: Path) -> None:
    used = set(re.findall(r"\binternal_transfer_[a-z_]+", source.read_text()))
    assert used, f"{source.name} names no metric"
    assert used - _exported_names() == set()


def test_the_example_scrape_config_loads_the_rules(promtool: str) -> None:
    example = RULES / "prometheus.example.yml"
    result = subprocess.run([promtool, "check", "config", str(example)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout and "thresholds.yml" in result.stdout
