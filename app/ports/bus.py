"""The link to the exchange's balance engine: requests out, results back.

The messages' wire form (docs/messages.md) is the adapters' business: app/adapters/bus_messages.py.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.domain.events import StatusEvent
from app.domain.transfer import Outcome


@dataclass(frozen=True)
class EngineRequest:
    """What the engine is asked to apply. Amount is a string of minor units."""

    request_id: int
    user_id: int
    asset: str
    from_account_type: str
    to_account_type: str
    amount_units: int
    # The POST's trace id (its X-Request-Id), for the logs only; optional.
    trace_id: str | None = None


@dataclass(frozen=True)
class EngineLeg:
    """One leg of a batch request: an ordinary transfer's fields, without the user (the batch's)."""

    request_id: int
    asset: str
    from_account_type: str
    to_account_type: str
    amount_units: int


@dataclass(frozen=True)
class EngineBatchRequest:
    """A batch: the engine applies every leg or none, and answers once, for the batch."""

    batch_id: int
    user_id: int
    legs: tuple[EngineLeg, ...]
    trace_id: str | None = None

    @property
    def request_id(self) -> int:
        # What the engine dedupes by and the bus logs: the batch's id (Snowflake, never a leg's).
        return self.batch_id


AnyEngineRequest = EngineRequest | EngineBatchRequest


@dataclass(frozen=True)
class EngineResult:
    request_id: int
    outcome: Outcome
    reason: str | None = None
    # The request's trace id, carried back by the engine; optional.
    trace_id: str | None = None
    # The answer to a batch: `request_id` is then the batch's id, and the outcome every leg's.
    batch: bool = False


# A handler gets a batch of messages (in the order of their partitions,
# possibly several partitions) and returns normally once its work on all of
# them is durable; only then are they acknowledged. If it raises, the bus
# retries the batch's messages one at a time, so one bad message cannot hold
# the others back (see docs/messages.md, "Delivery guarantees").
RequestBatchHandler = Callable[[Sequence[AnyEngineRequest]], None]
ResultBatchHandler = Callable[[Sequence[EngineResult]], None]


class PoisonMessage(Exception):
    """A message that can never be handled; the adapter dead-letters it at once."""


class ServiceBus(abc.ABC):
    """The service's end of the bus: requests out to the engine, results back in."""

    @abc.abstractmethod
    def publish_request(self, request: AnyEngineRequest) -> None:
        """Send to the engine; return only once the bus has durably accepted it."""

    @abc.abstractmethod
    def consume_results(self, handler: ResultBatchHandler, stop: threading.Event) -> None:
        """Run until `stop` is set, feeding batches of results to `handler`."""

    @abc.abstractmethod
    def publish_events(self, events: Sequence[StatusEvent]) -> None:
        """Send status events to `internal_transfer.events` (keyed by request id); return once all are accepted.

        On failure some may have been accepted: events are delivered at least
        once, and their consumers deduplicate (docs/events.md).
        """

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise DependencyUnavailable unless the bus answers."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; adapters that hold none do nothing."""


class EngineBus(abc.ABC):
    """The balance engine's end of the bus: requests in, results out."""

    @abc.abstractmethod
    def consume_requests(self, handler: RequestBatchHandler, stop: threading.Event) -> None:
        """Run until `stop` is set, feeding batches of requests to `handler`."""

    @abc.abstractmethod
    def publish_results(self, results: Sequence[EngineResult]) -> None:
        """Send all, then return once the bus has durably accepted every one of them.

        On failure some of them may have been accepted: the engine answers
        every copy of a request the same way, so sending them again is safe.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; adapters that hold none do nothing."""
