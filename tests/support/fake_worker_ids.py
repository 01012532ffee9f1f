"""An in-memory WorkerIdLeases for unit tests; the contract suite runs against it too."""

from __future__ import annotations

import threading

from app.domain.ids import EPOCH_MS
from app.domain.worker_leases import FREE, Lease, LeaseRecord, LeaseTerms, candidate_order, next_mark
from app.ports.errors import DependencyUnavailable
from app.ports.worker_ids import WorkerIdLeases


class FakeWorkerIdLeases(WorkerIdLeases):
    def __init__(self) -> None:
        self.rows: dict[int, LeaseRecord] = {}
        self.down = False  # every call fails like an unreachable store
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        return None

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise DependencyUnavailable("store", "fake outage")

    def acquire(self, holder: str, now_ms: int, terms: LeaseTerms, preferred: int | None = None) -> Lease | None:
        with self._lock:
            self._check("acquire")
            order = candidate_order(self.rows.values(), now_ms, terms, preferred)
            if not order:
                return None
            previous = self.rows.get(order[0])
            floor = previous.issued_until_ms if previous else EPOCH_MS
            lease = Lease(order[0], holder, floor, next_mark(now_ms, floor, terms), now_ms + terms.lease_ms)
            self.rows[lease.worker_id] = LeaseRecord(
                lease.worker_id, holder, lease.issued_until_ms, lease.expires_at_ms
            )
            return lease

    def renew(self, lease: Lease, now_ms: int, terms: LeaseTerms) -> Lease | None:
        with self._lock:
            self._check("renew")
            stored = self.rows.get(lease.worker_id)
            if stored is None or stored.holder != lease.holder:
                return None
            mark = max(stored.issued_until_ms, lease.issued_until_ms, next_mark(now_ms, lease.floor_ms, terms))
            renewed = Lease(lease.worker_id, lease.holder, lease.floor_ms, mark, now_ms + terms.lease_ms)
            self.rows[lease.worker_id] = LeaseRecord(lease.worker_id, lease.holder, mark, renewed.expires_at_ms)
            return renewed

    def release(self, lease: Lease) -> bool:
        with self._lock:
            self._check("release")
            stored = self.rows.get(lease.worker_id)
            if stored is None or stored.holder != lease.holder:
                return False
            self.rows[lease.worker_id] = LeaseRecord(lease.worker_id, FREE, stored.issued_until_ms, 0)
            return True

    def holders(self) -> list[LeaseRecord]:
        with self._lock:
            return sorted(self.rows.values(), key=lambda record: record.worker_id)
