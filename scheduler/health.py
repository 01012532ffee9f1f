"""The worker's health probe: backends up or down, consumer lag and dead letters, as gauges.

Every few seconds (HEALTH_INTERVAL_SECONDS, 10 by default): a ping of each
backend, and, on Kafka, the groups' lag and the dead-letter topics' depth
read from the brokers. Off the request path by design.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from apscheduler.schedulers.base import BaseScheduler

from app.bootstrap import Container
from app.observability.metrics import BACKEND_UP, CONSUMER_LAG, DLQ_MESSAGES

if TYPE_CHECKING:
    from app.adapters.kafka_monitor import KafkaMonitor

log = logging.getLogger(__name__)


class HealthProbe:
    def __init__(self, container: Container, monitor: KafkaMonitor | None = None) -> None:
        self.container = container
        # The bus's lag reader (app.bootstrap.make_bus_monitor); None where the bus has no brokers.
        self.monitor = monitor
        self._lag_series: set[tuple[str, str]] = set()

    def run(self) -> None:
        pings: dict[str, Callable[[], None]] = {
            "store": self.container.store.ping,
            "ledger": self.container.ledger.ping,
            "bus": self.container.bus.ping,
        }
        for backend, ping in pings.items():
            try:
                ping()
            except Exception as exc:
                log.warning("health: %s is down: %s", backend, exc)
                BACKEND_UP.labels(backend=backend).set(0)
            else:
                BACKEND_UP.labels(backend=backend).set(1)
        if self.monitor is not None:
            self._sample_bus()

    def _sample_bus(self) -> None:
        assert self.monitor is not None
        try:
            backlog = self.monitor.sample()
        except Exception as exc:
            # The bus's own ping says whether Kafka is down; stale lag is dropped, not kept.
            log.warning("health: cannot read consumer lag: %r", exc)
            for labels in self._lag_series:
                CONSUMER_LAG.remove(*labels)
            self._lag_series.clear()
            return
        seen: set[tuple[str, str]] = set()
        for (topic, partition), lag in backlog.lag.items():
            CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(lag)
            seen.add((topic, str(partition)))
        for gone_topic, gone_partition in self._lag_series - seen:
            # A partition that went away (fewer partitions, a deleted topic) leaves no stale value.
            CONSUMER_LAG.remove(gone_topic, gone_partition)
        self._lag_series = seen
        for topic, depth in backlog.dead_letters.items():
            DLQ_MESSAGES.labels(topic=topic).set(depth)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


def _probe_safely(probe: HealthProbe) -> None:
    try:
        probe.run()
    except Exception:
        log.exception("health probe failed")


def add_health_probe(scheduler: BaseScheduler, probe: HealthProbe, interval_seconds: float) -> None:
    scheduler.add_job(
        _probe_safely,
        "interval",
        args=[probe],
        seconds=interval_seconds,
        id="health-probe",
        max_instances=1,
        coalesce=True,
    )
