"""The TransferStore on Cassandra/ScyllaDB.

Consistency is LOCAL_QUORUM (serial LOCAL_SERIAL for the LWTs) unless the
URL says otherwise. The tables, and why no status write is a lightweight
transaction, are in schema/ and docs/open-set.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cassandra.cluster import Session
from cassandra.util import uuid_from_time

from app.adapters.backend_url import BackendUrl
from app.adapters.cassandra_events import CassandraEventOutbox
from app.adapters.cassandra_open_set import CassandraOpenSet, OpenSetLayout
from app.adapters.cassandra_session import CassandraSession, Statement
from app.domain.account_model import Direction
from app.domain.batch import Batch
from app.domain.cursor import decode_cursor, page_of, rows_to_read
from app.domain.deposit import DepositAudit
from app.domain.events import StatusEvent
from app.domain.ids import timestamp_ms_of
from app.domain.limits import LimitOverride
from app.domain.transfer import API, AccountType, AuditActor, AuditEntry, FailureReason, Status, Transfer, precedence
from app.ports.store import HistoryPage, OpenPage, OutboxEntry, StatusChange, TransferStore

log = logging.getLogger(__name__)

# Legs (with their first events) per logged batch in record_batch: about 25 KiB.
RECORD_BATCH_LEGS = 20

# The project's schema/ (an adapter takes no settings but what the composition root hands it).
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"
DEFAULT_REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
_RECORD_COLUMNS = (
    "request_id, user_id, asset, from_type, to_type, amount, status, failure_reason, idempotency_key,"
    " fingerprint, created_at_us, updated_at_us, batch_id"
)
_READ_CHUNK = 50  # records one read request asks for
# The settled index: by the minute of the terminal write and a hash shard
# (fixed for the table's life: reads find rows by the same numbers).
SETTLED_BUCKET_SECONDS = 60
SETTLED_SHARDS = 8
# Statements (each one partition) per request: Cassandra's warning threshold
# for an unlogged batch across partitions. Five pending writes (status, event
# outbox row), or two terminal ones (status, open-set delete, settled index,
# event outbox row).
_BATCH_PARTITIONS = 10


def _micros(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def status_write_timestamp(request_id: int, status: Status, failure_reason: FailureReason | None = None) -> int:
    """The write timestamp of a status: fixed per transfer, plus the status's precedence (under 1 ms)."""
    return timestamp_ms_of(request_id) * 1000 + precedence(status, failure_reason)


def _settled_bucket(moment: datetime) -> int:
    seconds = _micros(moment) // 1_000_000
    return seconds - seconds % SETTLED_BUCKET_SECONDS


def _settled_shard(request_id: int) -> int:
    # A hash, not `id % shards`: a Snowflake's low bits restart every millisecond.
    digest = hashlib.blake2b(request_id.to_bytes(8, "big"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SETTLED_SHARDS


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _row_to_transfer(row: Any) -> Transfer | None:
    if row is None or row.user_id is None:
        return None  # only audit rows, or nothing: no record was written
    return Transfer(
        request_id=row.request_id,
        user_id=row.user_id,
        asset=row.asset,
        from_type=AccountType(row.from_type),
        to_type=AccountType(row.to_type),
        amount=int(row.amount),
        status=Status(row.status),
        failure_reason=FailureReason(row.failure_reason) if row.failure_reason else None,
        idempotency_key=row.idempotency_key,
        fingerprint=row.fingerprint or "",
        created_at=_from_micros(row.created_at_us),
        updated_at=_from_micros(row.updated_at_us),
        batch_id=row.batch_id,
    )


def _row_to_deposit(row: Any) -> DepositAudit:
    return DepositAudit(
        deposit_id=row.deposit_id,
        user_id=row.user_id,
        asset=row.asset,
        amount=int(row.amount),
        operator=row.operator,
        reason=row.reason,
        idempotency_key=row.idempotency_key,
        at=_from_micros(row.at_us),
    )


def schema_statements(keyspace: str, replication: str) -> list[str]:
    """The CQL in schema/, in file order, one statement each."""
    statements = []
    for path in sorted(Path(SCHEMA_DIR).glob("*.cql")):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("--"))
        for statement in text.split(";"):
            if statement.strip():
                statements.append(statement.strip().format(keyspace=keyspace, replication=replication))
    return statements


class CassandraTransferStore(TransferStore):
    def __init__(
        self,
        hosts: list[str],
        port: int,
        keyspace: str,
        *,
        consistency: str = "LOCAL_QUORUM",
        serial_consistency: str = "LOCAL_SERIAL",
        local_dc: str | None = None,
        shards: int = 16,
        window_seconds: int = 30,
        margin_seconds: int = 60,
        timeout_seconds: float = 5.0,
        events_margin_seconds: int = 60,
        clock: Callable[[], datetime] = _utc_now,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.keyspace = keyspace
        self.db = CassandraSession(
            hosts,
            port,
            keyspace,
            consistency=consistency,
            serial_consistency=serial_consistency,
            local_dc=local_dc,
            timeout_seconds=timeout_seconds,
            credentials=credentials,
        )
        # Used only when `db init` creates the open set; afterwards it is read from there.
        self.initial_layout = OpenSetLayout(window_seconds, shards, margin_seconds)
        self.open_set = CassandraOpenSet(self.db, self._now)
        self.outbox = CassandraEventOutbox(self.db, self._now, events_margin_seconds)
        self.clock = clock

    def _now(self) -> datetime:
        return self.clock()

    _URL_OPTIONS = (
        "consistency",
        "serial_consistency",
        "local_dc",
        "shards",
        "open_window_seconds",
        "open_margin_seconds",
        "timeout_seconds",
        "events_margin_seconds",
    )

    @classmethod
    def from_url(cls, url: str, credentials: tuple[str, str] | None = None) -> CassandraTransferStore:
        """cassandra://[user:password@]host1,host2:9042/keyspace?consistency=LOCAL_QUORUM&local_dc=dc1

        The credentials are the URL's or `credentials` (CASSANDRA_USERNAME and
        CASSANDRA_PASSWORD), never both: which was meant cannot be known.
        """
        parsed = BackendUrl.parse(url, "cassandra", cls._URL_OPTIONS, credentials=True)
        if parsed.username is not None:
            if credentials is not None:
                raise ValueError("Cassandra credentials are both in STORE_URL and in CASSANDRA_USERNAME: keep one")
            credentials = (parsed.username, parsed.password or "")
        hosts: list[str] = []
        ports: set[int] = set()
        for part in parsed.hosts.split(","):
            host, _, host_port = part.strip().partition(":")
            if not host:
                raise ValueError("a cassandra:// URL needs a host in each comma-separated entry")
            hosts.append(host)
            if host_port:
                if not host_port.isdigit():
                    raise ValueError(f"a cassandra:// URL's port must be a number, not {host_port!r}")
                ports.add(int(host_port))
        if len(ports) > 1:
            raise ValueError("every host of a cassandra:// URL must have the same port (the driver uses one)")
        return cls(
            hosts,
            ports.pop() if ports else 9042,
            parsed.path.strip("/") or "internal_transfer",
            consistency=parsed.get("consistency", str, "LOCAL_QUORUM"),
            serial_consistency=parsed.get("serial_consistency", str, "LOCAL_SERIAL"),
            local_dc=parsed.get_optional("local_dc", str),
            shards=parsed.get("shards", int, 16),
            window_seconds=parsed.get("open_window_seconds", int, 30),
            margin_seconds=parsed.get("open_margin_seconds", int, 60),
            timeout_seconds=parsed.get("timeout_seconds", float, 5.0),
            events_margin_seconds=parsed.get("events_margin_seconds", int, 60),
            credentials=credentials,
        )

    # -- shared with adapters on the same cluster --------------------------------

    def session(self) -> Session:
        """The process's one driver session, for adapters that share this store's cluster."""
        return self.db.connect()

    @contextmanager
    def guard(self) -> Iterator[None]:
        with self.db.guard():
            yield

    def create_schema(self, replication: str | None = None) -> None:
        with self.db.guard():
            session = self.db.connect()
            for statement in schema_statements(self.keyspace, replication or DEFAULT_REPLICATION):
                session.execute(statement, timeout=60)
        self.open_set.initialise(self.initial_layout)
        self.outbox.initialise()

    # -- records and status --------------------------------------------------------

    def _new_record_statements(self, transfer: Transfer, home: int) -> list[Statement]:
        request_id = transfer.request_id
        columns = (
            "request_id, audit_at, user_id, asset, from_type, to_type, amount, status, idempotency_key,"
            " fingerprint, created_at_us, updated_at_us, actor, to_status, reason, at_us"
        )
        values: list[Any] = [
            request_id,
            uuid_from_time(transfer.created_at.timestamp()),
            transfer.user_id,
            transfer.asset,
            transfer.from_type.value,
            transfer.to_type.value,
            transfer.amount,
            transfer.status.value,
            transfer.idempotency_key,
            transfer.fingerprint,
            _micros(transfer.created_at),
            _micros(transfer.updated_at),
            str(API),
            transfer.status.value,
            "accepted",
            _micros(transfer.created_at),
        ]
        if transfer.batch_id is not None:
            # Only a leg names its batch: a single transfer's write stays as it was (no null, so no tombstone).
            columns += ", batch_id"
            values.append(transfer.batch_id)
        record: Statement = (
            f"INSERT INTO {{ks}}.transfer_records ({columns})"
            f" VALUES ({', '.join('?' * len(values))}) USING TIMESTAMP ?",
            (*values, status_write_timestamp(request_id, transfer.status)),
        )
        by_user: Statement = (
            "INSERT INTO {ks}.transfers_by_user (user_id, request_id, asset) VALUES (?, ?, ?)",
            (transfer.user_id, request_id, transfer.asset),
        )
        return [record, by_user, *self.open_set.filing(request_id, home)]

    def record_new(self, transfer: Transfer) -> None:
        home = self.open_set.window_of(transfer.created_at)
        event = StatusEvent.status_changed(None, transfer, API, "accepted")
        outbox, entries = self.outbox.filing([event])
        self.db.run_as_one([*self._new_record_statements(transfer, home), *outbox])
        self.open_set.confirm_filed(transfer.request_id, home)
        self._written(self.outbox.confirm_filed(entries))

    def record_batch(self, batch: Batch, legs: Sequence[Transfer]) -> None:
        # LOGGED batches: each leg lands with its record, history row,
        # open-set filing and first event (docs/events.md), or not at all.
        # Fifty legs with their events exceed Cassandra's batch size failure
        # threshold (50 KiB by default), so they go RECORD_BATCH_LEGS at a
        # time, the batch's own row with the first; a crash between two of
        # these leaves a half-recorded batch, which the scanner fences and
        # fails and a retry with the key completes (tests/unit/test_batches.py).
        homes = [self.open_set.window_of(leg.created_at) for leg in legs]
        batch_row: Statement = (
            "INSERT INTO {ks}.batches (batch_id, user_id, request_ids, created_at_us, idempotency_key,"
            " fingerprint) VALUES (?, ?, ?, ?, ?, ?)",
            (
                batch.batch_id,
                batch.user_id,
                list(batch.request_ids),
                _micros(batch.created_at),
                batch.idempotency_key,
                batch.fingerprint,
            ),
        )
        written: list[OutboxEntry] = []
        for start in range(0, len(legs), RECORD_BATCH_LEGS):
            chunk = list(zip(legs, homes, strict=True))[start : start + RECORD_BATCH_LEGS]
            statements: list[Statement] = [batch_row] if start == 0 else []
            for leg, home in chunk:
                statements.extend(self._new_record_statements(leg, home))
            outbox, entries = self.outbox.filing(
                [StatusEvent.status_changed(None, leg, API, "accepted") for leg, _ in chunk]
            )
            self.db.run_logged([*statements, *outbox])
            written.extend(entries)
        for leg, home in zip(legs, homes, strict=True):
            self.open_set.confirm_filed(leg.request_id, home)
        self._written(self.outbox.confirm_filed(written))

    def get_batch(self, batch_id: int) -> Batch | None:
        row = self.db.run(
            "SELECT batch_id, user_id, request_ids, created_at_us, idempotency_key, fingerprint"
            " FROM {ks}.batches WHERE batch_id = ?",
            (batch_id,),
        ).one()
        if row is None:
            return None
        return Batch(
            batch_id=row.batch_id,
            user_id=row.user_id,
            request_ids=tuple(row.request_ids),
            created_at=_from_micros(row.created_at_us),
            idempotency_key=row.idempotency_key,
            fingerprint=row.fingerprint,
        )

    def get(self, request_id: int) -> Transfer | None:
        return _row_to_transfer(
            self.db.run(
                f"SELECT {_RECORD_COLUMNS} FROM {{ks}}.transfer_records WHERE request_id = ? LIMIT 1", (request_id,)
            ).one()
        )

    def get_many(self, request_ids: Sequence[int]) -> dict[int, Transfer]:
        # A few partitions per request (IN), the requests in flight at once:
        # far less work per transfer, on both sides, than a request each.
        unique = sorted(set(request_ids))
        chunks = [tuple(unique[i : i + _READ_CHUNK]) for i in range(0, len(unique), _READ_CHUNK)]
        found = self.db.run_each(
            f"SELECT {_RECORD_COLUMNS} FROM {{ks}}.transfer_records WHERE request_id IN ? PER PARTITION LIMIT 1",
            [(list(chunk),) for chunk in chunks],
            lambda rows: [_row_to_transfer(row) for row in rows],
        )
        return {t.request_id: t for rows in found for t in rows if t is not None}

    def _status_statements(self, change: StatusChange) -> tuple[list[Statement], OutboxEntry]:
        """The change's statements (its event's outbox row among them), and the event."""
        after = change.after
        columns = ["request_id", "audit_at", "status", "updated_at_us", "actor", "from_status", "to_status", "reason"]
        values: list[Any] = [
            after.request_id,
            uuid_from_time(after.updated_at.timestamp()),
            after.status.value,
            _micros(after.updated_at),
            str(change.actor),
            change.before.status.value,
            after.status.value,
            change.reason,
        ]
        if after.failure_reason is not None:
            columns.append("failure_reason")
            values.append(after.failure_reason.value)
        columns.append("at_us")
        values.append(_micros(after.updated_at))
        statements: list[Statement] = [
            (
                f"INSERT INTO {{ks}}.transfer_records ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))}) USING TIMESTAMP ?",
                (*values, status_write_timestamp(after.request_id, after.status, after.failure_reason)),
            )
        ]
        if after.status.is_terminal:
            home = self.open_set.window_of(after.created_at)
            statements.append(self.open_set.removal(after.request_id, home))
            # The settled index, for the continuous reconciliation: one small
            # row in a partition per minute and shard, gone by TTL (schema/).
            # Reading history instead would mean every user's partition; this
            # reads the last few minutes' partitions, whatever the volume
            # behind them. It rides the status's own request (no extra round
            # trip); an unlogged batch is not atomic across partitions, so a
            # row can be lost in a crash: that transfer is then not re-checked,
            # which never raises a false alarm.
            statements.append(
                (
                    "INSERT INTO {ks}.settled_recently (minute, shard, request_id) VALUES (?, ?, ?)",
                    (_settled_bucket(after.updated_at), _settled_shard(after.request_id), after.request_id),
                )
            )
        # The event rides the same request: not atomic with the status inside
        # Cassandra, but one request, so a crash of this process cannot split
        # it (docs/events.md, "On Cassandra", for what Cassandra's own failures do).
        event = StatusEvent.status_changed(change.before, after, change.actor, change.reason)
        outbox, entries = self.outbox.filing([event])
        return statements + outbox, entries[0]

    def _status_groups(self, changes: Sequence[StatusChange]) -> tuple[list[list[Statement]], list[OutboxEntry]]:
        # A few transfers' changes (status and audit row, open-set delete,
        # settled index) per request, the requests in flight at once. A
        # change's statements never straddle two requests, and no request
        # spans more partitions than Cassandra's batch warning allows.
        groups: list[list[Statement]] = []
        current: list[Statement] = []
        entries: list[OutboxEntry] = []
        for change in changes:
            statements, entry = self._status_statements(change)
            entries.append(entry)
            if current and len(current) + len(statements) > _BATCH_PARTITIONS:
                groups.append(current)
                current = []
            current.extend(statements)
        if current:
            groups.append(current)
        return groups, entries

    def record_statuses(self, changes: Sequence[StatusChange]) -> None:
        self.start_recording(changes)()

    def start_recording(self, changes: Sequence[StatusChange]) -> Callable[[], None]:
        groups, entries = self._status_groups(changes)
        wait = self.db.start_each_as_one(groups)

        def written() -> None:
            try:
                wait()
            except Exception:
                # Not acknowledged: the status may have landed without its
                # event's row (an unlogged batch is not atomic inside
                # Cassandra), and a retry that finds the status written writes
                # nothing. The events are true whatever landed (a status is
                # written only after the ledger decided it), so their rows are
                # written once more, on their own, before the error goes up:
                # in the bucket of now, since the error may come after the
                # relay passed the bucket the write started in.
                with contextlib.suppress(Exception):
                    self.outbox.file_again([entry.event for entry in entries])
                raise
            self._written(self.outbox.confirm_filed(entries))

        return written

    # -- the event outbox ----------------------------------------------------------

    def record_events(self, events: Sequence[StatusEvent]) -> None:
        statements, entries = self.outbox.filing(events)
        self.db.run_together(statements)
        self._written(self.outbox.confirm_filed(entries))

    def unpublished_events(self, limit: int, written_before: datetime) -> list[OutboxEntry]:
        return self.outbox.unpublished(limit, written_before)

    def mark_events_published(self, entries: Sequence[OutboxEntry]) -> None:
        self.outbox.mark_published(entries)

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
        # One read of the index (the driver's page holds it whole), then the
        # records of the rows whose asset matches: at most 1 + asked/_READ_CHUNK queries.
        rows = list(
            self.db.run(
                "SELECT request_id, asset FROM {ks}.transfers_by_user WHERE user_id = ? AND request_id < ? LIMIT ?",
                (user_id, before, asked),
            )
        )
        wanted = [row.request_id for row in rows if asset is None or row.asset == asset]
        found = self.get_many(wanted)
        matches = [
            transfer
            for transfer in (found.get(request_id) for request_id in wanted)
            # A missing record: an index row whose record was never written.
            if transfer is not None and transfer.user_id == user_id and (status is None or transfer.status == status)
        ]
        page, next_cursor = page_of(matches, limit, [row.request_id for row in rows], asked)
        return HistoryPage(items=page, next_cursor=next_cursor)

    # -- the open set -------------------------------------------------------------

    def open_transfers(self, limit: int = 1000, after: int | None = None) -> OpenPage:
        filed = self.open_set.read(limit, after or 0)
        records = self.get_many(filed.ids)
        items = []
        for request_id in filed.ids:
            transfer = records.get(request_id)
            if transfer is None:
                continue  # its writer has not finished, or died before the record landed
            if transfer.status.is_terminal:
                # Settled, but filed again meanwhile (or the settling delete was lost).
                self.open_set.remove(request_id, filed.where[request_id])
                continue
            items.append(transfer)
        return OpenPage(items=items, next_after=filed.next_after)

    def advance_open_set(self) -> int:
        def still_open(request_ids: list[int]) -> list[int]:
            records = self.get_many(request_ids)
            return [i for i in request_ids if i in records and not records[i].status.is_terminal]

        return self.open_set.close_due_windows(still_open)

    # -- audit ------------------------------------------------------------------------

    def settled_between(self, start: datetime, end: datetime, limit: int) -> list[Transfer]:
        found: list[Transfer] = []
        bucket = _settled_bucket(start)
        while bucket <= _settled_bucket(end) and len(found) < limit:
            # A bucket's shards in parallel, then their records; a bucket at a time, oldest first.
            ids = self.db.run_each(
                "SELECT request_id FROM {ks}.settled_recently WHERE minute = ? AND shard = ?",
                [(bucket, shard) for shard in range(SETTLED_SHARDS)],
                lambda rows: [row.request_id for row in rows],
            )
            records = self.get_many([request_id for shard_ids in ids for request_id in shard_ids])
            found.extend(t for t in records.values() if t.status.is_terminal and start <= t.updated_at < end)
            bucket += SETTLED_BUCKET_SECONDS
        found.sort(key=lambda t: (t.updated_at, t.request_id))
        return found[:limit]

    def audit_trail(self, request_id: int) -> list[AuditEntry]:
        rows = self.db.run(
            "SELECT request_id, actor, from_status, to_status, reason, at_us FROM {ks}.transfer_records"
            " WHERE request_id = ?",
            (request_id,),
        )
        return [
            AuditEntry(
                request_id=row.request_id,
                at=_from_micros(row.at_us),
                actor=AuditActor.parse(row.actor),
                from_status=Status(row.from_status) if row.from_status else None,
                to_status=Status(row.to_status),
                reason=row.reason,
            )
            for row in rows
            if row.to_status is not None
        ]

    def append_audit(self, entry: AuditEntry, event: StatusEvent | None = None) -> None:
        # Only the entry's own row: no status cell is touched.
        row: Statement = (
            "INSERT INTO {ks}.transfer_records (request_id, audit_at, actor, from_status, to_status, reason, at_us)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.request_id,
                uuid_from_time(entry.at.timestamp()),
                str(entry.actor),
                entry.from_status.value if entry.from_status else None,
                entry.to_status.value,
                entry.reason,
                _micros(entry.at),
            ),
        )
        outbox, entries = self.outbox.filing([event] if event is not None else [])
        self.db.run_as_one([row, *outbox])
        self._written(self.outbox.confirm_filed(entries))

    # -- deposits ------------------------------------------------------------------------

    def record_deposit(self, audit: DepositAudit) -> DepositAudit:
        row = self.db.run(
            "INSERT INTO {ks}.deposits (deposit_id, user_id, asset, amount, operator, reason, idempotency_key, at_us)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
            (
                audit.deposit_id,
                audit.user_id,
                audit.asset,
                audit.amount,
                audit.operator,
                audit.reason,
                audit.idempotency_key,
                _micros(audit.at),
            ),
        ).one()
        return audit if row.applied else _row_to_deposit(row)

    def get_deposit(self, deposit_id: int) -> DepositAudit | None:
        row = self.db.run(
            "SELECT deposit_id, user_id, asset, amount, operator, reason, idempotency_key, at_us"
            " FROM {ks}.deposits WHERE deposit_id = ?",
            (deposit_id,),
        ).one()
        return None if row is None else _row_to_deposit(row)

    # -- per-user daily limit overrides ----------------------------------------

    def add_limit_override(self, override: LimitOverride) -> bool:
        # A lightweight transaction: two operators setting the same version at
        # once must not both win (each version's limit feeds the quota arithmetic).
        row = self.db.run(
            "INSERT INTO {ks}.limit_overrides (user_id, asset, direction, version, limit_units, actor, reason,"
            " set_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
            (
                override.user_id,
                override.asset,
                override.direction.value,
                override.version,
                override.limit,
                override.actor,
                override.reason,
                _micros(override.set_at),
            ),
        ).one()
        return bool(row.applied)

    def limit_overrides(self, user_id: int) -> list[LimitOverride]:
        rows = self.db.run(
            "SELECT user_id, asset, direction, version, limit_units, actor, reason, set_at_us"
            " FROM {ks}.limit_overrides WHERE user_id = ?",
            (user_id,),
        )
        return [
            LimitOverride(
                user_id=row.user_id,
                asset=row.asset,
                direction=Direction(row.direction),
                version=row.version,
                limit=int(row.limit_units),
                actor=row.actor,
                reason=row.reason,
                set_at=_from_micros(row.set_at_us),
            )
            for row in rows
        ]

    def _written(self, entries: Sequence[OutboxEntry]) -> None:
        if entries and self.outbox_listener is not None:
            self.outbox_listener(entries)

    def ping(self) -> None:
        self.db.run("SELECT release_version FROM system.local")

    def close(self) -> None:
        self.db.close()
