"""The worker is wired from the settings the composition root was given; the reference engine runs only in-process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from app.bootstrap import Container, build, make_bus_monitor
from app.config import ReferenceEngineSettings
from consumers.worker import BackgroundWorkers, embedded_engine
from tests.conftest import embedded_settings


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    built = build(
        embedded_settings(
            tmp_path,
            reconcile_interval_seconds=123,
            reconcile_window_seconds=600,
            reconcile_grace_seconds=4,
            reconcile_limit=77,
            health_interval_seconds=7,
            events_relay_interval_seconds=11,
            scanner_interval_seconds=3,
        )
    )
    yield built
    built.close()


def test_the_reconciliation_policy_is_the_settings(container: Container) -> None:
    policy = container.reconciliation.policy
    assert (policy.window, policy.grace, policy.limit) == (timedelta(seconds=600), timedelta(seconds=4), 77)


def test_every_job_runs_at_the_interval_its_setting_gives(container: Container) -> None:
    workers = BackgroundWorkers(container, embedded_engine(container, ReferenceEngineSettings(reject_suffix="13")))
    workers.start()
    try:
        assert workers._scheduler is not None
        intervals = {job.id: job.trigger.interval for job in workers._scheduler.get_jobs()}
        assert intervals == {
            "recovery-scan": timedelta(seconds=3),
            "reconciliation": timedelta(seconds=123),
            "event-relay": timedelta(seconds=11),
            "health-probe": timedelta(seconds=7),
        }
        assert workers.engine is not None and workers.engine.reject_suffix == "13"
    finally:
        workers.shutdown()


def test_the_reference_engine_runs_only_beside_an_in_process_bus(container: Container) -> None:
    assert embedded_engine(container, ReferenceEngineSettings()) is not None
    on_kafka = replace(container, settings=replace(container.settings, bus_url="kafka://127.0.0.1:1"))
    assert embedded_engine(on_kafka, ReferenceEngineSettings()) is None


def test_the_composition_root_picks_the_bus_monitor_by_the_bus_url() -> None:
    from app.adapters.kafka_monitor import KafkaMonitor

    assert make_bus_monitor("inprocess://") is None
    monitor = make_bus_monitor("kafka://127.0.0.1:1?topic_prefix=t-")  # built, never connected
    assert isinstance(monitor, KafkaMonitor) and monitor.topics.requests == "t-internal_transfer.requests"
    monitor.close()
