"""Opening one fresh SQLite file from many threads at once: every opener gets a database.

Switching a file to WAL can answer "database is locked" without waiting on
SQLite's busy timeout, when another connection is switching it too (seen as a
flaky worker-id lease contract test under `make test`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.adapters.sqlite_util import SqliteDatabase

_SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY);"


def test_many_threads_open_one_fresh_file_at_once(tmp_path: Path) -> None:
    for attempt in range(100):
        path = str(tmp_path / f"fresh-{attempt}.db")
        with ThreadPoolExecutor(16) as pool:
            databases = list(pool.map(SqliteDatabase, [path] * 16, ["store"] * 16, [_SCHEMA] * 16))
        for database in databases:
            with database.transaction() as conn:
                conn.execute("INSERT OR IGNORE INTO t (id) VALUES (1)")
            database.close()
