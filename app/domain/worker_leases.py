"""The rules of a worker-id lease: which id to try first, and the mark a new holder issues from.

The adapters (app/adapters/*_worker_ids.py) keep leases in a store and call
these; the contract they keep is in app/ports/worker_ids.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from app.domain.ids import MAX_WORKER_ID

FREE = ""  # the holder of a released (or never held) worker id


@dataclass(frozen=True)
class LeaseTerms:
    lease_ms: int
    # How far apart two processes' wall clocks may be. An acquirer waits this
    # long past the recorded expiry so a holder whose clock is behind is not
    # robbed while it still believes its lease runs.
    max_clock_skew_ms: int

    def __post_init__(self) -> None:
        if self.lease_ms <= 0 or self.max_clock_skew_ms < 0:
            raise ValueError("a lease needs a positive length and a non-negative skew allowance")


@dataclass(frozen=True)
class Lease:
    worker_id: int
    holder: str  # a token unique to this acquisition
    floor_ms: int  # issue no id below this: the previous holder's high-water mark
    issued_until_ms: int  # issue no id at or past this (exclusive ceiling), as stored
    expires_at_ms: int  # by the holder's wall clock


@dataclass(frozen=True)
class LeaseRecord:
    """A stored row, as an adapter reads it to choose and to take over."""

    worker_id: int
    holder: str
    issued_until_ms: int
    expires_at_ms: int

    def is_free(self, now_ms: int, terms: LeaseTerms) -> bool:
        return self.holder == FREE or self.expires_at_ms < now_ms - terms.max_clock_skew_ms


def candidate_order(records: Iterable[LeaseRecord], now_ms: int, terms: LeaseTerms, preferred: int | None) -> list[int]:
    """Worker ids worth trying, best first.

    The preferred id first (if free), then ids never used, then free ids whose
    mark has passed (their new holder starts on time), then the rest of the
    free ids by mark (their ids would carry a timestamp up to a lease ahead).
    Shuffled within a group so concurrent acquirers rarely try the same id.
    """
    known = {record.worker_id: record for record in records}
    unused = [worker_id for worker_id in range(MAX_WORKER_ID + 1) if worker_id not in known]
    free = [record for record in known.values() if record.is_free(now_ms, terms)]
    settled = [record.worker_id for record in free if record.issued_until_ms <= now_ms]
    ahead = sorted((r for r in free if r.issued_until_ms > now_ms), key=lambda r: r.issued_until_ms)
    random.shuffle(unused)
    random.shuffle(settled)
    order = unused + settled + [record.worker_id for record in ahead]
    if preferred is not None and preferred in order:
        order.remove(preferred)
        order.insert(0, preferred)
    return order


def next_mark(now_ms: int, floor_ms: int, terms: LeaseTerms) -> int:
    """The high-water mark an acquire or renew writes: a full lease past where issuing may start."""
    return max(now_ms, floor_ms) + terms.lease_ms
