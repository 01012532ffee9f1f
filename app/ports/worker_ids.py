"""Leases on Snowflake worker ids: at most one live holder per id, with a high-water mark.

The contract every adapter keeps (tests/contract/test_worker_id_leases_contract.py):

* `acquire` takes a worker id nobody holds, or one whose lease expired more
  than `max_clock_skew_ms` ago by the acquirer's clock, atomically (a
  compare-and-set on the row as read), so two acquirers never both win.
* Every record carries `issued_until_ms`: the holder never issues an id at or
  past it (it is the generator's ceiling), acquire and renew only ever raise
  it, and a new holder starts issuing at it (the lease's `floor_ms`). Ids of
  successive holders of one worker id are therefore disjoint in time even if
  a clock steps back, or if skew let a takeover happen early.
* `renew` succeeds only for the holder of this very acquisition (`holder` is
  a fresh token per acquisition), and `release` frees the id at once but
  keeps the mark.

Times are wall-clock ms of the caller (the store has no clock we can compare
against in a condition). Expiry is judged with the writer's clock against the
acquirer's, so the takeover rule assumes clocks within `max_clock_skew_ms` of
each other; uniqueness does not rest on that assumption, only politeness does.
"""

from __future__ import annotations

import abc

from app.domain.worker_leases import Lease, LeaseRecord, LeaseTerms


class WorkerIdLeases(abc.ABC):
    """Raises DependencyUnavailable("store") when the store cannot answer."""

    @abc.abstractmethod
    def acquire(self, holder: str, now_ms: int, terms: LeaseTerms, preferred: int | None = None) -> Lease | None:
        """Lease a free worker id (`preferred` first if free) for `holder`; None if none is free."""

    @abc.abstractmethod
    def renew(self, lease: Lease, now_ms: int, terms: LeaseTerms) -> Lease | None:
        """Extend `lease` to now + lease_ms and raise its mark; None if it is no longer ours."""

    @abc.abstractmethod
    def release(self, lease: Lease) -> bool:
        """Free the worker id at once if we still hold it, keeping its mark. True if released."""

    @abc.abstractmethod
    def holders(self) -> list[LeaseRecord]:
        """Every stored record (for operators and tests)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources the adapter owns (not the store's shared session)."""
