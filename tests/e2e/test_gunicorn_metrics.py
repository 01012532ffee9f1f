"""gunicorn's multiprocess metrics directory: stale files cleared at start, a dead worker's live gauges removed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from tests.support.processes import free_port, gunicorn, service_env, wait_until_ready


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


def _wait_for(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_a_dead_workers_live_gauges_go_and_its_counts_stay(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier run")
    port, metrics_port = free_port(), free_port()
    env = service_env(
        tmp_path,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        SCANNER_INTERVAL_SECONDS="0.2",
        WEB_METRICS_PORT=str(metrics_port),
    )
    web = gunicorn(port, env, tmp_path).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, web)
        assert not (metrics_dir / "counter_999999.db").exists()
        (worker,) = _children(web.pid)
        requests.get(f"{base_url}/healthz", timeout=10)
        # The embedded scanner runs in the worker and sets its live gauges.
        _wait_for(lambda: any(metrics_dir.glob(f"gauge_live*_{worker}.db")))
        assert (metrics_dir / f"histogram_{worker}.db").exists()

        os.kill(worker, signal.SIGKILL)
        _wait_for(lambda: _children(web.pid) and _children(web.pid) != {worker})
        wait_until_ready(base_url, web)
        assert list(metrics_dir.glob(f"gauge_live*_{worker}.db")) == []
        # Counters and histograms of the dead worker still count.
        assert (metrics_dir / f"histogram_{worker}.db").exists()
        body = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        count = 'internal_transfer_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"}'
        assert any(line.startswith(count) and float(line.split()[-1]) >= 1 for line in body.splitlines())
    finally:
        web.stop()
