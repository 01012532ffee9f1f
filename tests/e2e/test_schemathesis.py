"""schemathesis against the served spec, with all checks, as a user and as an operator: 0 failures, no 5xx.

The service runs under gunicorn on loopback on the embedded backends (fast, and
the same server as production). Each role gets a time budget, so the whole run
is bounded to about two minutes; the seed is fixed so a failure reproduces.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.api.auth import issue_token
from tests.conftest import TEST_TOKEN_POLICY
from tests.e2e.test_gunicorn import RunningService, start_service

SECONDS_PER_ROLE = 55
SEED = 20261126

# Where a check is turned off, and why. Nothing else is: `--checks all`.
CONFIG = """
# Every check, as `--checks all` would (given on the command line, it would
# override the per-operation lines below, so it is given here).
[checks]
enabled = true

# negative_data_rejection: schema-violating requests must be refused. gunicorn
# refuses an over-long request line (414) or header (431) before the app sees
# it, and the app a body over 64 KiB (413); those are refusals too, and are
# added to the check's own list, which is otherwise kept.
[checks.negative_data_rejection]
expected-statuses = [
    "400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429", "431", "5xx",
]

# positive_data_acceptance: a request the schema accepts must not be refused. The
# spec states the rules the domain checks (app/api/openapi.py: the account pairs and
# the asset of a transfer, each asset's amount decimals and bounds, a limit's range,
# a reason that is not blank), so the check runs everywhere, with two exceptions.

# Transfers and batches: a valid request is refused with 422 when the account lacks
# the funds (INSUFFICIENT_BALANCE) or the day's quota is used up (DAILY_LIMIT_EXCEEDED):
# the state of the account, which no schema of the request can state. 422 is allowed
# there, and only there; any 400 still fails the check.
[[operations]]
include-path = "/api/v1/user/internal_transfer"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

[[operations]]
include-path = "/api/v1/user/internal_transfer/batch"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# History: `cursor` is opaque. The spec says it is not empty; only a cursor a page
# returned is valid, and stating its inner format would make it part of the contract.
[[operations]]
include-path = "/api/v1/user/internal_transfer/history"
include-method = "GET"
checks.positive_data_acceptance.enabled = false
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    running = start_service(tmp_path_factory.mktemp("schemathesis"))
    running.deposit(3001, "1000")  # so some generated transfers succeed
    yield running
    running.process.stop()


@pytest.mark.parametrize("operator", [False, True], ids=["user", "operator"])
def test_schemathesis_finds_nothing(service: RunningService, operator: bool, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    token = issue_token(TEST_TOKEN_POLICY, 1 if operator else 3001, operator=operator)
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--no-color",
            "--config-file",
            str(config),
            "run",
            f"{service.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-time",
            str(SECONDS_PER_ROLE),
            "--seed",
            str(SEED),
            # One worker: hypothesis describes its strategies with ast.parse, which
            # CPython 3.11 does not make thread-safe (a SystemError in the run).
            "--workers",
            "1",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS_PER_ROLE + 120,
        check=False,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Failures:" not in output and "Errors:" not in output, output[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts, output[-3000:]
    generated, passed = int(counts.group(1)), int(counts.group(2))
    assert generated > 500 and passed == generated, output[-3000:]  # it really ran, and every case passed
