"""Where transfer records and the audit trail live."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from app.domain.batch import Batch
from app.domain.deposit import DepositAudit
from app.domain.events import StatusEvent
from app.domain.limits import LimitOverride
from app.domain.transfer import AuditActor, AuditEntry, Status, Transfer
from app.ports.backend import Backend


@dataclass(frozen=True)
class StatusChange:
    """`before` moved to `after` (checked by the service), by `actor`, for `reason`."""

    before: Transfer
    after: Transfer
    actor: AuditActor
    reason: str


@dataclass(frozen=True)
class OutboxEntry:
    """An event kept in the store's outbox, and where (`slot`, the adapter's own) to mark it published."""

    event: StatusEvent
    slot: str


# Called with the outbox entries a write just made durable (docs/events.md).
OutboxListener = Callable[[Sequence[OutboxEntry]], None]


@dataclass(frozen=True)
class OpenPage:
    items: list[Transfer]
    # Continue with `after=next_after`; None when the open set was read to its end.
    next_after: int | None


@dataclass(frozen=True)
class HistoryPage:
    items: list[Transfer]
    next_cursor: str | None


class TransferRecords(abc.ABC):
    """Transfers, their statuses and their audit trail."""

    @abc.abstractmethod
    def record_new(self, transfer: Transfer) -> None:
        """Write a new `requesting` transfer, its history entry, its open-set entry and its audit entry.

        Request ids are unique by construction (leased Snowflake worker ids),
        so this is no insert-if-absent: recording the same transfer again (an
        idempotent retry) is harmless and never moves a stored status back.
        When this returns, the scanner will see the transfer until it is terminal.
        """

    @abc.abstractmethod
    def get(self, request_id: int) -> Transfer | None: ...

    @abc.abstractmethod
    def get_many(self, request_ids: Sequence[int]) -> dict[int, Transfer]:
        """The transfers found among `request_ids`, by id; adapters read them in parallel."""

    @abc.abstractmethod
    def record_statuses(self, changes: Sequence[StatusChange]) -> None:
        """Write status changes the service already checked against the state machine.

        The stored status is the most advanced ever written, whatever order
        writes land in: a write that ranks below the stored status by
        `precedence` (app/domain/transfer.py; among failures, by the order
        of their causes) changes nothing in the record, and the record's
        status, cause and time all come from one write. Every change joins
        the audit trail, even one that lost a race, so who asked and why is
        never lost.
        """

    @abc.abstractmethod
    def start_recording(self, changes: Sequence[StatusChange]) -> Callable[[], None]:
        """Start `record_statuses` and return a function that waits for it (and raises what it raised).

        Lets a caller overlap the write with other work. Adapters without
        asynchronous writes record at once.
        """

    @abc.abstractmethod
    def history(
        self,
        user_id: int,
        limit: int,
        cursor: str | None = None,
        status: Status | None = None,
        asset: str | None = None,
    ) -> HistoryPage:
        """The user's transfers, newest first."""

    @abc.abstractmethod
    def audit_trail(self, request_id: int) -> list[AuditEntry]: ...

    @abc.abstractmethod
    def append_audit(self, entry: AuditEntry, event: StatusEvent | None = None) -> None:
        """Record an action that changed no status (an operator's re-send, say).

        With `event`, the event joins the outbox in the same write as the entry.
        """


class BatchRecords(abc.ABC):
    @abc.abstractmethod
    def record_batch(self, batch: Batch, legs: Sequence[Transfer]) -> None:
        """Write the batch record, then every leg as `record_new` does, before anything is locked.

        Idempotent like `record_new`, and all or nothing: SQLite writes it in
        one transaction, Cassandra in one logged batch. (Were a store ever to
        leave some legs unrecorded, nothing would be locked, since the lock
        comes after this; the scanner fences and fails the recorded legs, so
        the batch can never lock, and a retry with the Idempotency-Key finds
        the record and its legs' ids.)
        """

    @abc.abstractmethod
    def get_batch(self, batch_id: int) -> Batch | None: ...


class OpenTransfers(abc.ABC):
    """What the scanner and the reconciliation read: the open set and the recently settled."""

    @abc.abstractmethod
    def open_transfers(self, limit: int = 1000, after: int | None = None) -> OpenPage:
        """Transfers not yet `success` or `failed`, by request id, with ids above `after`.

        Read-only as far as the scanner is concerned: it never moves what
        `advance_open_set` keeps, so an operator's listing changes nothing.
        """

    @abc.abstractmethod
    def settled_between(self, start: datetime, end: datetime, limit: int) -> list[Transfer]:
        """Terminal transfers whose stored `updated_at` is in [start, end), oldest first, at most `limit`.

        For the continuous reconciliation, which compares a rolling window of
        recently settled transfers with the ledger. Adapters may keep an index
        for this only as long as that window needs (a day at least).
        """

    @abc.abstractmethod
    def advance_open_set(self) -> int:
        """The scanner's housekeeping before a pass; returns how many transfers it re-filed.

        Time is the store's own clock, the one its writers file by. Stores
        whose open set needs no upkeep (SQLite) do nothing and return 0.
        """


class EventOutbox(abc.ABC):
    """The event outbox (docs/events.md)."""

    # Told of every event written to the outbox, once its write is durable:
    # the service publishes them at once; the relay catches what it misses.
    outbox_listener: OutboxListener | None = None

    @abc.abstractmethod
    def record_events(self, events: Sequence[StatusEvent]) -> None:
        """Keep events that change no status (warnings, an operator's re-send) in the outbox.

        Status changes need no call: `record_new` and `record_statuses` put
        their events in the outbox in the same write as the status.
        """

    @abc.abstractmethod
    def unpublished_events(self, limit: int, written_before: datetime) -> list[OutboxEntry]:
        """Outbox events not yet marked published, written before `written_before`, oldest first.

        For the relay. An adapter may hold back events written more recently
        than its own safety margin (Cassandra: until their time bucket is closed).
        """

    @abc.abstractmethod
    def mark_events_published(self, entries: Sequence[OutboxEntry]) -> None:
        """The bus acknowledged these: the relay need not publish them again."""


class LimitOverrides(abc.ABC):
    """Per-user daily limit overrides (operators only)."""

    @abc.abstractmethod
    def add_limit_override(self, override: LimitOverride) -> bool:
        """Record one new version of an override; False (and nothing written) if that version exists.

        Versions of one (user, asset, direction) are never rewritten: they are
        the audit trail, and the quota arithmetic depends on each one's limit.
        """

    @abc.abstractmethod
    def limit_overrides(self, user_id: int) -> list[LimitOverride]:
        """Every version of every override of the user, oldest version first."""


class DepositRecords(abc.ABC):
    @abc.abstractmethod
    def record_deposit(self, audit: DepositAudit) -> DepositAudit:
        """Keep `audit` unless its deposit id is already recorded; return the one stored (the first wins).

        Durable when this returns: the ledger credits only after it.
        """

    @abc.abstractmethod
    def get_deposit(self, deposit_id: int) -> DepositAudit | None: ...


class TransferStore(
    TransferRecords,
    BatchRecords,
    OpenTransfers,
    EventOutbox,
    LimitOverrides,
    DepositRecords,
    Backend,
):
    """Every store port, as one store adapter implements them.

    For the composition root and the store contract suite only: handlers and
    services take the narrow ports above, through `Dependencies`.
    """
