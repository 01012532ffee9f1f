"""The settlement consumer: batches of engine results in, posts or voids out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from app.ports.bus import EngineResult, ServiceBus
from app.services.settle import Settle

log = logging.getLogger(__name__)


class SettlementConsumer:
    def __init__(self, bus: ServiceBus, settle: Settle) -> None:
        self.bus = bus
        self.settle = settle

    def handle_batch(self, results: Sequence[EngineResult]) -> None:
        # Duplicate, late and out-of-order results are harmless: the service
        # only ever moves a status forward, and the ledger resolves once. If
        # the batch fails, the bus hands its results over again one by one.
        self.settle.apply_results(results)

    def run(self, stop: threading.Event) -> None:
        log.info("settlement consumer started")
        self.bus.consume_results(self.handle_batch, stop)
