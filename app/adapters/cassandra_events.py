"""The event outbox on Cassandra: rows beside every status write, a relay that reads closed buckets.

The model (docs/events.md): an event's row is written in the same request
as the status it tells of, into the bucket of the writer's clock and a hash
shard. The service publishes it at once and flags the row published (an
update, never a delete). The relay reads a bucket only when it is closed,
`margin` after its end, publishes what is still unflagged, and moves its
position past buckets with nothing left. A writer whose row was acknowledged
later than `margin / 2` after its bucket's end (a pause, a slow write) files
it again in the bucket of now, as the open set's writers do: a bucket the
relay has closed gets no rows the relay did not see.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from app.adapters.cassandra_session import CassandraSession, Statement
from app.domain.events import StatusEvent
from app.ports.store import OutboxEntry

# Fixed for the table's life: writers and the relay find rows by these numbers.
EVENT_BUCKET_SECONDS = 10
EVENT_SHARDS = 8
_FLAGS_PER_REQUEST = 64
# The table's TTL (schema/007_event_outbox.cql): a relay further behind than
# this has nothing left to read there.
_OUTBOX_TTL_SECONDS = 172_800
# Buckets one relay call may read: bounds a call after a long stop (an hour).
_MAX_BUCKETS_PER_CALL = 360
_POSITION = "relay"


def bucket_of(moment: datetime) -> int:
    seconds = int(moment.timestamp())
    return seconds - seconds % EVENT_BUCKET_SECONDS


def shard_of(request_id: int) -> int:
    # A hash, not `id % shards`: a Snowflake's low bits restart every millisecond.
    digest = hashlib.blake2b(request_id.to_bytes(8, "big"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % EVENT_SHARDS


def _slot(bucket: int, shard: int) -> str:
    return f"{bucket}:{shard}"


def _parse_slot(slot: str) -> tuple[int, int]:
    bucket, shard = slot.split(":")
    return int(bucket), int(shard)


class CassandraEventOutbox:
    def __init__(self, db: CassandraSession, clock: Callable[[], datetime], margin_seconds: int = 60) -> None:
        if margin_seconds < 2:
            raise ValueError("events_margin_seconds must be at least 2")
        self.db = db
        self.clock = clock
        self.margin = timedelta(seconds=margin_seconds)

    # -- writers ---------------------------------------------------------------

    def filing(self, events: Sequence[StatusEvent]) -> tuple[list[Statement], list[OutboxEntry]]:
        """The statements that put `events` in the bucket of now, to ride the status's own request."""
        bucket = bucket_of(self.clock())
        statements: list[Statement] = []
        entries: list[OutboxEntry] = []
        for event in events:
            shard = shard_of(event.request_id)
            statements.append(
                (
                    "INSERT INTO {ks}.event_outbox (bucket, shard, event_id, payload) VALUES (?, ?, ?, ?)",
                    (bucket, shard, uuid.UUID(event.event_id), json.dumps(event.to_message())),
                )
            )
            entries.append(OutboxEntry(event, _slot(bucket, shard)))
        return statements, entries

    def confirm_filed(self, entries: Sequence[OutboxEntry]) -> list[OutboxEntry]:
        """After the write was acknowledged: file again what landed too late for its bucket. Returns where they are."""
        current = list(entries)
        while current:
            deadline = max(_parse_slot(e.slot)[0] for e in current) + EVENT_BUCKET_SECONDS
            late = self.clock().timestamp() > deadline + self.margin.total_seconds() / 2
            if not late:
                return current
            statements, current = self.filing([e.event for e in current])
            self.db.run_together(statements)
        return current

    def file_again(self, events: Sequence[StatusEvent]) -> list[OutboxEntry]:
        """File `events` on their own, in the bucket of now (not their first write's), and confirm them.

        For a write reported failed: the report can come after its bucket
        closed and the relay moved past it, and a row written there again
        would be read by nobody.
        """
        statements, entries = self.filing(events)
        self.db.run_together(statements)
        return self.confirm_filed(entries)

    def mark_published(self, entries: Sequence[OutboxEntry]) -> None:
        # One request per partition (bucket, shard), not per event: a single-partition
        # batch is one mutation for Cassandra, and a transfer's events share a shard.
        by_partition: dict[str, list[Statement]] = {}
        for entry in entries:
            bucket, shard = _parse_slot(entry.slot)
            by_partition.setdefault(entry.slot, []).append(
                (
                    "UPDATE {ks}.event_outbox SET published = true WHERE bucket = ? AND shard = ? AND event_id = ?",
                    (bucket, shard, uuid.UUID(entry.event.event_id)),
                )
            )
        # At most _FLAGS_PER_REQUEST a request: far below Cassandra's batch size thresholds.
        groups = [
            statements[i : i + _FLAGS_PER_REQUEST]
            for statements in by_partition.values()
            for i in range(0, len(statements), _FLAGS_PER_REQUEST)
        ]
        if groups:
            self.db.run_each_as_one(groups)

    # -- the relay ------------------------------------------------------------------

    def initialise(self) -> None:
        """Start the relay at the bucket of now, unless it has a position already (`db init` again)."""
        self.db.run(
            "INSERT INTO {ks}.event_outbox_position (name, first_open_bucket) VALUES (?, ?) IF NOT EXISTS",
            (_POSITION, bucket_of(self.clock())),
        )

    def _position(self, now: datetime) -> int:
        row = self.db.run("SELECT first_open_bucket FROM {ks}.event_outbox_position WHERE name = ?", (_POSITION,)).one()
        floor = bucket_of(now - timedelta(seconds=_OUTBOX_TTL_SECONDS))
        if row is None or row.first_open_bucket is None:
            self.initialise()
            return self._position(now)
        return max(int(row.first_open_bucket), floor)

    def _move_position(self, bucket: int) -> None:
        # The bucket as write timestamp: the highest position ever written wins.
        self.db.run(
            "INSERT INTO {ks}.event_outbox_position (name, first_open_bucket) VALUES (?, ?) USING TIMESTAMP ?",
            (_POSITION, bucket, bucket * 1_000_000),
        )

    def unpublished(self, limit: int, written_before: datetime) -> list[OutboxEntry]:
        now = self.clock()
        closed_before = min(now - self.margin, written_before.astimezone(UTC)).timestamp()
        start = position = self._position(now)
        found: list[OutboxEntry] = []
        bucket = position
        read = 0
        while bucket + EVENT_BUCKET_SECONDS <= closed_before and read < _MAX_BUCKETS_PER_CALL and len(found) < limit:
            rows = self.db.run_each(
                "SELECT shard, event_id, payload, published FROM {ks}.event_outbox WHERE bucket = ? AND shard = ?",
                [(bucket, shard) for shard in range(EVENT_SHARDS)],
                lambda result: list(result),
            )
            waiting = [row for shard_rows in rows for row in shard_rows if not row.published]
            found.extend(self._entry(bucket, row) for row in waiting)
            if not found:
                position = bucket + EVENT_BUCKET_SECONDS  # nothing left here or before
            bucket += EVENT_BUCKET_SECONDS
            read += 1
        if position != start:
            self._move_position(position)
        # One transfer's events in the order they happened (a bucket's rows come by event id).
        found.sort(key=lambda entry: (entry.event.at, entry.event.to_status.rank))
        return found[:limit]

    @staticmethod
    def _entry(bucket: int, row: Any) -> OutboxEntry:
        return OutboxEntry(StatusEvent.from_message(json.loads(row.payload)), _slot(bucket, row.shard))
