"""Test hooks for the in-process bus: drive both ends on the test's own thread.

Production code never needs this (a consumer thread does the same, with
retries); unit tests use it to step the engine and settlement deterministically.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.adapters.inprocess_bus import InProcessServiceBus
from app.ports.bus import AnyEngineRequest, EngineResult, RequestBatchHandler, ResultBatchHandler

_EVERYTHING = 1_000_000


def ignore(_: Sequence[AnyEngineRequest] | Sequence[EngineResult]) -> None:
    """A handler that drops the batch: the message was lost on the way."""


def deliver_queued(
    bus: InProcessServiceBus, on_requests: RequestBatchHandler = ignore, on_results: ResultBatchHandler = ignore
) -> int:
    """Hand every queued message to its handler, as one batch per topic and round, until none is left.

    A batch is committed only after its handler returned: if it raises, the
    exception reaches the test and the batch stays queued.
    """
    delivered = 0
    while True:
        requests = bus.link.requests.read(_EVERYTHING, wait_seconds=0)
        if requests:
            on_requests([message for _, message in requests])
            bus.link.requests.commit(requests[-1][0] + 1)
        results = bus.link.results.read(_EVERYTHING, wait_seconds=0)
        if results:
            on_results([message for _, message in results])
            bus.link.results.commit(results[-1][0] + 1)
        if not requests and not results:
            return delivered
        delivered += len(requests) + len(results)
