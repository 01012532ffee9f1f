"""Background work: the settlement consumer, the recovery scanner and the worker's other jobs.

`python -m consumers.worker` runs it as the Procfile's `worker` process; in
embedded mode the web process runs the same thing in threads
(`ensure_background_workers`, called by wsgi.py and gunicorn.conf.py). On
the in-process bus nobody else can answer the service's requests, so there
(and only there) the reference engine runs beside it: the production
composition root (app/bootstrap.py) never builds it.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from app.bootstrap import Container, make_bus_monitor
from app.config import ReferenceEngineSettings
from consumers.reference_engine import ReferenceEngine, make_engine_bus
from consumers.settlement import SettlementConsumer
from scheduler.events import add_event_relay
from scheduler.health import HealthProbe, add_health_probe
from scheduler.reconcile import add_reconciliation
from scheduler.recovery import start_scanner

log = logging.getLogger(__name__)


def embedded_engine(container: Container, settings: ReferenceEngineSettings | None = None) -> ReferenceEngine | None:
    """The reference engine on the in-process bus's engine side; None on any other bus."""
    if not container.settings.embedded_bus:
        return None
    settings = settings or ReferenceEngineSettings()
    return ReferenceEngine(make_engine_bus(container.settings.bus_url, container.bus), settings.reject_suffix)


class BackgroundWorkers:
    def __init__(self, container: Container, engine: ReferenceEngine | None = None) -> None:
        self.container = container
        self.stop = threading.Event()
        self.engine = engine
        self._threads: list[threading.Thread] = []
        self._scheduler: BackgroundScheduler | None = None
        self._probe: HealthProbe | None = None

    def start(self) -> None:
        settings = self.container.settings
        consumer = SettlementConsumer(self.container.bus, self.container.settle)
        runners = [("settlement", consumer.run)]
        if self.engine is not None:
            runners.append(("reference-engine", self.engine.run))
        for name, target in runners:
            thread = threading.Thread(target=target, args=(self.stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._scheduler = start_scanner(self.container.recovery, settings.scanner_interval_seconds)
        # Beside the scanner: reconciliation of what settled, and the backends' health.
        add_reconciliation(self._scheduler, self.container.reconciliation, settings.reconcile_interval_seconds)
        # The status events a crash or a failed publish left in the outbox.
        if self.container.events_relay is not None:
            add_event_relay(self._scheduler, self.container.events_relay, settings.events_relay_interval_seconds)
        self._probe = HealthProbe(self.container, make_bus_monitor(settings.bus_url))
        add_health_probe(self._scheduler, self._probe, settings.health_interval_seconds)

    def shutdown(self) -> None:
        self.stop.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
        for thread in self._threads:
            thread.join(timeout=10)
        if self._probe is not None:
            self._probe.close()
        if self.engine is not None:
            self.engine.bus.close()


_background_lock = threading.Lock()


def ensure_background_workers(app: Flask, engine_settings: ReferenceEngineSettings | None = None) -> None:
    """Start the in-process consumer and scanner (and engine) once, in embedded mode.

    Called from gunicorn's post-fork hook and on the first request under
    `flask run`, never at import, so CLI commands start no threads.
    """
    services: Container = app.extensions["internal_transfer"]
    if not services.settings.runs_background_workers:
        return
    with _background_lock:
        if "background_workers" in app.extensions:
            return
        workers = BackgroundWorkers(services, embedded_engine(services, engine_settings))
        workers.start()
        app.extensions["background_workers"] = workers


def main() -> None:
    from app.bootstrap import build
    from app.config import Settings
    from app.logging_setup import configure_logging
    from app.observability.metrics import start_exporter

    settings = Settings()
    configure_logging("worker", settings)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: where a wedged worker waits.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Its own port (METRICS_PORT): the worker serves no HTTP otherwise.
    start_exporter(settings.metrics_port, settings.metrics_addr)
    container = build(settings)
    workers = BackgroundWorkers(container, embedded_engine(container))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    workers.start()
    stopped.wait()
    workers.shutdown()
    container.close()


if __name__ == "__main__":
    main()
