"""Background work: the settlement consumer and the recovery scanner.

`python -m consumers.worker` runs it as the Procfile's `worker` process; in
embedded mode the web process runs the same thing in threads.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading

from apscheduler.schedulers.background import BackgroundScheduler

from app.bootstrap import Container
from app.services.reconciliation import ReconciliationService
from consumers.reference_engine import ReferenceEngine
from consumers.settlement import SettlementConsumer
from scheduler.events import add_event_relay
from scheduler.health import HealthProbe, add_health_probe
from scheduler.reconcile import add_reconciliation, policy_from_env
from scheduler.recovery import start_scanner

log = logging.getLogger(__name__)


class BackgroundWorkers:
    def __init__(self, container: Container, with_reference_engine: bool) -> None:
        self.container = container
        self.stop = threading.Event()
        self.engine = (
            ReferenceEngine(container.engine_bus, container.settings.engine_reject_suffix)
            if with_reference_engine
            else None
        )
        self._threads: list[threading.Thread] = []
        self._scheduler: BackgroundScheduler | None = None
        self._probe: HealthProbe | None = None

    def start(self) -> None:
        consumer = SettlementConsumer(self.container.bus, self.container.transfers)
        runners = [("settlement", consumer.run)]
        if self.engine is not None:
            runners.append(("reference-engine", self.engine.run))
        for name, target in runners:
            thread = threading.Thread(target=target, args=(self.stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._scheduler = start_scanner(self.container.recovery, self.container.settings.scanner_interval_seconds)
        # Beside the scanner: reconciliation of what settled, and the backends' health.
        interval, policy = policy_from_env()
        add_reconciliation(self._scheduler, ReconciliationService(self.container.transfers, policy), interval)
        # The status events a crash or a failed publish left in the outbox.
        if self.container.events_relay is not None:
            add_event_relay(
                self._scheduler, self.container.events_relay, self.container.settings.events_relay_interval_seconds
            )
        self._probe = HealthProbe(self.container)
        add_health_probe(self._scheduler, self._probe)

    def shutdown(self) -> None:
        self.stop.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
        for thread in self._threads:
            thread.join(timeout=10)
        if self._probe is not None:
            self._probe.close()


def main() -> None:
    from app.bootstrap import build
    from app.config import Settings
    from app.logging_setup import configure_logging
    from app.observability.metrics import start_exporter_from_env

    configure_logging("worker")
    # `kill -USR1 <pid>` prints every thread's stack to stderr: where a wedged worker waits.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Its own port (METRICS_PORT): the worker serves no HTTP otherwise.
    start_exporter_from_env("METRICS_PORT")
    container = build(Settings())
    workers = BackgroundWorkers(container, with_reference_engine=container.settings.embedded_bus)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    workers.start()
    stopped.wait()
    workers.shutdown()
    container.close()


if __name__ == "__main__":
    main()
