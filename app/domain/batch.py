"""An atomic batch: 2 to 50 transfers (legs) of one user that lock, settle or fail together.

Each leg is an ordinary `Transfer` with its own request id, carrying the
batch's id; the batch record keeps the legs' ids in order, so a leg is named
by its index. The batch has no status of its own in the store: it is derived
from its legs, which the ledger keeps in step (one linked chain locks them,
one resolves them), so it can never disagree with them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.domain.errors import ValidationFailed
from app.domain.ids import block_ids
from app.domain.ledger_answers import REFUSAL_CAUSES
from app.domain.transfer import Status, Transfer, TransferCommand, fingerprint_of

MIN_LEGS = 2
MAX_LEGS = 50


@dataclass(frozen=True)
class BatchCommand:
    """A validated request to move several amounts at once, all or nothing."""

    user_id: int
    legs: tuple[TransferCommand, ...]

    def __post_init__(self) -> None:
        if not MIN_LEGS <= len(self.legs) <= MAX_LEGS:
            raise ValidationFailed(f"a batch has {MIN_LEGS} to {MAX_LEGS} legs", field="legs")
        if any(leg.user_id != self.user_id for leg in self.legs):
            # build_command already refuses another user's account; this guards the invariant.
            raise ValueError("every leg of a batch belongs to the batch's user")

    def fingerprint(self) -> str:
        """Tells a replay from a key reuse; never equal to a single transfer's (the prefix)."""
        return fingerprint_of(["batch", self.user_id, [leg.fingerprint() for leg in self.legs]])


@dataclass(frozen=True)
class Batch:
    """The batch record: who, which legs (by request id, in order), when, under which key."""

    batch_id: int
    user_id: int
    request_ids: tuple[int, ...]
    created_at: datetime
    idempotency_key: str | None = None
    fingerprint: str = ""

    def leg_index(self, request_id: int) -> int:
        return self.request_ids.index(request_id)


class BatchStatus(enum.StrEnum):
    REQUESTING = "requesting"
    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"


def batch_status(legs: Sequence[Transfer | None]) -> BatchStatus:
    """The batch's status from its legs' (None: a leg not recorded yet).

    The ledger moves legs together, so the store differs between legs only
    while their writes are in flight (or a crash interrupted them, which the
    scanner repairs): a batch is then as far as its least advanced leg, except
    that one failed leg means the whole batch failed (nothing of it locked, or
    all of it was voided).
    """
    statuses = [leg.status if leg is not None else Status.REQUESTING for leg in legs]
    if any(s == Status.FAILED for s in statuses):
        return BatchStatus.FAILED
    if all(s == Status.SUCCESS for s in statuses):
        return BatchStatus.SUCCESS
    if any(s == Status.REQUESTING for s in statuses):
        return BatchStatus.REQUESTING
    return BatchStatus.PENDING


@dataclass(frozen=True)
class BatchView:
    """A batch with its legs as stored, in order."""

    batch: Batch
    legs: list[Transfer | None]  # None: a leg not recorded (its first attempt died before)

    @property
    def status(self) -> BatchStatus:
        return batch_status(self.legs)

    @property
    def finished_submitting(self) -> bool:
        """Every leg recorded and past `requesting`: a replay of its key only answers."""
        return all(leg is not None and leg.status != Status.REQUESTING for leg in self.legs)

    def refused_leg(self) -> tuple[int, Transfer] | None:
        """The leg whose own cause failed the batch (not BATCH_FAILED), with its index."""
        for index, leg in enumerate(self.legs):
            if leg is not None and leg.failure_reason in REFUSAL_CAUSES.values():
                return index, leg
        return None


def new_batch(first_id: int, command: BatchCommand, now: datetime, key: str | None) -> BatchView:
    """A new batch on the block of ids that starts at `first_id`: its own id, then each leg's, in order.

    Legs carry the batch's key only as a note: the key is claimed once, for the batch.
    """
    _, *leg_ids = block_ids(first_id, 1 + len(command.legs))
    legs = [Transfer.new(i, leg, now, key, first_id) for i, leg in zip(leg_ids, command.legs, strict=True)]
    batch = Batch(
        batch_id=first_id,
        user_id=command.user_id,
        request_ids=tuple(leg.request_id for leg in legs),
        created_at=now,
        idempotency_key=key,
        fingerprint=command.fingerprint(),
    )
    return BatchView(batch, list[Transfer | None](legs))
