"""The settlement consumer: engine results in, posts or voids out."""

from __future__ import annotations

import logging
import threading

from app.ports.bus import EngineResult, TransferBus
from app.services.transfers import TransferService

log = logging.getLogger(__name__)


class SettlementConsumer:
    def __init__(self, bus: TransferBus, transfers: TransferService) -> None:
        self.bus = bus
        self.transfers = transfers

    def handle(self, result: EngineResult) -> None:
        # Duplicate, late and out-of-order results are harmless: the service
        # only ever moves a status forward, and the ledger resolves once.
        self.transfers.apply_result(result)

    def run(self, stop: threading.Event) -> None:
        log.info("settlement consumer started")
        self.bus.consume_results(self.handle, stop)
