"""The embedded TransferStore on SQLite (single process, for development)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from app.adapters.sqlite_util import SqliteDatabase
from app.domain.account_model import Direction
from app.domain.batch import Batch
from app.domain.cursor import decode_cursor, page_of, rows_to_read
from app.domain.deposit import DepositAudit
from app.domain.events import StatusEvent
from app.domain.limits import LimitOverride
from app.domain.transfer import (
    API,
    AccountType,
    AuditActor,
    AuditEntry,
    FailureReason,
    Status,
    Transfer,
    precedence,
)
from app.ports.store import HistoryPage, OpenPage, OutboxEntry, StatusChange, TransferStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    request_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, asset TEXT NOT NULL,
    from_type TEXT NOT NULL, to_type TEXT NOT NULL, amount TEXT NOT NULL,
    status TEXT NOT NULL, failure_reason TEXT, idempotency_key TEXT,
    fingerprint TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    batch_id INTEGER
);
CREATE INDEX IF NOT EXISTS transfers_by_user ON transfers (user_id, request_id DESC);
CREATE INDEX IF NOT EXISTS open_transfers ON transfers (status, request_id)
    WHERE status IN ('requesting', 'pending');
CREATE INDEX IF NOT EXISTS settled_transfers ON transfers (updated_at, request_id)
    WHERE status IN ('success', 'failed');
CREATE TABLE IF NOT EXISTS limit_overrides (
    user_id INTEGER NOT NULL, asset TEXT NOT NULL, direction TEXT NOT NULL, version INTEGER NOT NULL,
    limit_units TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL, set_at TEXT NOT NULL,
    PRIMARY KEY (user_id, asset, direction, version)
);
CREATE TABLE IF NOT EXISTS audit_trail (
    request_id INTEGER NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,
    actor TEXT NOT NULL, from_status TEXT, to_status TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_transfer ON audit_trail (request_id, seq);
-- The event outbox (docs/events.md): written in the status change's own
-- transaction; the partial index finds what is left to publish.
CREATE TABLE IF NOT EXISTS event_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, written_at TEXT NOT NULL,
    payload TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS event_outbox_unpublished ON event_outbox (seq) WHERE published = 0;
CREATE TABLE IF NOT EXISTS batches (
    batch_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, request_ids TEXT NOT NULL,
    created_at TEXT NOT NULL, idempotency_key TEXT, fingerprint TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deposits (
    deposit_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, asset TEXT NOT NULL, amount TEXT NOT NULL,
    operator TEXT NOT NULL, reason TEXT NOT NULL, idempotency_key TEXT NOT NULL, at TEXT NOT NULL
);
"""


# The domain's precedence of what is stored, as SQL, every cause of failure
# its own value (statuses and causes are fixed words, never input).
_STORED_PRECEDENCE = (
    "(CASE "
    + " ".join(f"WHEN status = '{s.value}' THEN {precedence(s, None)}" for s in Status if s != Status.FAILED)
    + " "
    + " ".join(f"WHEN failure_reason = '{c.value}' THEN {precedence(Status.FAILED, c)}" for c in FailureReason)
    + f" ELSE {precedence(Status.FAILED, None)} END)"
)


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _row_to_transfer(row: sqlite3.Row) -> Transfer:
    return Transfer(
        request_id=row["request_id"],
        user_id=row["user_id"],
        asset=row["asset"],
        from_type=AccountType(row["from_type"]),
        to_type=AccountType(row["to_type"]),
        amount=int(row["amount"]),
        status=Status(row["status"]),
        failure_reason=FailureReason(row["failure_reason"]) if row["failure_reason"] else None,
        idempotency_key=row["idempotency_key"],
        fingerprint=row["fingerprint"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        batch_id=row["batch_id"],
    )


def _row_to_deposit(row: sqlite3.Row) -> DepositAudit:
    return DepositAudit(
        deposit_id=row["deposit_id"],
        user_id=row["user_id"],
        asset=row["asset"],
        amount=int(row["amount"]),
        operator=row["operator"],
        reason=row["reason"],
        idempotency_key=row["idempotency_key"],
        at=datetime.fromisoformat(row["at"]),
    )


def _already_done() -> None:
    return None


class SqliteTransferStore(TransferStore):
    def __init__(self, path: str) -> None:
        self._db = SqliteDatabase(path, "store", _SCHEMA)
        with self._db.transaction() as conn:
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(transfers)")}
            if "batch_id" not in columns:
                # A database made before batches existed: its transfers are all single ones.
                conn.execute("ALTER TABLE transfers ADD COLUMN batch_id INTEGER")

    def record_new(self, transfer: Transfer) -> None:
        with self._db.transaction() as conn:
            entries = self._insert_new(conn, transfer)
        self._written(entries)

    def _insert_new(self, conn: sqlite3.Connection, transfer: Transfer) -> list[OutboxEntry]:
        # Ids are unique by construction: a row already there is this very
        # transfer recorded by an earlier attempt, and it keeps its status.
        inserted = conn.execute(
            "INSERT OR IGNORE INTO transfers (request_id, user_id, asset, from_type, to_type,"
            " amount, status, failure_reason, idempotency_key, fingerprint, created_at, updated_at, batch_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                transfer.request_id,
                transfer.user_id,
                transfer.asset,
                transfer.from_type.value,
                transfer.to_type.value,
                str(transfer.amount),
                transfer.status.value,
                transfer.failure_reason.value if transfer.failure_reason else None,
                transfer.idempotency_key,
                transfer.fingerprint,
                transfer.created_at.isoformat(),
                transfer.updated_at.isoformat(),
                transfer.batch_id,
            ),
        ).rowcount
        if not inserted:
            return []
        self._audit(conn, transfer.request_id, transfer.created_at, API, None, transfer.status, "accepted")
        return [self._outbox(conn, StatusEvent.status_changed(None, transfer, API, "accepted"))]

    def record_batch(self, batch: Batch, legs: Sequence[Transfer]) -> None:
        # One transaction: the batch and all its legs (with their events), or nothing.
        entries: list[OutboxEntry] = []
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO batches (batch_id, user_id, request_ids, created_at, idempotency_key,"
                " fingerprint) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    batch.batch_id,
                    batch.user_id,
                    json.dumps([str(i) for i in batch.request_ids]),
                    batch.created_at.isoformat(),
                    batch.idempotency_key,
                    batch.fingerprint,
                ),
            )
            for leg in legs:
                entries.extend(self._insert_new(conn, leg))
        self._written(entries)

    def get_batch(self, batch_id: int) -> Batch | None:
        with self._db.reading() as conn:
            row = conn.execute("SELECT * FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
        if row is None:
            return None
        return Batch(
            batch_id=row["batch_id"],
            user_id=row["user_id"],
            request_ids=tuple(int(i) for i in json.loads(row["request_ids"])),
            created_at=datetime.fromisoformat(row["created_at"]),
            idempotency_key=row["idempotency_key"],
            fingerprint=row["fingerprint"],
        )

    def _outbox(self, conn: sqlite3.Connection, event: StatusEvent) -> OutboxEntry:
        """The event, in the caller's transaction: it is kept exactly when the change it tells of is."""
        seq = conn.execute(
            "INSERT INTO event_outbox (event_id, written_at, payload) VALUES (?, ?, ?)",
            (event.event_id, _utc_iso(datetime.now(UTC)), json.dumps(event.to_message())),
        ).lastrowid
        return OutboxEntry(event, str(seq))

    def _audit(
        self,
        conn: sqlite3.Connection,
        request_id: int,
        at: datetime,
        actor: AuditActor,
        from_status: Status | None,
        to_status: Status,
        reason: str,
    ) -> None:
        conn.execute(
            "INSERT INTO audit_trail (request_id, at, actor, from_status, to_status, reason) VALUES (?, ?, ?, ?, ?, ?)",
            (
                request_id,
                at.isoformat(),
                str(actor),
                from_status.value if from_status else None,
                to_status.value,
                reason,
            ),
        )

    def get(self, request_id: int) -> Transfer | None:
        with self._db.reading() as conn:
            row = conn.execute("SELECT * FROM transfers WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else _row_to_transfer(row)

    def get_many(self, request_ids: Sequence[int]) -> dict[int, Transfer]:
        ids = list(dict.fromkeys(request_ids))
        found: dict[int, Transfer] = {}
        with self._db.reading() as conn:
            # In chunks: SQLite caps the number of parameters of one statement.
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                for row in conn.execute(f"SELECT * FROM transfers WHERE request_id IN ({marks})", chunk):
                    found[row["request_id"]] = _row_to_transfer(row)
        return found

    def start_recording(self, changes: Sequence[StatusChange]) -> Callable[[], None]:
        # SQLite writes synchronously: the write is done when this returns.
        self.record_statuses(changes)
        return _already_done

    def record_statuses(self, changes: Sequence[StatusChange]) -> None:
        entries: list[OutboxEntry] = []
        with self._db.transaction() as conn:
            for change in changes:
                after = change.after
                # The most advanced status stays, whatever order writes arrive in.
                conn.execute(
                    "UPDATE transfers SET status = ?, failure_reason = ?, updated_at = ?"
                    f" WHERE request_id = ? AND {_STORED_PRECEDENCE} < ?",
                    (
                        after.status.value,
                        after.failure_reason.value if after.failure_reason else None,
                        after.updated_at.isoformat(),
                        after.request_id,
                        precedence(after.status, after.failure_reason),
                    ),
                )
                self._audit(
                    conn,
                    after.request_id,
                    after.updated_at,
                    change.actor,
                    change.before.status,
                    after.status,
                    change.reason,
                )
                event = StatusEvent.status_changed(change.before, after, change.actor, change.reason)
                entries.append(self._outbox(conn, event))
        self._written(entries)

    def record_events(self, events: Sequence[StatusEvent]) -> None:
        with self._db.transaction() as conn:
            entries = [self._outbox(conn, event) for event in events]
        self._written(entries)

    def unpublished_events(self, limit: int, written_before: datetime) -> list[OutboxEntry]:
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT seq, payload, written_at FROM event_outbox WHERE published = 0 ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        cutoff = _utc_iso(written_before)
        return [
            OutboxEntry(StatusEvent.from_message(json.loads(row["payload"])), str(row["seq"]))
            for row in rows
            if row["written_at"] < cutoff
        ]

    def mark_events_published(self, entries: Sequence[OutboxEntry]) -> None:
        # A flag, not a delete: the outbox doubles as the record of what was announced.
        with self._db.transaction() as conn:
            conn.executemany("UPDATE event_outbox SET published = 1 WHERE seq = ?", [(int(e.slot),) for e in entries])

    def history(
        self,
        user_id: int,
        limit: int,
        cursor: str | None = None,
        status: Status | None = None,
        asset: str | None = None,
    ) -> HistoryPage:
        before = decode_cursor(cursor) if cursor is not None else 2**63 - 1
        asked = rows_to_read(limit, status is not None or asset is not None)
        # The same budget as every store (app/domain/cursor.py): the newest rows
        # below the cursor, filtered here, so a page's work is bounded.
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM transfers WHERE user_id = ? AND request_id < ? ORDER BY request_id DESC LIMIT ?",
                (user_id, before, asked),
            ).fetchall()
        read = [_row_to_transfer(row) for row in rows]
        matches = [t for t in read if (status is None or t.status == status) and (asset is None or t.asset == asset)]
        items, next_cursor = page_of(matches, limit, [t.request_id for t in read], asked)
        return HistoryPage(items=items, next_cursor=next_cursor)

    def open_transfers(self, limit: int = 1000, after: int | None = None) -> OpenPage:
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM transfers WHERE status IN ('requesting', 'pending') AND request_id > ?"
                " ORDER BY request_id LIMIT ?",
                (after or 0, limit + 1),
            ).fetchall()
        items = [_row_to_transfer(row) for row in rows[:limit]]
        return OpenPage(items=items, next_after=items[-1].request_id if len(rows) > limit else None)

    def settled_between(self, start: datetime, end: datetime, limit: int) -> list[Transfer]:
        # Times are stored as UTC ISO strings, which sort as the times do.
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM transfers WHERE status IN ('success', 'failed') AND updated_at >= ? AND updated_at < ?"
                " ORDER BY updated_at, request_id LIMIT ?",
                (_utc_iso(start), _utc_iso(end), limit),
            ).fetchall()
        return [_row_to_transfer(row) for row in rows]

    def audit_trail(self, request_id: int) -> list[AuditEntry]:
        with self._db.reading() as conn:
            rows = conn.execute("SELECT * FROM audit_trail WHERE request_id = ? ORDER BY seq", (request_id,)).fetchall()
        return [
            AuditEntry(
                request_id=row["request_id"],
                at=datetime.fromisoformat(row["at"]),
                actor=AuditActor.parse(row["actor"]),
                from_status=Status(row["from_status"]) if row["from_status"] else None,
                to_status=Status(row["to_status"]),
                reason=row["reason"],
            )
            for row in rows
        ]

    def append_audit(self, entry: AuditEntry, event: StatusEvent | None = None) -> None:
        with self._db.transaction() as conn:
            self._audit(conn, entry.request_id, entry.at, entry.actor, entry.from_status, entry.to_status, entry.reason)
            entries = [] if event is None else [self._outbox(conn, event)]
        self._written(entries)

    def record_deposit(self, audit: DepositAudit) -> DepositAudit:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO deposits (deposit_id, user_id, asset, amount, operator, reason,"
                " idempotency_key, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    audit.deposit_id,
                    audit.user_id,
                    audit.asset,
                    str(audit.amount),
                    audit.operator,
                    audit.reason,
                    audit.idempotency_key,
                    audit.at.isoformat(),
                ),
            )
            row = conn.execute("SELECT * FROM deposits WHERE deposit_id = ?", (audit.deposit_id,)).fetchone()
        return _row_to_deposit(row)

    def get_deposit(self, deposit_id: int) -> DepositAudit | None:
        with self._db.reading() as conn:
            row = conn.execute("SELECT * FROM deposits WHERE deposit_id = ?", (deposit_id,)).fetchone()
        return None if row is None else _row_to_deposit(row)

    def add_limit_override(self, override: LimitOverride) -> bool:
        with self._db.transaction() as conn:
            return bool(
                conn.execute(
                    "INSERT OR IGNORE INTO limit_overrides (user_id, asset, direction, version, limit_units, actor,"
                    " reason, set_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        override.user_id,
                        override.asset,
                        override.direction.value,
                        override.version,
                        str(override.limit),
                        override.actor,
                        override.reason,
                        override.set_at.isoformat(),
                    ),
                ).rowcount
            )

    def limit_overrides(self, user_id: int) -> list[LimitOverride]:
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM limit_overrides WHERE user_id = ? ORDER BY asset, direction, version", (user_id,)
            ).fetchall()
        return [
            LimitOverride(
                user_id=row["user_id"],
                asset=row["asset"],
                direction=Direction(row["direction"]),
                version=row["version"],
                limit=int(row["limit_units"]),
                actor=row["actor"],
                reason=row["reason"],
                set_at=datetime.fromisoformat(row["set_at"]),
            )
            for row in rows
        ]

    def advance_open_set(self) -> int:
        # The open set is a query over the transfers table: nothing to re-file.
        return 0

    def _written(self, entries: Sequence[OutboxEntry]) -> None:
        if entries and self.outbox_listener is not None:
            self.outbox_listener(entries)

    def ping(self) -> None:
        with self._db.reading() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._db.close()
