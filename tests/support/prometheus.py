"""Debian's Prometheus and promtool for the tests: installed on demand, run on loopback, stopped by pid.

`ensure_prometheus()` installs the `prometheus` package when promtool is
missing (idempotent, under a lock, with services kept from starting: the
package would otherwise start a system Prometheus of its own). A test's
Prometheus listens on a free loopback port, keeps its data in the test's
directory, and is stopped by the pid it was started with.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.processes import ServiceProcess, free_port

PACKAGE = "prometheus"
_LOCK = Path("/tmp/internal-transfer-prometheus-install.lock")
_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def _binaries() -> tuple[str, str] | None:
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    return (promtool, prometheus) if promtool and prometheus else None


@contextlib.contextmanager
def _no_service_starts() -> Iterator[None]:
    """Debian's maintainer scripts ask policy-rc.d before starting a service: 101 means no."""
    if _POLICY_RC_D.exists():
        yield
        return
    _POLICY_RC_D.write_text(
        "#!/bin/sh\n# Left by the internal-transfer tests while installing; removed after.\nexit 101\n"
    )
    _POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        _POLICY_RC_D.unlink(missing_ok=True)


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
    with _no_service_starts():
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
            # A fresh machine has no package lists yet.
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900, check=True)
            subprocess.run(install, env=env, capture_output=True, timeout=900, check=True)


def ensure_prometheus() -> tuple[str, str]:
    """(promtool, prometheus), installing Debian's package if needed; skips or fails the test if impossible."""
    found = _binaries()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        _skip_or_fail("promtool is missing and cannot be installed here (needs root and apt-get)")
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be installing it right now
        if _binaries() is None:
            _apt_install()
    found = _binaries()
    if found is None:
        _skip_or_fail(f"installing the {PACKAGE} package gave no promtool/prometheus")
    assert found is not None
    return found


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("REQUIRE_REAL_BACKENDS") == "1":
        pytest.fail(f"{reason} (required under REQUIRE_REAL_BACKENDS=1)")
    pytest.skip(reason)


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
