"""The link to the exchange's balance engine: requests out, results back."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass

from app.domain.ids import parse_id

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class EngineRequest:
    """What the engine is asked to apply. Amount is a string of minor units."""

    request_id: int
    user_id: int
    asset: str
    from_account_type: str
    to_account_type: str
    amount_units: int

    def to_message(self) -> dict[str, object]:
        return {
            "schema_version": SCHEMA_VERSION,
            "request_id": str(self.request_id),
            "user_id": str(self.user_id),
            "asset": self.asset,
            "from_account_type": self.from_account_type,
            "to_account_type": self.to_account_type,
            "amount_units": str(self.amount_units),
        }

    @classmethod
    def from_message(cls, message: dict[str, object]) -> EngineRequest:
        if message.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {message.get('schema_version')!r}")
        return cls(
            request_id=parse_id(str(message["request_id"])),
            user_id=parse_id(str(message["user_id"])),
            asset=str(message["asset"]),
            from_account_type=str(message["from_account_type"]),
            to_account_type=str(message["to_account_type"]),
            amount_units=int(str(message["amount_units"])),
        )


@dataclass(frozen=True)
class EngineResult:
    request_id: int
    outcome: str  # "confirmed" | "rejected"
    reason: str | None = None

    OUTCOMES = ("confirmed", "rejected")

    def to_message(self) -> dict[str, object]:
        return {
            "schema_version": SCHEMA_VERSION,
            "request_id": str(self.request_id),
            "outcome": self.outcome,
            "reason": self.reason,
        }

    @classmethod
    def from_message(cls, message: dict[str, object]) -> EngineResult:
        if message.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {message.get('schema_version')!r}")
        outcome = message.get("outcome")
        if outcome not in cls.OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        reason = message.get("reason")
        return cls(
            request_id=parse_id(str(message["request_id"])),
            outcome=str(outcome),
            reason=None if reason is None else str(reason),
        )


# A handler returns normally once its work is durable; only then is the
# message acknowledged. If it raises, the message is redelivered (or, for a
# message that can never be handled, dead-lettered by the adapter).
RequestHandler = Callable[[EngineRequest], None]
ResultHandler = Callable[[EngineResult], None]


class PoisonMessage(Exception):
    """A message that can never be handled; the adapter dead-letters it."""


class TransferBus(abc.ABC):
    @abc.abstractmethod
    def publish_request(self, request: EngineRequest) -> None:
        """Send to the engine; return only once the bus has durably accepted it."""

    @abc.abstractmethod
    def publish_result(self, result: EngineResult) -> None:
        """Used by the engine side (the reference engine) to answer."""

    @abc.abstractmethod
    def consume_results(self, handler: ResultHandler, stop: threading.Event) -> None:
        """Run until `stop` is set, feeding each result to `handler`."""

    @abc.abstractmethod
    def consume_requests(self, handler: RequestHandler, stop: threading.Event) -> None:
        """Run until `stop` is set, feeding each request to `handler` (engine side)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise DependencyUnavailable unless the bus answers."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; adapters that hold none need not override."""
