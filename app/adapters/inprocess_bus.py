"""An in-process TransferBus for embedded mode: two queues in one process."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

from app.ports.bus import (
    EngineRequest,
    EngineResult,
    PoisonMessage,
    RequestHandler,
    ResultHandler,
    TransferBus,
)

log = logging.getLogger(__name__)
Message = TypeVar("Message")

_POLL_SECONDS = 0.1
_REDELIVERY_DELAY_SECONDS = 0.5


class InProcessBus(TransferBus):
    def __init__(self) -> None:
        self._requests: queue.Queue[EngineRequest] = queue.Queue()
        self._results: queue.Queue[EngineResult] = queue.Queue()
        self.dead_letters: list[tuple[object, str]] = []

    def publish_request(self, request: EngineRequest) -> None:
        self._requests.put(request)

    def publish_result(self, result: EngineResult) -> None:
        self._results.put(result)

    def consume_results(self, handler: ResultHandler, stop: threading.Event) -> None:
        self._consume(self._results, handler, stop)

    def consume_requests(self, handler: RequestHandler, stop: threading.Event) -> None:
        self._consume(self._requests, handler, stop)

    def _consume(self, source: queue.Queue[Message], handler: Callable[[Message], None], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                message = source.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            try:
                handler(message)
            except PoisonMessage as exc:
                self.dead_letters.append((message, str(exc)))
                log.error("dead-lettered %r: %s", message, exc)
            except Exception:
                # Like an uncommitted Kafka offset: the message comes back later.
                log.exception("handler failed; redelivering %r", message)
                timer = threading.Timer(_REDELIVERY_DELAY_SECONDS, source.put, args=(message,))
                timer.daemon = True
                timer.start()

    def deliver_queued(self, on_request: RequestHandler, on_result: ResultHandler) -> int:
        """Hand every queued message to its handler on this thread; for tests and tools."""
        delivered = 0
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                try:
                    result = self._results.get_nowait()
                except queue.Empty:
                    return delivered
                on_result(result)
            else:
                on_request(request)
            delivered += 1

    def ping(self) -> None:
        return None
