"""Shared plumbing for the embedded SQLite adapters."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.ports.errors import DependencyUnavailable

_OPEN_TIMEOUT_SECONDS = 30


class SqliteDatabase:
    """One connection guarded by a lock; writes run in BEGIN IMMEDIATE transactions.

    The embedded backends are for one process; the lock serialises its threads
    and SQLite's own file locking keeps a second process (a CLI command) safe.
    """

    def __init__(self, path: str, backend: str, schema: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=_OPEN_TIMEOUT_SECONDS)
        self._conn.row_factory = sqlite3.Row
        self._switch_to_wal()
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(schema)

    def _switch_to_wal(self) -> None:
        # While another connection is switching a fresh file to WAL, SQLite can
        # answer "database is locked" at once, without its busy timeout: retry
        # for as long as that timeout would have waited.
        deadline = time.monotonic() + _OPEN_TIMEOUT_SECONDS
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise DependencyUnavailable(self.backend, str(exc)) from exc
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()
