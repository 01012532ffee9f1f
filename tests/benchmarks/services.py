"""The processes a benchmark run needs, started here and stopped by pid.

* the Cassandra and Kafka dev services: used when they answer, otherwise
  started with `devservices/up` and stopped with `devservices/down` (only
  those started here);
* a single-replica TigerBeetle in a temporary data file, when a binary is
  found (tests/support/tigerbeetle_server.py);
* the service's own processes: the Procfile's `web` and `worker` lines and
  the reference engine, run from any checkout of the repository.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.procstat import listening_pid

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_SERVERS = ("kafka", "cassandra")
_DEFAULT_PORTS = {"kafka": 9092, "cassandra": 9042}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class DevServices:
    """Kafka and Cassandra: reused when ready, else started here (and only those stopped again)."""

    root: Path = REPO_ROOT
    started: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def _ready(self, server: str) -> bool:
        status = subprocess.run(
            [str(self.root / "devservices" / "status"), server], cwd=self.root, capture_output=True, timeout=60
        )
        return status.returncode == 0

    def up(self) -> DevServices:
        external = {"kafka": "KAFKA_BOOTSTRAP_SERVERS", "cassandra": "CASSANDRA_HOSTS"}
        missing = [s for s in DEV_SERVERS if not os.environ.get(external[s]) and not self._ready(s)]
        if missing:
            log(f"starting dev services: {', '.join(missing)} (devservices/up)")
            self.started = missing
            out = subprocess.run(
                [str(self.root / "devservices" / "up"), *missing],
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"devservices/up failed:\n{out.stderr[-3000:]}")
        else:
            log("using the dev services that were already running")
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            "CASSANDRA_HOSTS": os.environ.get("CASSANDRA_HOSTS", "127.0.0.1"),
            "CASSANDRA_PORT": os.environ.get("CASSANDRA_PORT", "9042"),
        }
        return self

    def down(self) -> None:
        if self.started:
            log(f"stopping the dev services started here: {', '.join(self.started)}")
            subprocess.run([str(self.root / "devservices" / "down"), *self.started], cwd=self.root, timeout=300)
            self.started = []

    def pid(self, server: str) -> tuple[int | None, str]:
        """The server's pid and where it was found: its devservices pid file, else the listening socket."""
        pid_file = self.root / "var" / "devservices" / server / "server.pid"
        try:
            pid = int(pid_file.read_text().strip())
            if Path(f"/proc/{pid}").exists():
                return pid, "pid file"
        except (OSError, ValueError):
            pass
        port = int(self.env.get("CASSANDRA_PORT", "9042")) if server == "cassandra" else _DEFAULT_PORTS[server]
        if server == "kafka":
            port = int(self.env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092").split(",")[0].rsplit(":", 1)[1])
        listener = listening_pid(port)
        return listener, f"listener on port {port}" if listener else "not found"


def procfile_commands(service_dir: Path) -> dict[str, str]:
    commands: dict[str, str] = {}
    for line in (service_dir / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


def loopback_only(command: str) -> str:
    """The Procfile binds 0.0.0.0; a benchmark listens on loopback only."""
    return re.sub(r"\b0\.0\.0\.0\b", "127.0.0.1", command)


class Process:
    """One process started here in its own session; stopped by its pid (and its process group)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def shell_process(name: str, command: str, env: dict[str, str], cwd: Path, log_dir: Path) -> Process:
    """A Procfile line, run by sh with `exec`, so the pid is the command's own."""
    return Process(name, ["/bin/sh", "-c", f"exec {command}"], env, cwd, log_dir)


def venv_bin(service_dir: Path) -> Path:
    """The service checkout's virtualenv, else the one running this harness."""
    own = service_dir / ".venv" / "bin"
    return own if (own / "python").exists() else Path(sys.executable).parent


def flask_cli(service_dir: Path, env: dict[str, str], *args: str) -> str:
    """`flask --app wsgi ARGS` in the service checkout; its stdout."""
    out = subprocess.run(
        [str(venv_bin(service_dir) / "flask"), "--app", "wsgi", *args],
        cwd=service_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"flask {' '.join(shlex.quote(a) for a in args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip()


def wait_ready(url: str, process: Process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback http only
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{process.name} not ready at {url} in {timeout}s:\n{process.log_tail()}")
