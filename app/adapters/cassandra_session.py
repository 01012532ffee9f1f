"""One cassandra-driver session per process, prepared statements, and error mapping.

The Cluster is made on first use (after gunicorn forks). Every driver
failure surfaces as DependencyUnavailable("store").
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cassandra import ConsistencyLevel, DriverException
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement, _clean_column_name

from app.ports.errors import DependencyUnavailable

T = TypeVar("T")

# One CQL statement and its bound values.
Statement = tuple[str, tuple[Any, ...]]


@functools.lru_cache(maxsize=256)
def _row_type(columns: tuple[str, ...]) -> Any:
    # The driver's own column cleaning ("[applied]" becomes "applied"), so rows read the same.
    return collections.namedtuple("Row", [_clean_column_name(c) for c in columns], rename=True)


def cached_named_tuple_factory(colnames: list[str], rows: list[tuple[Any, ...]]) -> list[Any]:
    """The driver's named_tuple_factory without making a new class per result (a hot spot under load)."""
    row_type = _row_type(tuple(colnames))
    return [row_type(*row) for row in rows]


@dataclass
class _ConnectAttempt:
    """One run of `cluster.connect()`, which any number of callers may wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    session: Session | None = None
    error: BaseException | None = None


class CassandraSession:
    def __init__(
        self,
        hosts: list[str],
        port: int,
        keyspace: str,
        *,
        consistency: str = "LOCAL_QUORUM",
        serial_consistency: str = "LOCAL_SERIAL",
        local_dc: str | None = None,
        timeout_seconds: float = 5.0,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.hosts, self.port, self.keyspace = hosts, port, keyspace
        # (username, password), or None: the driver then authenticates only if the server asks.
        self._credentials = credentials
        self.consistency = ConsistencyLevel.name_to_value[consistency]
        self.serial_consistency = ConsistencyLevel.name_to_value[serial_consistency]
        self.local_dc = local_dc
        self.timeout_seconds = timeout_seconds
        # v4, not v5: v5's checksummed framing is computed in Python by the
        # driver (about 30% of the client's CPU per request, measured), and TLS
        # already protects a production link's integrity.
        self.protocol_version = 4
        # Guards the fields below; never held while connecting.
        self._lock = threading.Lock()
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._attempt: _ConnectAttempt | None = None
        # Bumped by close(): an attempt still running then must not install its session.
        self._generation = 0
        self._prepared: dict[str, PreparedStatement] = {}

    def connect(self) -> Session:
        """The session, connecting on first use; every caller waits at most `timeout_seconds`.

        One connection attempt at a time runs on its own thread and every
        caller waits for that same attempt with its own deadline, so callers
        never queue behind one another (against a node that accepts but never
        answers, 4 callers took 2, 4, 6 and 8 s when each connected in turn
        under a lock). An attempt that outlives its callers still installs its
        session for the next one, or is dropped if it failed.
        """
        session = self._session
        if session is not None:
            return session
        with self._lock:
            if self._session is not None:
                return self._session
            attempt = self._attempt
            if attempt is None:
                attempt = self._attempt = _ConnectAttempt()
                threading.Thread(
                    target=self._run_attempt, args=(attempt, self._generation), name="cassandra-connect", daemon=True
                ).start()
        if not attempt.done.wait(self.timeout_seconds):
            raise DependencyUnavailable("store", f"no Cassandra connection within {self.timeout_seconds}s")
        error = attempt.error
        if isinstance(error, DependencyUnavailable):
            message = str(error).removeprefix(f"{error.backend} unavailable: ")
            raise DependencyUnavailable(error.backend, message) from error
        if error is not None:
            # A fresh exception per caller: one instance raised in several threads would mix their tracebacks.
            raise DependencyUnavailable("store", f"{type(error).__name__}: {error}") from error
        assert attempt.session is not None
        return attempt.session

    def _run_attempt(self, attempt: _ConnectAttempt, generation: int) -> None:
        cluster: Cluster | None = None
        try:
            cluster = self._new_cluster()
            attempt.session = cluster.connect()
        except BaseException as exc:  # handed to every caller waiting on this attempt
            attempt.error = exc
            if cluster is not None:
                cluster.shutdown()
        with self._lock:
            if self._attempt is attempt:
                self._attempt = None
            installed = attempt.error is None and generation == self._generation
            if installed:
                self._cluster, self._session = cluster, attempt.session
        if attempt.error is None and not installed and cluster is not None:
            cluster.shutdown()  # closed while connecting: nobody may use it
            attempt.error = DependencyUnavailable("store", "the Cassandra session was closed")
        attempt.done.set()

    def _new_cluster(self) -> Cluster:
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_dc)),
            consistency_level=self.consistency,
            serial_consistency_level=self.serial_consistency,
            request_timeout=self.timeout_seconds,
            row_factory=cached_named_tuple_factory,
        )
        auth = PlainTextAuthProvider(*self._credentials) if self._credentials else None
        return Cluster(
            self.hosts,
            port=self.port,
            protocol_version=self.protocol_version,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            auth_provider=auth,
            connect_timeout=self.timeout_seconds,
            control_connection_timeout=self.timeout_seconds,
        )

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

    def statement(self, cql: str) -> PreparedStatement:
        prepared = self._prepared.get(cql)
        if prepared is None:
            prepared = self.connect().prepare(cql.format(ks=self.keyspace))
            self._prepared[cql] = prepared
        return prepared

    def run(self, cql: str, params: tuple[Any, ...] = ()) -> Any:
        with self.guard():
            return self.connect().execute(self.statement(cql), params)

    def run_each(self, cql: str, param_sets: Sequence[tuple[Any, ...]], each: Callable[[Any], T]) -> list[T]:
        """One statement with many parameter sets, all in flight at once: one round trip."""
        with self.guard():
            session = self.connect()
            statement = self.statement(cql)
            futures = [session.execute_async(statement, params) for params in param_sets]
            return [each(future.result()) for future in futures]

    def run_together(self, statements: Sequence[Statement]) -> None:
        """Independent writes, all in flight at once: one round trip."""
        self.run_each_as_one([[statement] for statement in statements])

    def run_each_as_one(self, groups: Sequence[Sequence[Statement]]) -> None:
        """Each group as one request (see run_as_one), all groups in flight at once."""
        self.start_each_as_one(groups)()

    def start_each_as_one(self, groups: Sequence[Sequence[Statement]]) -> Callable[[], None]:
        """Send each group as one request, all at once; returns a function that waits for them."""
        with self.guard():
            session = self.connect()
            futures = [session.execute_async(self._as_one(group)) for group in groups if group]

        def wait() -> None:
            with self.guard():
                for future in futures:
                    future.result()

        return wait

    def _as_one(self, statements: Sequence[Statement]) -> Any:
        if len(statements) == 1:
            cql, params = statements[0]
            return self.statement(cql).bind(params)
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for cql, params in statements:
            batch.add(self.statement(cql), params)
        return batch

    def run_as_one(self, statements: Sequence[Statement]) -> None:
        """Independent writes in one request: an unlogged batch, not atomic, one round trip.

        Cheaper for Cassandra than as many requests (the per-request work is
        much of a small write's cost). Only for a few small mutations: a big
        multi-partition batch loads its coordinator.
        """
        with self.guard():
            self.connect().execute(self._as_one(statements))

    def run_logged(self, statements: Sequence[Statement]) -> None:
        """Writes to many partitions as one LOGGED batch: all of them land, or (eventually) none.

        Cassandra's batchlog replays a batch whose coordinator accepted it, so
        a client that dies mid-request leaves all or nothing. Dearer than an
        unlogged batch; only for writes that must not be split (a transfer batch).
        """
        with self.guard():
            batch = BatchStatement(batch_type=BatchType.LOGGED)
            for cql, params in statements:
                batch.add(self.statement(cql), params)
            self.connect().execute(batch)

    def close(self) -> None:
        with self._lock:
            cluster, self._cluster, self._session = self._cluster, None, None
            self._attempt = None
            self._generation += 1
            self._prepared.clear()
        if cluster is not None:
            cluster.shutdown()
