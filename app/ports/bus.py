"""The link to the exchange's balance engine: requests out, results back."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.domain.events import StatusEvent
from app.domain.ids import id_field
from app.domain.transfer import Outcome
from app.observability.context import valid_trace_id

SCHEMA_VERSION = 1
# A batch request or result (docs/messages.md, "Batches"): its own version, so
# an engine that only knows version 1 dead-letters it instead of misreading it.
BATCH_SCHEMA_VERSION = 2


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

    def to_message(self) -> dict[str, object]:
        message: dict[str, object] = {
            "schema_version": SCHEMA_VERSION,
            "request_id": str(self.request_id),
            "user_id": str(self.user_id),
            "asset": self.asset,
            "from_account_type": self.from_account_type,
            "to_account_type": self.to_account_type,
            "amount_units": str(self.amount_units),
        }
        if self.trace_id is not None:
            message["trace_id"] = self.trace_id
        return message

    @classmethod
    def from_message(cls, message: dict[str, object]) -> EngineRequest:
        if message.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {message.get('schema_version')!r}")
        return cls(
            request_id=id_field(message, "request_id"),
            user_id=id_field(message, "user_id"),
            asset=str(message["asset"]),
            from_account_type=str(message["from_account_type"]),
            to_account_type=str(message["to_account_type"]),
            amount_units=int(str(message["amount_units"])),
            # Not a reason to dead-letter: an unusable trace id is dropped.
            trace_id=valid_trace_id(message.get("trace_id")),
        )


@dataclass(frozen=True)
class EngineLeg:
    """One leg of a batch request: an ordinary transfer's fields, without the user (the batch's)."""

    request_id: int
    asset: str
    from_account_type: str
    to_account_type: str
    amount_units: int

    def to_message(self) -> dict[str, object]:
        return {
            "request_id": str(self.request_id),
            "asset": self.asset,
            "from_account_type": self.from_account_type,
            "to_account_type": self.to_account_type,
            "amount_units": str(self.amount_units),
        }

    @classmethod
    def from_message(cls, message: dict[str, object]) -> EngineLeg:
        return cls(
            request_id=id_field(message, "request_id"),
            asset=str(message["asset"]),
            from_account_type=str(message["from_account_type"]),
            to_account_type=str(message["to_account_type"]),
            amount_units=int(str(message["amount_units"])),
        )


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

    def to_message(self) -> dict[str, object]:
        message: dict[str, object] = {
            "schema_version": BATCH_SCHEMA_VERSION,
            "batch_id": str(self.batch_id),
            "user_id": str(self.user_id),
            "legs": [leg.to_message() for leg in self.legs],
        }
        if self.trace_id is not None:
            message["trace_id"] = self.trace_id
        return message

    @classmethod
    def from_message(cls, message: dict[str, object]) -> EngineBatchRequest:
        if message.get("schema_version") != BATCH_SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {message.get('schema_version')!r}")
        legs = message.get("legs")
        if not isinstance(legs, list) or not legs or not all(isinstance(leg, dict) for leg in legs):
            raise ValueError("legs must be a non-empty list of objects")
        return cls(
            batch_id=id_field(message, "batch_id"),
            user_id=id_field(message, "user_id"),
            legs=tuple(EngineLeg.from_message(leg) for leg in legs),
            trace_id=valid_trace_id(message.get("trace_id")),
        )


AnyEngineRequest = EngineRequest | EngineBatchRequest


def decode_request(message: dict[str, object]) -> AnyEngineRequest:
    """A request of either kind, told apart by its schema_version."""
    if message.get("schema_version") == BATCH_SCHEMA_VERSION:
        return EngineBatchRequest.from_message(message)
    return EngineRequest.from_message(message)


@dataclass(frozen=True)
class EngineResult:
    request_id: int
    outcome: Outcome
    reason: str | None = None
    # The request's trace id, carried back by the engine; optional.
    trace_id: str | None = None
    # The answer to a batch: `request_id` is then the batch's id, and the outcome every leg's.
    batch: bool = False

    def to_message(self) -> dict[str, object]:
        message: dict[str, object] = {
            "schema_version": BATCH_SCHEMA_VERSION if self.batch else SCHEMA_VERSION,
            "batch_id" if self.batch else "request_id": str(self.request_id),
            "outcome": self.outcome.value,
            "reason": self.reason,
        }
        if self.trace_id is not None:
            message["trace_id"] = self.trace_id
        return message

    @classmethod
    def from_message(cls, message: dict[str, object]) -> EngineResult:
        batch = message.get("schema_version") == BATCH_SCHEMA_VERSION
        if message.get("schema_version") != SCHEMA_VERSION and not batch:
            raise ValueError(f"unsupported schema_version {message.get('schema_version')!r}")
        outcome = message.get("outcome")
        if not isinstance(outcome, str) or outcome not in Outcome.__members__.values():
            raise ValueError(f"unknown outcome {outcome!r}")
        reason = message.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ValueError("reason must be a string or null")
        return cls(
            request_id=id_field(message, "batch_id" if batch else "request_id"),
            outcome=Outcome(outcome),
            reason=reason,
            trace_id=valid_trace_id(message.get("trace_id")),
            batch=batch,
        )


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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; adapters that hold none need not override."""


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

    def publish_result(self, result: EngineResult) -> None:
        self.publish_results([result])

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; adapters that hold none need not override."""
