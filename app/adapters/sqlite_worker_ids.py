"""Worker-id leases in a SQLite file, for embedded mode.

Embedded mode runs one server process, but a CLI command (`flask --app wsgi
deposit`) may run beside it, so the contract is kept across processes: each
operation is one BEGIN IMMEDIATE transaction, which SQLite's file lock
serialises. The file is opened on first use, after any fork.
"""

from __future__ import annotations

import sqlite3
import threading

from app.adapters.sqlite_util import SqliteDatabase
from app.domain.ids import EPOCH_MS
from app.domain.worker_leases import FREE, Lease, LeaseRecord, LeaseTerms, candidate_order, next_mark
from app.ports.worker_ids import WorkerIdLeases

_SCHEMA = """
CREATE TABLE IF NOT EXISTS worker_id_leases (
    worker_id INTEGER PRIMARY KEY,
    holder TEXT NOT NULL,
    issued_until_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
"""


def _record(row: sqlite3.Row) -> LeaseRecord:
    return LeaseRecord(
        worker_id=row["worker_id"],
        holder=row["holder"],
        issued_until_ms=row["issued_until_ms"],
        expires_at_ms=row["expires_at_ms"],
    )


class SqliteWorkerIdLeases(WorkerIdLeases):
    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._db: SqliteDatabase | None = None

    def _database(self) -> SqliteDatabase:
        with self._lock:
            if self._db is None:
                self._db = SqliteDatabase(self._path, "store", _SCHEMA)
            return self._db

    def acquire(self, holder: str, now_ms: int, terms: LeaseTerms, preferred: int | None = None) -> Lease | None:
        with self._database().transaction() as conn:
            records = [_record(row) for row in conn.execute("SELECT * FROM worker_id_leases")]
            order = candidate_order(records, now_ms, terms, preferred)
            if not order:
                return None
            # The whole choice is inside one write transaction: nobody can slip in.
            worker_id = order[0]
            previous = next((record for record in records if record.worker_id == worker_id), None)
            floor = previous.issued_until_ms if previous else EPOCH_MS
            lease = Lease(worker_id, holder, floor, next_mark(now_ms, floor, terms), now_ms + terms.lease_ms)
            conn.execute(
                "INSERT OR REPLACE INTO worker_id_leases (worker_id, holder, issued_until_ms, expires_at_ms)"
                " VALUES (?, ?, ?, ?)",
                (worker_id, holder, lease.issued_until_ms, lease.expires_at_ms),
            )
        return lease

    def renew(self, lease: Lease, now_ms: int, terms: LeaseTerms) -> Lease | None:
        with self._database().transaction() as conn:
            row = conn.execute(
                "SELECT * FROM worker_id_leases WHERE worker_id = ? AND holder = ?", (lease.worker_id, lease.holder)
            ).fetchone()
            if row is None:
                return None
            stored = _record(row)
            mark = max(stored.issued_until_ms, lease.issued_until_ms, next_mark(now_ms, lease.floor_ms, terms))
            renewed = Lease(lease.worker_id, lease.holder, lease.floor_ms, mark, now_ms + terms.lease_ms)
            conn.execute(
                "UPDATE worker_id_leases SET issued_until_ms = ?, expires_at_ms = ? WHERE worker_id = ?",
                (renewed.issued_until_ms, renewed.expires_at_ms, lease.worker_id),
            )
        return renewed

    def release(self, lease: Lease) -> bool:
        with self._database().transaction() as conn:
            released = conn.execute(
                "UPDATE worker_id_leases SET holder = ?, expires_at_ms = 0 WHERE worker_id = ? AND holder = ?",
                (FREE, lease.worker_id, lease.holder),
            ).rowcount
        return bool(released)

    def holders(self) -> list[LeaseRecord]:
        with self._database().reading() as conn:
            return [_record(row) for row in conn.execute("SELECT * FROM worker_id_leases ORDER BY worker_id")]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = None
