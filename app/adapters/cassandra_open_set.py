"""The open set on Cassandra: transfers filed by time window and hash shard.

docs/open-set.md has the model and its invariant; in short: a transfer is
filed in the window it was written in, a writer that took too long files it
again before it may lock, and only the scanner closes windows, after filing
what is still open in the window of now.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from app.adapters.cassandra_session import CassandraSession, Statement
from app.ports.errors import DependencyUnavailable

log = logging.getLogger(__name__)

_DAY_SECONDS = 86_400
_POSITION = "scanner"
# Closing at most this many windows per pass keeps a pass bounded after a
# long stop of the scanner; the next passes go on from where it stopped.
_MAX_WINDOWS_CLOSED_PER_PASS = 500


@dataclass(frozen=True)
class OpenSetLayout:
    """Fixed when the open set is created: changing any of them later could hide filed rows.

    Every process reads them from the store, so a process configured
    differently (a rolling change, say) still files and closes by the same rules.
    """

    window_seconds: int
    shards: int
    margin_seconds: int

    def __post_init__(self) -> None:
        if self.window_seconds < 1 or self.shards < 1:
            raise ValueError("the open set's window and shard count must be positive")
        if self.margin_seconds < 2:
            raise ValueError("the open set's margin must be at least 2 seconds")


@dataclass(frozen=True)
class Location:
    window_start: int
    shard: int


@dataclass(frozen=True)
class OpenIds:
    ids: list[int]
    next_after: int | None
    where: dict[int, list[Location]]


def epoch_seconds(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp())


class CassandraOpenSet:
    def __init__(self, db: CassandraSession, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self._layout: OpenSetLayout | None = None
        self._registered: set[int] = set()
        self._registered_lock = threading.Lock()

    # -- layout and position ------------------------------------------------

    def initialise(self, layout: OpenSetLayout) -> OpenSetLayout:
        """Create the position row if there is none (`db init`); an existing one is kept as it is."""
        row = self.db.run(
            "SELECT window_seconds, shards, margin_seconds FROM {ks}.open_set_position WHERE name = ?", (_POSITION,)
        ).one()
        if row is not None:
            return OpenSetLayout(row.window_seconds, row.shards, row.margin_seconds)
        first = self._window_of(epoch_seconds(self.clock()), layout.window_seconds) - layout.window_seconds
        self.db.run(
            "INSERT INTO {ks}.open_set_position (name, first_open_window, window_seconds, shards, margin_seconds)"
            " VALUES (?, ?, ?, ?, ?)",
            (_POSITION, first, layout.window_seconds, layout.shards, layout.margin_seconds),
        )
        return layout

    def layout(self) -> OpenSetLayout:
        if self._layout is None:
            row = self.db.run(
                "SELECT window_seconds, shards, margin_seconds FROM {ks}.open_set_position WHERE name = ?",
                (_POSITION,),
            ).one()
            if row is None:
                raise DependencyUnavailable("store", "the open set is not initialised: run `flask db init`")
            self._layout = OpenSetLayout(row.window_seconds, row.shards, row.margin_seconds)
        return self._layout

    def position(self) -> int:
        row = self.db.run("SELECT first_open_window FROM {ks}.open_set_position WHERE name = ?", (_POSITION,)).one()
        if row is None:
            raise DependencyUnavailable("store", "the open set is not initialised: run `flask db init`")
        return int(row.first_open_window)

    @staticmethod
    def _window_of(seconds: int, window_seconds: int) -> int:
        return seconds - seconds % window_seconds

    def window_of(self, moment: datetime) -> int:
        return self._window_of(epoch_seconds(moment), self.layout().window_seconds)

    def shard_of(self, request_id: int) -> int:
        # A hash, not `id % shards`: a Snowflake's low bits restart every millisecond.
        digest = hashlib.blake2b(request_id.to_bytes(8, "big"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.layout().shards

    # -- filing ---------------------------------------------------------------

    def filing(self, request_id: int, window_start: int) -> list[Statement]:
        """The writes that file a transfer in a window (and the window in the directory, once per process)."""
        statements: list[Statement] = [
            (
                "INSERT INTO {ks}.open_set (window_start, shard, request_id) VALUES (?, ?, ?)",
                (window_start, self.shard_of(request_id), request_id),
            )
        ]
        if window_start not in self._registered:
            statements.append(
                (
                    "INSERT INTO {ks}.open_set_windows (day, window_start) VALUES (?, ?)",
                    (window_start // _DAY_SECONDS, window_start),
                )
            )
        return statements

    def mark_registered(self, window_start: int) -> None:
        with self._registered_lock:
            if len(self._registered) > 10_000:
                self._registered.clear()
            self._registered.add(window_start)

    def confirm_filed(self, request_id: int, window_start: int) -> None:
        """Call once the filing writes are acknowledged: files again while they came too late."""
        layout = self.layout()
        window_seconds = layout.window_seconds
        deadline_slack = layout.margin_seconds // 2
        while True:
            self.mark_registered(window_start)
            now = epoch_seconds(self.clock())
            if now <= window_start + window_seconds + deadline_slack:
                return
            # Too late for that window: the scanner may be closing it. File
            # again in the window of now, and check that write in turn.
            log.warning("transfer %s filed late in window %s; filing it again", request_id, window_start)
            window_start = self._window_of(now, window_seconds)
            self.db.run_together(self.filing(request_id, window_start))

    def removal(self, request_id: int, window_start: int) -> Statement:
        return (
            "DELETE FROM {ks}.open_set WHERE window_start = ? AND shard = ? AND request_id = ?",
            (window_start, self.shard_of(request_id), request_id),
        )

    def remove(self, request_id: int, locations: Iterable[Location]) -> None:
        self.db.run_together([self.removal(request_id, location.window_start) for location in locations])

    # -- reading ----------------------------------------------------------------

    def _windows_between(self, first: int, last: int) -> list[int]:
        """Windows in [first, last] that had something filed, from the directory."""
        days = list(range(first // _DAY_SECONDS, last // _DAY_SECONDS + 1))
        per_day = self.db.run_each(
            "SELECT window_start FROM {ks}.open_set_windows WHERE day = ? AND window_start >= ? AND window_start <= ?",
            [(day, first, last) for day in days],
            lambda rows: [row.window_start for row in rows],
        )
        return sorted(window for windows in per_day for window in windows)

    def read(self, limit: int, after: int) -> OpenIds:
        """The lowest `limit` filed ids above `after`, in every window not yet closed."""
        layout = self.layout()
        now = epoch_seconds(self.clock())
        # One window ahead: a writer's clock may run slightly ahead of ours.
        windows = self._windows_between(
            self.position(), self._window_of(now, layout.window_seconds) + layout.window_seconds
        )
        partitions = [Location(window, shard) for window in windows for shard in range(layout.shards)]
        found = self.db.run_each(
            "SELECT request_id FROM {ks}.open_set WHERE window_start = ? AND shard = ? AND request_id > ? LIMIT ?",
            [(p.window_start, p.shard, after, limit) for p in partitions],
            lambda rows: [row.request_id for row in rows],
        )
        where: dict[int, list[Location]] = {}
        maybe_more = False
        for partition, ids in zip(partitions, found, strict=True):
            maybe_more = maybe_more or len(ids) >= limit
            for request_id in ids:
                where.setdefault(request_id, []).append(partition)
        unique = sorted(where)
        cut = unique[:limit]
        more = cut and (maybe_more or len(unique) > limit)
        return OpenIds(ids=cut, next_after=cut[-1] if more else None, where={i: where[i] for i in cut})

    # -- closing (the scanner only) ----------------------------------------------

    def close_due_windows(self, still_open: Callable[[list[int]], list[int]]) -> int:
        """Close every window old enough: file what is still open in the window of now, then move on.

        `still_open` takes ids and returns those whose transfer is recorded
        and not terminal. Returns how many transfers were filed again.
        """
        layout = self.layout()
        now = epoch_seconds(self.clock())
        position = self.position()
        last_closable = self._window_of(now - layout.margin_seconds, layout.window_seconds) - layout.window_seconds
        if last_closable < position:
            return 0
        windows = self._windows_between(position, last_closable)
        new_position = last_closable + layout.window_seconds
        if len(windows) > _MAX_WINDOWS_CLOSED_PER_PASS:
            windows = windows[:_MAX_WINDOWS_CLOSED_PER_PASS]
            new_position = windows[-1] + layout.window_seconds
        refiled = 0
        target = self._window_of(now, layout.window_seconds)
        # Like a writer, the scanner's filing must be acknowledged in time for
        # the window it files into, or another scanner may close that first.
        deadline = target + layout.window_seconds + layout.margin_seconds // 2
        for window in windows:
            per_shard = self.db.run_each(
                "SELECT request_id FROM {ks}.open_set WHERE window_start = ? AND shard = ?",
                [(window, shard) for shard in range(layout.shards)],
                lambda rows: [row.request_id for row in rows],
            )
            ids = sorted({request_id for ids in per_shard for request_id in ids})
            open_ids = still_open(ids) if ids else []
            statements = [statement for request_id in open_ids for statement in self.filing(request_id, target)]
            if statements:
                self.db.run_together(statements)
                self.mark_registered(target)
            if epoch_seconds(self.clock()) > deadline:
                # Too slow: leave this window (and those after it) open; the
                # next pass closes them again, filing into a newer window.
                log.warning("closing open-set window %s took too long; it stays open for the next pass", window)
                new_position = window
                break
            refiled += len(open_ids)
        if new_position <= position:
            return refiled
        # Only now, with everything open filed again in time, may the position pass these windows.
        self.db.run("UPDATE {ks}.open_set_position SET first_open_window = ? WHERE name = ?", (new_position, _POSITION))
        if refiled:
            log.info("closed open-set windows up to %s; %d open transfers filed again", new_position, refiled)
        return refiled
