"""Debian's Prometheus and promtool for the tests: installed on demand, run on loopback, stopped by pid.

`ensure_prometheus()` installs the `prometheus` package when promtool is
missing (idempotent, under a lock, with services kept from starting: the
package would otherwise start a system Prometheus of its own). A test's
Prometheus listens on a free loopback port, keeps its data in the test's
directory, and is stopped by the pid it was started with.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.debian import ensure_package
from tests.support.processes import ServiceProcess, free_port

PACKAGE = "prometheus"


def _binaries() -> tuple[str, str] | None:
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    return (promtool, prometheus) if promtool and prometheus else None


def ensure_prometheus() -> tuple[str, str]:
    """(promtool, prometheus), installing Debian's package if needed; skips or fails the test if impossible."""
    return ensure_package(PACKAGE, _binaries, "promtool/prometheus")


@dataclass
class PrometheusServer:
    """One Prometheus of a test's own: its config, data and log in `directory`."""

    binary: str
    directory: Path
    rule_files: list[Path]
    # job name -> "host:port" targets, each scraped at /metrics.
    targets: dict[str, list[str]]
    interval: str = "1s"
    port: int = field(default_factory=free_port)
    process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        lines = [
            "global:",
            f"  scrape_interval: {self.interval}",
            f"  evaluation_interval: {self.interval}",
            f"  scrape_timeout: {self.interval}",
            "rule_files:",
            *(f"  - {path}" for path in self.rule_files),
            "scrape_configs:",
        ]
        for job, targets in self.targets.items():
            lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: [{', '.join(targets)}]"]
        return "\n".join(lines) + "\n"

    def start(self) -> PrometheusServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(self.config())
        argv = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process = ServiceProcess("prometheus", argv, dict(os.environ), self.directory).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"prometheus exited:\n{self.process.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready:\n{self.process.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result; raises on a query error."""
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alert_states(self, name: str) -> set[str]:
        """The states (pending, firing) of the alert `name` right now."""
        body = requests.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        return {alert["state"] for alert in body["data"]["alerts"] if alert["labels"].get("alertname") == name}

    def wait_for_alert(self, name: str, state: str, timeout: float) -> float:
        """Wait until `name` is in `state`; return how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if state in self.alert_states(name):
                return time.monotonic() - started
            time.sleep(0.5)
        raise AssertionError(f"{name} not {state} within {timeout}s (now {self.alert_states(name) or 'inactive'})")
