"""/docs and /redoc render the operations in a real headless browser, with the internet out of reach.

Needs Debian's chromium (`make test` installs it). It is a hard failure, not a
skip, when missing: the test is the only proof the pages render.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_gunicorn import RunningService, start_service

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Every host name but loopback fails to resolve: a page that needs a CDN renders blank.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Let the page's scripts run (and fetch /openapi.json) before the DOM is dumped.
    "--virtual-time-budget=15000",
    "--dump-dom",
]

SUMMARIES = [
    "Move funds between your own funding and spot accounts",
    "Credit a user's funding account",
    "The supported assets, their decimals and transfer limits (public: no token)",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: `make test` installs Debian's chromium package"
    return found


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    running = start_service(tmp_path_factory.mktemp("docs"))
    yield running
    running.process.stop()


def rendered_dom(url: str, profile: Path) -> str:
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout.decode()


def test_swagger_ui_lists_the_operations_offline(service: RunningService, tmp_path: Path) -> None:
    dom = rendered_dom(f"{service.base_url}/docs", tmp_path)
    assert "opblock" in dom, dom[-2000:]  # Swagger UI's markup for an operation
    for path in ("/api/v1/user/internal_transfer", "/api/v1/admin/deposits", "/api/v1/assets"):
        assert path in dom
    for summary in SUMMARIES:
        assert summary.replace("'", "&#39;") in dom or summary in dom, summary


def test_redoc_lists_the_operations_offline(service: RunningService, tmp_path: Path) -> None:
    dom = rendered_dom(f"{service.base_url}/redoc", tmp_path)
    for summary in SUMMARIES:
        assert summary.replace("'", "&#39;") in dom or summary in dom, summary
