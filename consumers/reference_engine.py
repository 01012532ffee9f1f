"""A reference balance engine, standing in for the exchange's own.

It applies each request exactly once (deduplicated by request id) and
answers it; a request it sees again gets the same answer again, which the
settlement consumer treats as the harmless duplicate it is. It works in
batches: a batch of requests is decided in one SQLite transaction, then all
the answers are published together, and only once every one is acknowledged
does the bus commit the batch's offsets. It can be told
to reject, so the reject path can be driven end to end:

* `reject_suffix`: reject every request whose amount, in minor units,
  ends with these digits (REFERENCE_ENGINE_REJECT_SUFFIX, in
  app.config.ReferenceEngineSettings);
* `reject(request_id)`: reject that one request.

A batch (one message, docs/messages.md) is decided as a whole: rejected if
the batch's id or any leg's is to be rejected, or any leg's amount matches
the reject rule; confirmed otherwise. It is answered once, for the batch.

Run against Kafka with `python -m consumers.reference_engine`. A stand-in
for dev and tests only: the production composition root (app/bootstrap.py)
knows nothing of it; in embedded mode the worker wires it (consumers/worker.py).
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
from collections.abc import Sequence
from urllib.parse import urlparse

from app.adapters.sqlite_util import SqliteDatabase
from app.domain.transfer import Outcome
from app.ports.bus import AnyEngineRequest, EngineBatchRequest, EngineBus, EngineResult, ServiceBus

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    request_id INTEGER PRIMARY KEY, outcome TEXT NOT NULL, reason TEXT,
    times_seen INTEGER NOT NULL DEFAULT 1
);
"""


class ReferenceEngine:
    def __init__(self, bus: EngineBus, reject_suffix: str = "", db_path: str = ":memory:") -> None:
        self.bus = bus
        self.reject_suffix = reject_suffix
        self._rejects: set[int] = set()
        self._db = SqliteDatabase(db_path, "reference-engine", _SCHEMA)

    def reject(self, request_id: int) -> None:
        self._rejects.add(request_id)

    def _decide(self, request: AnyEngineRequest) -> tuple[Outcome, str | None]:
        if isinstance(request, EngineBatchRequest):
            ids = {request.batch_id, *(leg.request_id for leg in request.legs)}
            amounts = [leg.amount_units for leg in request.legs]
        else:
            ids, amounts = {request.request_id}, [request.amount_units]
        if ids & self._rejects:
            return Outcome.REJECTED, "rejected on request"
        if self.reject_suffix and any(str(amount).endswith(self.reject_suffix) for amount in amounts):
            return Outcome.REJECTED, "reference engine reject rule"
        return Outcome.CONFIRMED, None

    def handle_batch(self, requests: Sequence[AnyEngineRequest]) -> None:
        # Decided and durable before any answer leaves: a crash after the
        # commit means the batch comes again and gets the same answers.
        with self._db.transaction() as conn:
            results = [self._decide_once(conn, request) for request in requests]
        self.bus.publish_results(results)
        for result in results:
            # One line per answer, under the POST's trace id: one grep follows a transfer here too.
            log.info(
                "engine answered %s",
                result.outcome,
                extra={"request_id": str(result.request_id), "trace_id": result.trace_id, "reason": result.reason},
            )

    def handle(self, request: AnyEngineRequest) -> None:
        self.handle_batch([request])

    def _decide_once(self, conn: sqlite3.Connection, request: AnyEngineRequest) -> EngineResult:
        # A request twice in one batch finds its own row from earlier in this transaction.
        row = conn.execute("SELECT outcome, reason FROM applied WHERE request_id = ?", (request.request_id,)).fetchone()
        if row is None:
            outcome, reason = self._decide(request)
            conn.execute(
                "INSERT INTO applied (request_id, outcome, reason) VALUES (?, ?, ?)",
                (request.request_id, outcome, reason),
            )
        else:
            outcome, reason = Outcome(row["outcome"]), row["reason"]
            conn.execute("UPDATE applied SET times_seen = times_seen + 1 WHERE request_id = ?", (request.request_id,))
        batch = isinstance(request, EngineBatchRequest)
        return EngineResult(request.request_id, outcome, reason, trace_id=request.trace_id, batch=batch)

    def applied(self) -> dict[int, str]:
        """What the engine applied, by request id: each appears once, by construction."""
        with self._db.reading() as conn:
            rows = conn.execute("SELECT request_id, outcome FROM applied").fetchall()
        return {row["request_id"]: row["outcome"] for row in rows}

    def run(self, stop: threading.Event) -> None:
        log.info("reference engine started")
        self.bus.consume_requests(self.handle_batch, stop)


def make_engine_bus(url: str, service_bus: ServiceBus | None = None) -> EngineBus:
    """The engine's side of the bus.

    In-process the two sides must share one link, so `service_bus` (the
    service's side, in this same process) is required there; over Kafka the
    engine side has clients of its own, and usually runs in its own process.
    """
    scheme = urlparse(url).scheme
    if scheme == "inprocess":
        from app.adapters.inprocess_bus import InProcessServiceBus

        if not isinstance(service_bus, InProcessServiceBus):
            raise ValueError("an in-process bus's engine side lives in the process of its service side")
        return service_bus.engine_side()
    if scheme == "kafka":
        from app.adapters.kafka_bus import KafkaEngineBus

        return KafkaEngineBus.from_url(url)
    raise ValueError(f"BUS_URL scheme {scheme!r} is not supported")


def main() -> None:
    from app.config import ReferenceEngineSettings, Settings
    from app.logging_setup import configure_logging
    from app.observability.metrics import start_exporter

    settings, own = Settings(), ReferenceEngineSettings()
    configure_logging("engine", settings)
    start_exporter(own.metrics_port, settings.metrics_addr)
    # Its own process, so only a networked bus (Kafka) makes sense here.
    bus = make_engine_bus(settings.bus_url)
    engine = ReferenceEngine(bus, own.reject_suffix, own.db_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    engine.run(stop)
    bus.close()


if __name__ == "__main__":
    main()
