"""Debian packages the tests need (Prometheus, nginx): installed on demand, with no service started.

Idempotent and under a lock (another test run may be installing at the same
time). The packages' maintainer scripts would start system services of
their own; policy-rc.d keeps them from it. Where installing is impossible
(not root, no apt-get), the test skips and says why, or fails under
REQUIRE_REAL_BACKENDS=1.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
T = TypeVar("T")


def skip_or_fail(reason: str) -> None:
    if os.environ.get("REQUIRE_REAL_BACKENDS") == "1":
        pytest.fail(f"{reason} (required under REQUIRE_REAL_BACKENDS=1)")
    pytest.skip(reason)


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


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    with _no_service_starts():
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
            # A fresh machine has no package lists yet.
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900, check=True)
            subprocess.run(install, env=env, capture_output=True, timeout=900, check=True)


def ensure_package(package: str, found: Callable[[], T | None], what: str) -> T:
    """What `found` finds, installing `package` first if it finds nothing; skips or fails the test if impossible."""
    present = found()
    if present is not None:
        return present
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        skip_or_fail(f"{what} is missing and cannot be installed here (needs root and apt-get)")
    with Path(f"/tmp/internal-transfer-{package}-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if found() is None:
            _apt_install(package)
    present = found()
    if present is None:
        skip_or_fail(f"installing the {package} package gave no {what}")
    assert present is not None
    return present
