"""A throwaway single-replica TigerBeetle server for tests.

The binary is not part of this project: it is found through the
`TIGERBEETLE_BIN` environment variable or as `tigerbeetle` on PATH.
The server listens on loopback only, keeps its data file and log in its
own directory, and is stopped by the pid of the process started here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import tigerbeetle as tb

STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0


def find_tigerbeetle_binary() -> str | None:
    """The server binary, or None when there is none to use."""
    configured = os.environ.get("TIGERBEETLE_BIN", "").strip()
    if configured:
        path = Path(configured).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which("tigerbeetle")


def binary_version(binary: str) -> str:
    result = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30, check=False)
    return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else "unknown"


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: a pre-exec hook giving the server SIGKILL when the thread that started it dies.

    So no server outlives a test run that crashed. Resolved here, in the parent:
    the hook runs between fork and exec and must only make the system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = ctypes.c_int(1), ctypes.c_ulong(signal.SIGKILL)

    def hook() -> None:
        prctl(pr_set_pdeathsig, sigkill)

    return hook


_PRE_EXEC = _parent_death_signal()


def answers(address: str, timeout_seconds: float, cluster_id: int = 0) -> bool:
    """Whether a TigerBeetle client request to `address` is answered within the time.

    The client never times out by itself; a call still blocked at the
    deadline is released by closing the client.
    """
    client = tb.ClientSync(cluster_id=cluster_id, replica_addresses=address)
    answered = threading.Event()

    def request() -> None:
        with contextlib.suppress(Exception):
            client.lookup_accounts([1])
            answered.set()

    worker = threading.Thread(target=request, daemon=True)
    worker.start()
    worker.join(timeout_seconds)
    with contextlib.suppress(Exception):
        client.close()
    worker.join(5)
    return answered.is_set()


class TigerBeetleServer:
    """`start()`, `stop()`, `kill()`, `restart()`; the data file outlives stops and kills."""

    def __init__(self, binary: str, directory: Path, cluster_id: int = 0) -> None:
        self.binary = binary
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cluster_id = cluster_id
        self.data_file = self.directory / f"{cluster_id}_0.tigerbeetle"
        self.log_path = self.directory / "tigerbeetle.log"
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        if self._port is None:
            raise RuntimeError("the TigerBeetle server was never started")
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"tigerbeetle://{self.address}?cluster_id={self.cluster_id}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _run(self, *args: str) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"$ tigerbeetle {' '.join(args)}\n".encode())
            log.flush()
            subprocess.run([self.binary, *args], stdout=log, stderr=subprocess.STDOUT, timeout=120, check=True)

    def start(self) -> TigerBeetleServer:
        if self.running:
            return self
        if not self.data_file.exists():
            self._run(
                "format",
                f"--cluster={self.cluster_id}",
                "--replica=0",
                "--replica-count=1",
                "--development",
                str(self.data_file),
            )
        # A fresh port at first; the same one on restart, since clients know it.
        attempts = 3 if self._port is None else 1
        for attempt in range(attempts):
            if self._port is None or attempt > 0:
                self._port = _free_loopback_port()
            if self._launch():
                return self
        raise RuntimeError(f"TigerBeetle did not start on {self.address}; log:\n{self.log_tail()}")

    def _launch(self) -> bool:
        with self.log_path.open("ab") as log:
            log.write(f"$ tigerbeetle start --addresses={self.address}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [self.binary, "start", f"--addresses={self.address}", "--development", str(self.data_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_PRE_EXEC,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not self.running:
                return False  # e.g. the port was taken meanwhile
            if self._port_open() and answers(self.address, min(5.0, deadline - time.monotonic()), self.cluster_id):
                return True
            time.sleep(0.05)
        self.kill()
        return False

    def _port_open(self) -> bool:
        assert self._port is not None
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", self._port)) == 0

    def _signal(self, signum: int) -> None:
        assert self._process is not None
        if self._process.poll() is None:
            os.kill(self._process.pid, signum)

    def kill(self) -> None:
        """SIGKILL, like a crash or a power cut; the data file stays."""
        if self._process is None:
            return
        self._signal(signal.SIGKILL)
        self._process.wait(STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self._process is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> TigerBeetleServer:
        """Start again on the same data file and port (stopping it first if it runs)."""
        self.stop()
        return self.start()

    def remove_data(self) -> None:
        """Delete the data file (about 1 GiB); the log stays for post-mortems."""
        self.stop()
        self.data_file.unlink(missing_ok=True)

    def __enter__(self) -> TigerBeetleServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.remove_data()
