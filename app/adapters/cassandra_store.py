"""The TransferStore on Cassandra/ScyllaDB.

One Cluster/Session per process, created on first use (after gunicorn
forks). Prepared statements only. Consistency is LOCAL_QUORUM and serial
consistency LOCAL_SERIAL unless the URL says otherwise. Every driver
failure surfaces as DependencyUnavailable("store").
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

from cassandra import ConsistencyLevel, DriverException
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement
from cassandra.util import uuid_from_time

from app.config import PROJECT_ROOT
from app.domain.cursor import decode_cursor, encode_cursor
from app.domain.ids import first_id_at, timestamp_ms_of
from app.domain.transfer import AccountType, AuditEntry, Status, Transfer
from app.ports.errors import DependencyUnavailable
from app.ports.store import HistoryPage, IdempotencyClaim, TransferStore

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_DIR = PROJECT_ROOT / "schema"
DEFAULT_REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
_TRANSFER_COLUMNS = (
    "request_id, user_id, asset, from_type, to_type, amount, status, failure_reason, idempotency_key,"
    " fingerprint, created_at_us, updated_at_us"
)
_DAY = 86_400_000  # ms
_LOW_WATER_MARGIN_MS = 10 * 60 * 1000
_MAX_HISTORY_SCAN = 2000  # index rows one history request may read


def _micros(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def _day_of(request_id: int) -> int:
    return timestamp_ms_of(request_id) // _DAY


def _row_to_transfer(row: Any) -> Transfer:
    return Transfer(
        request_id=row.request_id,
        user_id=row.user_id,
        asset=row.asset,
        from_type=AccountType(row.from_type),
        to_type=AccountType(row.to_type),
        amount=int(row.amount),
        status=Status(row.status),
        failure_reason=row.failure_reason,
        idempotency_key=row.idempotency_key,
        fingerprint=row.fingerprint or "",
        created_at=_from_micros(row.created_at_us),
        updated_at=_from_micros(row.updated_at_us),
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
        shards: int = 8,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.hosts, self.port, self.keyspace = hosts, port, keyspace
        self.consistency = ConsistencyLevel.name_to_value[consistency]
        self.serial_consistency = ConsistencyLevel.name_to_value[serial_consistency]
        self.local_dc = local_dc
        self.shards = shards
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._prepared: dict[str, PreparedStatement] = {}
        self._low_water: dict[tuple[int, int], int] = {}

    @classmethod
    def from_url(cls, url: str) -> CassandraTransferStore:
        """cassandra://host1,host2:9042/keyspace?consistency=LOCAL_QUORUM&local_dc=dc1"""
        parsed = urlparse(url)
        netloc = parsed.netloc.rsplit("@", 1)[-1]
        port = 9042
        hosts = []
        for part in netloc.split(","):
            host, _, host_port = part.partition(":")
            hosts.append(host)
            if host_port:
                port = int(host_port)
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        return cls(
            hosts,
            port,
            parsed.path.strip("/") or "internal_transfer",
            consistency=query.get("consistency", "LOCAL_QUORUM"),
            serial_consistency=query.get("serial_consistency", "LOCAL_SERIAL"),
            local_dc=query.get("local_dc"),
            shards=int(query.get("shards", "8")),
            timeout_seconds=float(query.get("timeout_seconds", "5")),
        )

    # -- connection ---------------------------------------------------------

    def _connect(self) -> Session:
        if self._session is not None:
            return self._session
        with self._lock:
            if self._session is None:
                profile = ExecutionProfile(
                    load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_dc)),
                    consistency_level=self.consistency,
                    serial_consistency_level=self.serial_consistency,
                    request_timeout=self.timeout_seconds,
                )
                username = os.environ.get("CASSANDRA_USERNAME")
                auth = PlainTextAuthProvider(username, os.environ.get("CASSANDRA_PASSWORD", "")) if username else None
                cluster = Cluster(
                    self.hosts,
                    port=self.port,
                    protocol_version=5,
                    execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                    auth_provider=auth,
                    connect_timeout=self.timeout_seconds,
                    control_connection_timeout=self.timeout_seconds,
                )
                try:
                    self._session = cluster.connect()
                except Exception:
                    cluster.shutdown()
                    raise
                self._cluster = cluster
        assert self._session is not None
        return self._session

    def session(self) -> Session:
        """The process's one driver session, for adapters that share this store's cluster."""
        return self._connect()

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except DependencyUnavailable:
            raise
        except (DriverException, OSError) as exc:
            raise DependencyUnavailable("store", f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            # NoHostAvailable and friends are not all DriverExceptions.
            if type(exc).__module__.startswith("cassandra"):
                raise DependencyUnavailable("store", f"{type(exc).__name__}: {exc}") from exc
            raise

    def _statement(self, cql: str) -> PreparedStatement:
        prepared = self._prepared.get(cql)
        if prepared is None:
            prepared = self._connect().prepare(cql.format(ks=self.keyspace))
            self._prepared[cql] = prepared
        return prepared

    def _run(self, cql: str, params: tuple[Any, ...] = ()) -> Any:
        with self.guard():
            return self._connect().execute(self._statement(cql), params)

    def _run_all(self, cql: str, param_sets: list[tuple[Any, ...]], each: Callable[[Any], T]) -> list[T]:
        with self.guard():
            session = self._connect()
            statement = self._statement(cql)
            futures = [session.execute_async(statement, params) for params in param_sets]
            return [each(future.result()) for future in futures]

    def _run_together(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self.guard():
            session = self._connect()
            futures = [session.execute_async(self._statement(cql), params) for cql, params in statements]
            for future in futures:
                future.result()

    def create_schema(self, replication: str | None = None) -> None:
        with self.guard():
            session = self._connect()
            for statement in schema_statements(self.keyspace, replication or DEFAULT_REPLICATION):
                session.execute(statement, timeout=60)

    # -- the port -----------------------------------------------------------

    def claim_idempotency_key(self, user_id: int, key: str, claim: IdempotencyClaim) -> IdempotencyClaim | None:
        result = self._run(
            "INSERT INTO {ks}.idempotency_keys (user_id, idempotency_key, request_id, fingerprint)"
            " VALUES (?, ?, ?, ?) IF NOT EXISTS",
            (user_id, key, claim.request_id, claim.fingerprint),
        )
        row = result.one()
        if row.applied:
            return None
        return IdempotencyClaim(request_id=row.request_id, fingerprint=row.fingerprint)

    def reassign_idempotency_key(
        self, user_id: int, key: str, expected_request_id: int, claim: IdempotencyClaim
    ) -> IdempotencyClaim | None:
        row = self._run(
            "UPDATE {ks}.idempotency_keys SET request_id = ?, fingerprint = ?"
            " WHERE user_id = ? AND idempotency_key = ? IF request_id = ?",
            (claim.request_id, claim.fingerprint, user_id, key, expected_request_id),
        ).one()
        if row.applied:
            return None
        holder = self._run(
            "SELECT request_id, fingerprint FROM {ks}.idempotency_keys WHERE user_id = ? AND idempotency_key = ?",
            (user_id, key),
        ).one()
        return IdempotencyClaim(request_id=holder.request_id, fingerprint=holder.fingerprint)

    def _shard(self, request_id: int) -> int:
        return request_id % self.shards

    def insert(self, transfer: Transfer) -> bool:
        request_id = transfer.request_id
        # Index rows first: if we die before the record itself, they point at
        # nothing and readers skip them; the other order could hide a record.
        # The two are independent, so they go in parallel (one round trip).
        self._run_together(
            [
                (
                    "INSERT INTO {ks}.transfers_by_user (user_id, request_id, asset) VALUES (?, ?, ?)",
                    (transfer.user_id, request_id, transfer.asset),
                ),
                (
                    "INSERT INTO {ks}.open_transfers (day, shard, request_id) VALUES (?, ?, ?)",
                    (_day_of(request_id), self._shard(request_id), request_id),
                ),
            ]
        )
        result = self._run(
            f"INSERT INTO {{ks}}.transfers ({_TRANSFER_COLUMNS}, last_actor, last_reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
            (
                request_id,
                transfer.user_id,
                transfer.asset,
                transfer.from_type.value,
                transfer.to_type.value,
                transfer.amount,
                transfer.status.value,
                transfer.failure_reason,
                transfer.idempotency_key,
                transfer.fingerprint,
                _micros(transfer.created_at),
                _micros(transfer.updated_at),
                "api",
                "accepted",
            ),
        )
        if not result.one().applied:
            return False
        self._audit(request_id, transfer.created_at, "api", None, transfer.status, "accepted")
        return True

    def _audit(
        self, request_id: int, at: datetime, actor: str, from_status: Status | None, to_status: Status, reason: str
    ) -> None:
        self._run(
            "INSERT INTO {ks}.transfer_audit (request_id, at, actor, from_status, to_status, reason, at_us)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                request_id,
                uuid_from_time(at.timestamp()),
                actor,
                from_status.value if from_status else None,
                to_status.value,
                reason,
                _micros(at),
            ),
        )

    def get(self, request_id: int) -> Transfer | None:
        row = self._run(f"SELECT {_TRANSFER_COLUMNS} FROM {{ks}}.transfers WHERE request_id = ?", (request_id,)).one()
        return None if row is None else _row_to_transfer(row)

    def _get_many(self, request_ids: list[int]) -> dict[int, Transfer]:
        rows = self._run_all(
            f"SELECT {_TRANSFER_COLUMNS} FROM {{ks}}.transfers WHERE request_id = ?",
            [(request_id,) for request_id in request_ids],
            lambda result: result.one(),
        )
        return {row.request_id: _row_to_transfer(row) for row in rows if row is not None}

    def transition(
        self,
        transfer: Transfer,
        target: Status,
        *,
        actor: str,
        reason: str,
        now: datetime,
        failure_reason: str | None = None,
    ) -> Transfer | None:
        moved = transfer.moved_to(target, now, failure_reason)
        result = self._run(
            "UPDATE {ks}.transfers SET status = ?, failure_reason = ?, updated_at_us = ?, last_actor = ?,"
            " last_reason = ? WHERE request_id = ? IF status = ?",
            (target.value, failure_reason, _micros(now), actor, reason, transfer.request_id, transfer.status.value),
        )
        if not result.one().applied:
            return None
        self._audit(transfer.request_id, now, actor, transfer.status, target, reason)
        if target.is_terminal:
            self._run(
                "DELETE FROM {ks}.open_transfers WHERE day = ? AND shard = ? AND request_id = ?",
                (_day_of(transfer.request_id), self._shard(transfer.request_id), transfer.request_id),
            )
        return moved

    def history(
        self,
        user_id: int,
        limit: int,
        cursor: str | None = None,
        status: Status | None = None,
        asset: str | None = None,
    ) -> HistoryPage:
        items: list[Transfer] = []
        before = decode_cursor(cursor) if cursor is not None else 2**63 - 1
        chunk = limit + 1 if status is None and asset is None else max(4 * limit, 50)
        exhausted = False
        scanned = 0
        while len(items) <= limit and not exhausted and scanned < _MAX_HISTORY_SCAN:
            rows = list(
                self._run(
                    "SELECT request_id, asset FROM {ks}.transfers_by_user WHERE user_id = ? AND request_id < ? LIMIT ?",
                    (user_id, before, chunk),
                )
            )
            exhausted = len(rows) < chunk
            if not rows:
                break
            before = rows[-1].request_id
            scanned += len(rows)
            wanted = [row.request_id for row in rows if asset is None or row.asset == asset]
            found = self._get_many(wanted)
            for request_id in wanted:
                transfer = found.get(request_id)
                if transfer is None or transfer.user_id != user_id:
                    continue  # an index row whose record was never written
                if status is not None and transfer.status != status:
                    continue
                items.append(transfer)
        page = items[:limit]
        if len(items) > limit:
            next_cursor: str | None = encode_cursor(page[-1].request_id)
        elif not exhausted and scanned >= _MAX_HISTORY_SCAN:
            # A rare filter over a long history: answer with what this much
            # reading found, and a cursor to read on from.
            next_cursor = encode_cursor(before)
        else:
            next_cursor = None
        return HistoryPage(items=page, next_cursor=next_cursor)

    def _watermark(self) -> int | None:
        row = self._run("SELECT day FROM {ks}.open_watermark WHERE name = ?", ("scanner",)).one()
        return None if row is None else row.day

    def open_transfers(self, limit: int = 1000, after: int | None = None) -> list[Transfer]:
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        today = now_ms // _DAY
        watermark = self._watermark()
        start = today - 30 if watermark is None else watermark
        if after is not None:
            start = max(start, _day_of(after))
        found: list[Transfer] = []
        clear_until = start  # every day before this holds no open transfer
        for day in range(start, today + 1):
            if len(found) >= limit:
                break
            open_that_day = self._open_on(day, after or 0, limit - len(found), now_ms)
            found.extend(open_that_day)
            if not open_that_day and day == clear_until and day < today - 1:
                clear_until = day + 1
        if after is None and clear_until > start:
            self._run("UPDATE {ks}.open_watermark SET day = ? WHERE name = ?", (clear_until, "scanner"))
        return found[:limit]

    def _open_on(self, day: int, after: int, limit: int, now_ms: int) -> list[Transfer]:
        """The open transfers of one day, above `after`.

        Settled rows are deleted, and a partition's tombstones pile up below
        its oldest open row. Each shard remembers that low-water mark and
        reads from it, so the scanner does not wade through them. The mark
        never passes ids issued in the last ten minutes: a request drawn
        just before a scan may be recorded just after it.
        """
        shards = list(range(self.shards))
        bounds = [max(after + 1, self._low_water.get((day, shard), 0)) for shard in shards]
        per_shard = self._run_all(
            "SELECT request_id FROM {ks}.open_transfers WHERE day = ? AND shard = ? AND request_id >= ? LIMIT ?",
            [(day, shard, bound, limit) for shard, bound in zip(shards, bounds, strict=True)],
            lambda rows: [row.request_id for row in rows],
        )
        ids = sorted(request_id for ids in per_shard for request_id in ids)[:limit]
        records = self._get_many(ids)
        still_open = []
        for request_id in ids:
            transfer = records.get(request_id)
            if transfer is None:
                continue  # the record was never written; its creator died first
            if transfer.status.is_terminal:
                # The terminal update landed but our index delete did not.
                self._run(
                    "DELETE FROM {ks}.open_transfers WHERE day = ? AND shard = ? AND request_id = ?",
                    (day, self._shard(request_id), request_id),
                )
                continue
            still_open.append(transfer)
        ceiling = first_id_at(now_ms - _LOW_WATER_MARGIN_MS)
        open_ids = {t.request_id for t in still_open}
        for shard, seen in zip(shards, per_shard, strict=True):
            previous = self._low_water.get((day, shard), 0)
            if not seen or (after + 1 > previous and after != 0):
                continue  # this read started above the mark: it says nothing below
            open_here = [i for i in seen if i in open_ids]
            mark = min(open_here) if open_here else max(seen) + 1
            self._low_water[(day, shard)] = min(max(mark, previous), ceiling)
        return still_open

    def audit_trail(self, request_id: int) -> list[AuditEntry]:
        rows = self._run(
            "SELECT request_id, actor, from_status, to_status, reason, at_us FROM {ks}.transfer_audit"
            " WHERE request_id = ?",
            (request_id,),
        )
        return [
            AuditEntry(
                request_id=row.request_id,
                at=_from_micros(row.at_us),
                actor=row.actor,
                from_status=Status(row.from_status) if row.from_status else None,
                to_status=Status(row.to_status),
                reason=row.reason,
            )
            for row in rows
        ]

    def append_audit(self, entry: AuditEntry) -> None:
        self._audit(entry.request_id, entry.at, entry.actor, entry.from_status, entry.to_status, entry.reason)

    def ping(self) -> None:
        self._run("SELECT release_version FROM system.local")

    def close(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
            self._cluster = None
            self._session = None
            self._prepared.clear()


def random_keyspace(prefix: str = "it_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
