"""The whole service on real backends, as separate processes, for e2e and chaos tests.

web (gunicorn, two workers) + worker (settlement consumer and scanner) +
the reference engine, on Cassandra and Kafka, and on TigerBeetle when its
binary is found (else the embedded ledger file, shared by the processes).
Each stack gets its own keyspace and topic prefix, so runs never mix.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from app.adapters.cassandra_store import CassandraTransferStore
from app.bootstrap import Container, build
from app.config import PROJECT_ROOT, Settings
from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET
from tests.support.cassandra_fixtures import store_url
from tests.support.processes import ServiceProcess, free_port, gunicorn, wait_until_ready
from tests.support.tigerbeetle_server import TigerBeetleServer, find_tigerbeetle_binary

REJECT_SUFFIX = "777"


def devservice(action: str, server: str) -> None:
    """Stop or start a dev server by its recorded pid (keeping its data)."""
    args = ["devservices/down", server] if action == "stop" else ["devservices/up", "--keep-state", server]
    subprocess.run(args, cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=300)


@dataclass
class Stack:
    directory: Path
    tigerbeetle: TigerBeetleServer | None = None
    port: int = field(default_factory=free_port)
    keyspace: str = field(default_factory=lambda: f"it_e2e_{uuid.uuid4().hex[:10]}")
    topic_prefix: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:10]}-")
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    # The /metrics ports: the gunicorn master's (WEB_METRICS_PORT), the worker's and the engine's.
    web_metrics_port: int = field(default_factory=free_port)
    worker_metrics_port: int = field(default_factory=free_port)
    engine_metrics_port: int = field(default_factory=free_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ledger_description(self) -> str:
        return "TigerBeetle" if self.tigerbeetle else "the embedded ledger"

    def env(self) -> dict[str, str]:
        kafka = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        ledger = self.tigerbeetle.url if self.tigerbeetle else f"embedded:///{self.directory}/ledger.db"
        env = {key: value for key, value in os.environ.items() if key != "CRASH_POINTS"}
        env.update(
            STORE_URL=store_url(self.keyspace),
            LEDGER_URL=ledger,
            BUS_URL=f"kafka://{kafka}?topic_prefix={self.topic_prefix}",
            JWT_SECRET=TEST_JWT_SECRET,
            OPERATOR_JWT_SECRET=TEST_OPERATOR_JWT_SECRET,
            WEB_CONCURRENCY="2",
            SCANNER_INTERVAL_SECONDS="1",
            REQUESTING_GRACE_SECONDS="5",
            RESEND_AFTER_SECONDS="5",
            REFERENCE_ENGINE_REJECT_SUFFIX=REJECT_SUFFIX,
            REFERENCE_ENGINE_DB=str(self.directory / "engine.db"),
            LOG_LEVEL="INFO",
            # These runs drive many transfers per user on purpose; the rate limit has tests of its own.
            TRANSFER_RATE_LIMIT="1000000 per second",
            READ_RATE_LIMIT="1000000 per second",
            WEB_METRICS_PORT=str(self.web_metrics_port),
            METRICS_PORT=str(self.worker_metrics_port),
            ENGINE_METRICS_PORT=str(self.engine_metrics_port),
        )
        return env

    def _process(self, name: str, env: dict[str, str]) -> ServiceProcess:
        if name == "web":
            return gunicorn(self.port, env, self.directory)
        module = "consumers.worker" if name == "worker" else "consumers.reference_engine"
        return ServiceProcess(name, [sys.executable, "-m", module], env, self.directory)

    def start(self, **overrides: str) -> Stack:
        if self.tigerbeetle is None and find_tigerbeetle_binary():
            self.tigerbeetle = TigerBeetleServer(find_tigerbeetle_binary() or "", self.directory / "tb").start()
        env = {**self.env(), **overrides}
        schema_owner = CassandraTransferStore.from_url(env["STORE_URL"])
        try:
            schema_owner.create_schema()
        finally:
            schema_owner.close()
        for name in ("engine", "worker", "web"):
            self.processes[name] = self._process(name, env).start()
        wait_until_ready(self.base_url, self.processes["web"], timeout=120)
        return self

    def restart(self, name: str, **overrides: str) -> None:
        self.processes[name].stop()
        self.processes[name] = self._process(name, {**self.env(), **overrides}).start()
        if name == "web":
            wait_until_ready(self.base_url, self.processes["web"], timeout=120)

    def ensure_running(self) -> None:
        for name, process in list(self.processes.items()):
            if not process.alive():
                self.restart(name)

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
        if self.tigerbeetle is not None:
            self.tigerbeetle.stop()
            self.tigerbeetle.remove_data()

    def container(self) -> Container:
        env = self.env()
        settings = Settings(
            store_url=env["STORE_URL"],
            ledger_url=env["LEDGER_URL"],
            bus_url="inprocess://",
            jwt_secret=TEST_JWT_SECRET,
            operator_jwt_secret=TEST_OPERATOR_JWT_SECRET,
        )
        return build(settings)

    def engine_applied(self) -> dict[int, str]:
        with sqlite3.connect(self.directory / "engine.db") as conn:
            return {row[0]: row[1] for row in conn.execute("SELECT request_id, outcome FROM applied")}

    def wait_quiet(self, container: Container, timeout: float = 300) -> float:
        """Wait until no transfer is open; return how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if not container.operations.list_open(1):
                    return time.monotonic() - started
            except Exception:  # a backend still coming back
                pass
            self.ensure_running()
            time.sleep(1)
        raise TimeoutError(f"still open after {timeout}s")
