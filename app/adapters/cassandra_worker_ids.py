"""Worker-id leases on Cassandra/ScyllaDB, in the store's keyspace and session.

Every write is a lightweight transaction; there are a handful per process
lifetime plus one renewal every few seconds, never one per transfer. The
choice of a free id comes from a plain read (a hint that may be stale); the
compare-and-set on the exact row that read returned is what decides.
"""

from __future__ import annotations

import threading
from typing import Any

from cassandra.query import PreparedStatement

from app.adapters.cassandra_store import CassandraTransferStore
from app.domain.ids import EPOCH_MS
from app.domain.worker_leases import FREE, Lease, LeaseRecord, LeaseTerms, candidate_order, next_mark
from app.ports.errors import DependencyUnavailable
from app.ports.worker_ids import WorkerIdLeases

_COLUMNS = "worker_id, holder, issued_until_ms, expires_at_ms"
# LWTs one acquire may spend before it reports that no id is free: enough to
# ride out a stale read and a crowd starting at once, bounded so an outage
# or a full table answers fast.
_MAX_ATTEMPTS = 64
_MAX_RENEW_ROUNDS = 3


def _record(row: Any) -> LeaseRecord:
    return LeaseRecord(
        worker_id=row.worker_id,
        holder=row.holder or FREE,
        issued_until_ms=row.issued_until_ms or EPOCH_MS,
        expires_at_ms=row.expires_at_ms or 0,
    )


class CassandraWorkerIdLeases(WorkerIdLeases):
    def __init__(self, store: CassandraTransferStore) -> None:
        # The store owns the one driver session of the process and its error
        # mapping; this adapter never closes either.
        self._store = store
        self._lock = threading.Lock()
        self._prepared: dict[str, PreparedStatement] = {}

    def _run(self, cql: str, params: tuple[Any, ...] = ()) -> Any:
        with self._store.guard():
            session = self._store.session()
            with self._lock:
                prepared = self._prepared.get(cql)
            if prepared is None:
                prepared = session.prepare(cql.format(ks=self._store.keyspace))
                with self._lock:
                    self._prepared[cql] = prepared
            return session.execute(prepared, params)

    def close(self) -> None:
        # The session is the store's: the store closes it.
        return None

    def holders(self) -> list[LeaseRecord]:
        rows = self._run(f"SELECT {_COLUMNS} FROM {{ks}}.worker_id_leases")
        return sorted((_record(row) for row in rows), key=lambda record: record.worker_id)

    def acquire(self, holder: str, now_ms: int, terms: LeaseTerms, preferred: int | None = None) -> Lease | None:
        known = {record.worker_id: record for record in self.holders()}
        attempts = 0
        for worker_id in candidate_order(known.values(), now_ms, terms, preferred):
            seen = known.get(worker_id)
            while attempts < _MAX_ATTEMPTS:
                attempts += 1
                if seen is None:
                    lease, seen = self._insert(worker_id, holder, now_ms, terms)
                else:
                    if not seen.is_free(now_ms, terms):
                        break
                    lease, seen = self._take_over(seen, holder, now_ms, terms)
                if lease is not None:
                    return lease
                if seen is None:
                    break  # the row vanished under us (someone deleted it by hand): skip it
            if attempts >= _MAX_ATTEMPTS:
                break
        return None

    def _insert(
        self, worker_id: int, holder: str, now_ms: int, terms: LeaseTerms
    ) -> tuple[Lease | None, LeaseRecord | None]:
        lease = Lease(worker_id, holder, EPOCH_MS, next_mark(now_ms, EPOCH_MS, terms), now_ms + terms.lease_ms)
        row = self._run(
            f"INSERT INTO {{ks}}.worker_id_leases ({_COLUMNS}) VALUES (?, ?, ?, ?) IF NOT EXISTS",
            (worker_id, holder, lease.issued_until_ms, lease.expires_at_ms),
        ).one()
        if row.applied:
            return lease, None
        # A refused INSERT IF NOT EXISTS returns the whole existing row.
        return None, _record(row)

    def _take_over(
        self, seen: LeaseRecord, holder: str, now_ms: int, terms: LeaseTerms
    ) -> tuple[Lease | None, LeaseRecord | None]:
        floor = seen.issued_until_ms
        lease = Lease(seen.worker_id, holder, floor, next_mark(now_ms, floor, terms), now_ms + terms.lease_ms)
        # Compare-and-set on the row exactly as judged free: any renewal,
        # release or rival takeover since the read changes one of these.
        row = self._run(
            "UPDATE {ks}.worker_id_leases SET holder = ?, issued_until_ms = ?, expires_at_ms = ?"
            " WHERE worker_id = ? IF holder = ? AND issued_until_ms = ? AND expires_at_ms = ?",
            (
                holder,
                lease.issued_until_ms,
                lease.expires_at_ms,
                seen.worker_id,
                seen.holder,
                seen.issued_until_ms,
                seen.expires_at_ms,
            ),
        ).one()
        if row.applied:
            return lease, None
        # A refused conditional UPDATE returns the columns of its IF clause.
        if getattr(row, "holder", None) is None and getattr(row, "issued_until_ms", None) is None:
            return None, None
        return None, LeaseRecord(
            seen.worker_id,
            row.holder or FREE,
            row.issued_until_ms or EPOCH_MS,
            row.expires_at_ms or 0,
        )

    def renew(self, lease: Lease, now_ms: int, terms: LeaseTerms) -> Lease | None:
        mark = max(lease.issued_until_ms, next_mark(now_ms, lease.floor_ms, terms))
        for _ in range(_MAX_RENEW_ROUNDS):
            # `issued_until_ms <= ?` keeps the mark from ever going down, even
            # if an earlier renewal landed without us hearing back.
            row = self._run(
                "UPDATE {ks}.worker_id_leases SET issued_until_ms = ?, expires_at_ms = ?"
                " WHERE worker_id = ? IF holder = ? AND issued_until_ms <= ?",
                (mark, now_ms + terms.lease_ms, lease.worker_id, lease.holder, mark),
            ).one()
            if row.applied:
                return Lease(lease.worker_id, lease.holder, lease.floor_ms, mark, now_ms + terms.lease_ms)
            if getattr(row, "holder", None) != lease.holder:
                return None
            mark = max(mark, row.issued_until_ms)
        # Still ours, but the mark kept moving: unknown rather than lost, so the caller retries.
        raise DependencyUnavailable("store", f"renewal of worker id {lease.worker_id} kept racing its own mark")

    def release(self, lease: Lease) -> bool:
        row = self._run(
            "UPDATE {ks}.worker_id_leases SET holder = ?, expires_at_ms = 0 WHERE worker_id = ? IF holder = ?",
            (FREE, lease.worker_id, lease.holder),
        ).one()
        return bool(row.applied)
