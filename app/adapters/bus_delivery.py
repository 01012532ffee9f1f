"""How a bus consumer hands what it polled to a batch handler.

Shared by the Kafka and the in-process buses, so both keep the same rules
(docs/messages.md, "Delivery guarantees"):

* malformed records are dead-lettered before the batch is handed over;
* the batch (every partition's records, in partition order) goes to the
  handler in one call; if that returns, every record of it is done;
* if it raises `DependencyUnavailable` (a backend outage: every message would
  fail alike) the whole batch is retried after a backoff, without limit;
* if it raises anything else, its messages are retried one at a time, in
  partition order: `PoisonMessage` is dead-lettered at once, any other error
  counts one attempt against the message, and after `max_attempts` the
  message is dead-lettered with a critical alert so its partition moves on.

No I/O here: the adapter polls, dead-letters, commits and seeks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.observability.metrics import DEAD_LETTERS
from app.ports.bus import PoisonMessage
from app.ports.errors import DependencyUnavailable
from app.services.alerts import raise_alert

log = logging.getLogger(__name__)

Message = TypeVar("Message")
Partition = TypeVar("Partition", bound=Hashable)

# Dead-letter kinds (the DLQ record's `kind`).
MALFORMED = "malformed"
POISON = "poison"
RETRIES_EXHAUSTED = "retries_exhausted"


def topic_role(topic: str) -> str:
    """`requests` or `results` (a metric label): topic names carry a deployment's prefix."""
    for role in ("requests", "results"):
        if topic.endswith(role):
            return role
    return "other"


@dataclass(frozen=True)
class DeliveryPolicy:
    max_batch: int = 500
    # Individual attempts of one message (its batch's attempt not counted)
    # before it is dead-lettered; DependencyUnavailable never counts.
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.max_batch <= 0 or self.max_attempts <= 0:
            raise ValueError("max_batch and max_attempts must be positive")
        if not 0 < self.backoff_seconds <= self.backoff_max_seconds:
            raise ValueError("the retry backoff must be positive and at most its maximum")


class Backoff:
    def __init__(self, base: float, maximum: float) -> None:
        self.base, self.maximum, self.failures = base, maximum, 0

    def next_delay(self) -> float:
        self.failures += 1
        return min(self.maximum, self.base * 2.0 ** min(self.failures - 1, 16))

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True)
class Polled(Generic[Partition, Message]):
    """One polled record: decoded into `message`, or malformed (`error` says why)."""

    partition: Partition
    offset: int
    message: Message | None
    error: str | None = None
    raw: object = None  # what the adapter needs to dead-letter it


@dataclass
class PartitionOutcome:
    # The offset to commit (one past the last record dealt with for good), or
    # None when nothing new was; and where to rewind to and when to retry.
    commit_up_to: int | None = None
    retry_from: int | None = None
    retry_after_seconds: float = 0.0


# Dead-letters a record; True once the DLQ has it, False if it could not.
DeadLetter = Callable[[Polled[Partition, Message], str, str, int], bool]


class BatchDelivery(Generic[Partition, Message]):
    """One consumer's delivery state: which partition's head keeps failing, and how often."""

    def __init__(
        self,
        handler: Callable[[Sequence[Message]], None],
        policy: DeliveryPolicy,
        dead_letter: DeadLetter[Partition, Message],
        source: str,
    ) -> None:
        self.handler = handler
        self.policy = policy
        self.dead_letter = dead_letter
        self.source = source  # the topic, for logs and alerts
        # A partition whose head message failed (not for an outage): its
        # offset and individual attempts so far. Such a partition is fed one
        # message at a time until that one is done, so it cannot fail a batch again.
        self._failing: dict[Partition, tuple[int, int]] = {}
        self._backoffs: dict[Partition, Backoff] = {}
        # Malformed records already dead-lettered but not yet committed past.
        self._dead_lettered: dict[Partition, set[int]] = {}

    def forget(self, partition: Partition) -> None:
        """The partition went to another consumer: its count starts afresh there."""
        self._failing.pop(partition, None)
        self._backoffs.pop(partition, None)
        self._dead_lettered.pop(partition, None)

    def retain(self, owned: Collection[Partition]) -> None:
        """Forget the partitions this consumer no longer owns (a rebalance)."""
        for partition in [p for p in (*self._failing, *self._backoffs, *self._dead_lettered) if p not in owned]:
            self.forget(partition)

    def attempts(self, partition: Partition) -> int:
        return self._failing.get(partition, (0, 0))[1]

    def deliver(
        self, polled: Mapping[Partition, Sequence[Polled[Partition, Message]]], running: Callable[[], bool]
    ) -> dict[Partition, PartitionOutcome]:
        outcomes = {partition: PartitionOutcome() for partition in polled}
        dealt: dict[Partition, set[int]] = {partition: set() for partition in polled}  # offsets done for good
        batched: dict[Partition, list[Polled[Partition, Message]]] = {}
        one_by_one: dict[Partition, list[Polled[Partition, Message]]] = {}
        for partition, records in polled.items():
            ready = self._without_malformed(records, outcomes[partition], dealt[partition])
            if not ready:
                continue
            failing = self._failing.get(partition)
            if failing is not None and failing[0] == ready[0].offset:
                one_by_one[partition] = ready
            else:
                batched[partition] = ready

        batch = [record for records in batched.values() for record in records]
        if len(batch) == 1:
            # A batch of one is its own individual attempt: failing, it counts once, not twice.
            one_by_one.update(batched)
        elif batch and running():
            try:
                self.handler([record.message for record in batch])  # type: ignore[misc]
            except DependencyUnavailable as exc:
                log.warning(
                    "a batch of %d from %s failed: %s; retrying it after a backoff", len(batch), self.source, exc
                )
                for partition, records in batched.items():
                    self._retry(partition, records[0].offset, outcomes[partition])
            except Exception as exc:
                log.warning(
                    "a batch of %d from %s failed: %r; handling its messages one at a time",
                    len(batch),
                    self.source,
                    exc,
                )
                one_by_one.update(batched)
            else:
                for partition, records in batched.items():
                    dealt[partition].update(record.offset for record in records)

        for partition, records in one_by_one.items():
            for record in records:
                if not running():
                    break  # the rest stays uncommitted: whoever consumes next gets it
                if not self._handle_alone(record):
                    self._retry(partition, record.offset, outcomes[partition])
                    break
                dealt[partition].add(record.offset)

        for partition, outcome in outcomes.items():
            outcome.commit_up_to = self._done_prefix(polled[partition], dealt[partition], outcome.retry_from)
            if outcome.retry_from is None:
                self._backoffs.pop(partition, None)
            if outcome.commit_up_to is not None:
                self._dead_lettered[partition] = {
                    o for o in self._dead_lettered.get(partition, ()) if o >= outcome.commit_up_to
                }
        return outcomes

    @staticmethod
    def _done_prefix(
        records: Sequence[Polled[Partition, Message]], dealt: set[int], retry_from: int | None
    ) -> int | None:
        """One past the last record of the unbroken run of records dealt with, from the first."""
        commit_up_to = None
        for record in records:
            if record.offset not in dealt or (retry_from is not None and record.offset >= retry_from):
                break
            commit_up_to = record.offset + 1
        return commit_up_to

    def _without_malformed(
        self,
        records: Sequence[Polled[Partition, Message]],
        outcome: PartitionOutcome,
        dealt: set[int],
    ) -> list[Polled[Partition, Message]]:
        """Dead-letter the malformed records; the rest, up to one that could not be, is ready."""
        ready: list[Polled[Partition, Message]] = []
        for record in records:
            if record.message is not None:
                ready.append(record)
                continue
            already = self._dead_lettered.setdefault(record.partition, set())
            # A retry of the partition polls it again: one letter per record is enough.
            if record.offset in already or self._send_to_dlq(record, MALFORMED, record.error or "malformed", 0):
                already.add(record.offset)
                dealt.add(record.offset)
            else:
                self._retry(record.partition, record.offset, outcome)
                break
        return ready

    def _handle_alone(self, record: Polled[Partition, Message]) -> bool:
        """True once the record is dealt with for good (handled or dead-lettered)."""
        partition, message = record.partition, record.message
        failing_offset, attempts = self._failing.get(partition, (record.offset, 0))
        if failing_offset != record.offset:
            attempts = 0
        try:
            self.handler([message])  # type: ignore[list-item]
        except PoisonMessage as exc:
            return self._give_up(record, POISON, f"PoisonMessage: {exc}", attempts + 1)
        except DependencyUnavailable as exc:
            # An outage says nothing about this message: it does not count.
            log.warning("handling %s@%d failed: %s; retrying after a backoff", self.source, record.offset, exc)
            return False
        except Exception as exc:
            attempts += 1
            error = f"{type(exc).__name__}: {exc}"
            self._failing[partition] = (record.offset, attempts)
            if attempts >= self.policy.max_attempts:
                return self._give_up(record, RETRIES_EXHAUSTED, error, attempts)
            log.warning(
                "handling %s@%d failed (attempt %d of %d): %s; it will be retried",
                self.source,
                record.offset,
                attempts,
                self.policy.max_attempts,
                error,
                exc_info=True,
            )
            return False
        self._failing.pop(partition, None)
        return True

    def _give_up(self, record: Polled[Partition, Message], kind: str, error: str, attempts: int) -> bool:
        if not self._send_to_dlq(record, kind, error, attempts):
            return False  # the DLQ is down: the next attempt tries it again
        self._failing.pop(record.partition, None)
        if kind == RETRIES_EXHAUSTED:
            # The recovery scanner still sees the transfer as open: this alert
            # is so that people learn why before its age alerts fire.
            raise_alert(
                "message_dead_lettered",
                "critical",
                source=self.source,
                offset=record.offset,
                request_id=getattr(record.message, "request_id", None),
                error=error,
                attempts=attempts,
            )
        return True

    def _send_to_dlq(self, record: Polled[Partition, Message], kind: str, error: str, attempts: int) -> bool:
        if not self.dead_letter(record, kind, error, attempts):
            return False
        DEAD_LETTERS.labels(topic=topic_role(self.source), kind=kind).inc()
        return True

    def _retry(self, partition: Partition, offset: int, outcome: PartitionOutcome) -> None:
        backoff = self._backoffs.setdefault(
            partition, Backoff(self.policy.backoff_seconds, self.policy.backoff_max_seconds)
        )
        outcome.retry_from = offset
        outcome.retry_after_seconds = backoff.next_delay()
