"""The status event stream: publish each event right after its write, and relay what that missed.

The store keeps every event in its outbox, in the same write as the status
it tells of (docs/events.md). `EventDispatcher` hears of each durable write
and publishes its events from a thread of its own, so a request never waits
for the events topic; then it flags them published. `EventRelay` (the
scheduler, every few seconds) publishes what is still unflagged after a
grace period: events whose process died between the write and the publish,
or whose publish failed or was dropped. Delivery is at least once; consumers
deduplicate by `StatusEvent.dedupe_key`, or exactly by event_id.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from app.domain.events import EventKind, StatusEvent
from app.domain.transfer import AuditActor, Transfer
from app.observability.metrics import EVENTS_DEFERRED, EVENTS_PUBLISHED, EVENTS_RELAY_BACKLOG
from app.ports.bus import ServiceBus
from app.ports.store import EventOutbox, OutboxEntry
from app.services.crash_points import crash_point

log = logging.getLogger(__name__)

# Events waiting for the dispatcher's thread; beyond this they are left to
# the relay rather than holding memory (or a request) hostage to a slow bus.
_QUEUE_LIMIT = 10_000
# Events one publish carries: they share the producer's requests.
_BATCH = 500


class EventDispatcher:
    """Publishes outbox entries as soon as their write is durable, off the caller's thread."""

    def __init__(self, outbox: EventOutbox, bus: ServiceBus, *, background: bool = True) -> None:
        self.outbox = outbox
        self.bus = bus
        # Synchronous when not in the background: for tests that want the event before the call returns.
        self.background = background
        self._queue: queue.Queue[OutboxEntry] = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self._thread_pid = 0
        self._lock = threading.Lock()

    def __call__(self, entries: Sequence[OutboxEntry]) -> None:
        """The store's outbox listener: called once a write holding these events is durable."""
        if not self.background:
            self.publish(entries)
            return
        self._ensure_thread()
        for entry in entries:
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                EVENTS_DEFERRED.labels(why="queue_full").inc()

    def _ensure_thread(self) -> None:
        # Started on first use, and again in a forked child (gunicorn's workers):
        # a thread does not survive a fork.
        with self._lock:
            if self._thread is not None and self._thread_pid == os.getpid():
                return
            if self._thread_pid != os.getpid():
                self._queue = queue.Queue(maxsize=_QUEUE_LIMIT)
            self._thread = threading.Thread(target=self._run, name="event-dispatcher", daemon=True)
            self._thread_pid = os.getpid()
            self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.publish(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def flush(self, timeout_seconds: float = 5.0) -> bool:
        """Wait (bounded) until what is queued was handled; True if it was.

        For a clean shutdown: events still queued when the process exits are
        not lost (the relay has them) but come only after the relay's margin.
        """
        deadline = time.monotonic() + timeout_seconds
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Publish, then flag; a failure leaves the events to the relay. Never raises."""
        if not entries:
            return
        try:
            crash_point("before_event_publish")
            self.bus.publish_events([entry.event for entry in entries])
        except Exception as exc:
            EVENTS_DEFERRED.labels(why="publish_failed").inc(len(entries))
            log.warning("publishing %d events failed, the relay will: %s", len(entries), exc)
            return
        EVENTS_PUBLISHED.labels(path="inline").inc(len(entries))
        try:
            self.outbox.mark_events_published(entries)
        except Exception as exc:
            # Published all the same: the relay may send them again, which consumers dedupe.
            log.warning("flagging %d events published failed: %s", len(entries), exc)


class EventRelay:
    """The scheduler's pass over the outbox: publish what is still unflagged, then flag it."""

    def __init__(
        self,
        outbox: EventOutbox,
        bus: ServiceBus,
        clock: Callable[[], datetime],
        grace: timedelta = timedelta(seconds=10),
        batch_size: int = 1000,
    ) -> None:
        self.outbox = outbox
        self.bus = bus
        self.clock = clock
        # Younger events are the dispatcher's: publishing them too would only double them.
        self.grace = grace
        self.batch_size = batch_size

    def run_once(self) -> int:
        """One pass; returns how many events it published. Raises what the store or the bus raised."""
        published = 0
        while True:
            entries = self.outbox.unpublished_events(self.batch_size, self.clock() - self.grace)
            # What this pass found (published or not): the backlog the inline publish left.
            EVENTS_RELAY_BACKLOG.set(published + len(entries))
            if not entries:
                return published
            self.bus.publish_events([entry.event for entry in entries])
            EVENTS_PUBLISHED.labels(path="relay").inc(len(entries))
            self.outbox.mark_events_published(entries)
            published += len(entries)
            log.info("relayed %d events from the outbox", len(entries))
            if len(entries) < self.batch_size:
                return published


def record_event(
    outbox: EventOutbox, kind: EventKind, transfer: Transfer, actor: AuditActor, reason: str, at: datetime
) -> None:
    """An event that changes no status (a warning, an operator's re-send): into the outbox, then out."""
    outbox.record_events([StatusEvent.about(kind, transfer, actor, reason, at)])
