"""The worker's health probe sets one gauge per backend from its ping."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import REGISTRY

from app.ports.errors import DependencyUnavailable
from scheduler.health import HealthProbe


class _Backend:
    def __init__(self, up: bool) -> None:
        self.up = up

    def ping(self) -> None:
        if not self.up:
            raise DependencyUnavailable("x", "down")


def _up(backend: str) -> float | None:
    return REGISTRY.get_sample_value("internal_transfer_backend_up", {"backend": backend})


def test_each_backend_is_up_or_down_by_its_ping() -> None:
    ledger = _Backend(up=False)
    container: Any = SimpleNamespace(
        settings=SimpleNamespace(bus_url="inprocess://"), store=_Backend(True), ledger=ledger, bus=_Backend(True)
    )
    probe = HealthProbe(cast(Any, container))
    assert probe.monitor is None  # no Kafka, no lag to read
    probe.run()
    assert (_up("store"), _up("ledger"), _up("bus")) == (1.0, 0.0, 1.0)
    ledger.up = True
    probe.run()
    assert _up("ledger") == 1.0
