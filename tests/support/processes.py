"""Start the service as real processes for end-to-end tests; stop them by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from app.config import PROJECT_ROOT
from tests.support.crash_points import with_hook


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    """One process we started, known by its pid, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=PROJECT_ROOT,
            env=with_hook(self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if not self.alive():
            return
        assert self.process is not None
        # The process leads its own session, so this reaches gunicorn's
        # workers too, and nothing we did not start.
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def service_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CRASH_POINTS"}
    env.update(
        {
            "STORE_URL": f"sqlite:///{var_dir}/store.db",
            "LEDGER_URL": f"embedded:///{var_dir}/ledger.db",
            "BUS_URL": "inprocess://",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(overrides)
    return env


def gunicorn(port: int, env: dict[str, str], log_dir: Path, name: str = "web") -> ServiceProcess:
    bin_dir = Path(sys.executable).parent
    argv = [str(bin_dir / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "wsgi:app"]
    return ServiceProcess(name, argv, env, log_dir)


def worker(env: dict[str, str], log_dir: Path, name: str = "worker") -> ServiceProcess:
    return ServiceProcess(name, [sys.executable, "-m", "consumers.worker"], env, log_dir)


def wait_until_ready(base_url: str, process: ServiceProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            if requests.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{process.name} not ready in {timeout}s:\n{process.log_tail()}")
