"""One way to get both ends of a bus, whatever implements it, for the shared contract suite.

A kit stands for one test's topics and consumer groups: every `service()` /
`engine()` it makes is connected to the same ones, so a second consumer is
a restart (or another member of the group), and dead letters can be read back.
Options are the Kafka URL's names: max_batch, max_attempts, retry_backoff_ms.
"""

from __future__ import annotations

import time
from typing import Protocol

from app.adapters.bus_delivery import DeliveryPolicy
from app.adapters.inprocess_bus import InProcessEngineBus, InProcessLink, InProcessServiceBus
from app.ports.bus import EngineBus, ServiceBus


class BusKit(Protocol):
    def service(self, **options: int) -> ServiceBus: ...

    def engine(self, **options: int) -> EngineBus: ...

    def dead_letters(self, side: str, count: int, deadline_seconds: float = 30.0) -> list[dict[str, object]]: ...


class InProcessKit:
    def __init__(self) -> None:
        self.link = InProcessLink()

    @staticmethod
    def _policy(max_batch: int = 500, max_attempts: int = 5, retry_backoff_ms: int = 500) -> DeliveryPolicy:
        backoff = retry_backoff_ms / 1000
        return DeliveryPolicy(max_batch, max_attempts, backoff, max(backoff, 5.0))

    def service(self, **options: int) -> InProcessServiceBus:
        return InProcessServiceBus(self.link, self._policy(**options))

    def engine(self, **options: int) -> InProcessEngineBus:
        return InProcessEngineBus(self.link, self._policy(**options))

    def dead_letters(self, side: str, count: int, deadline_seconds: float = 30.0) -> list[dict[str, object]]:
        topic = self.link.requests.name if side == "requests" else self.link.results.name
        deadline = time.monotonic() + deadline_seconds
        while True:
            mine = [letter for letter in self.link.dead_letters if letter["source_topic"] == topic]
            if len(mine) >= count or time.monotonic() > deadline:
                return mine[:count]
            time.sleep(0.05)
