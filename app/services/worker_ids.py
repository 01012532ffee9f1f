"""Request ids that are unique by construction: a Snowflake generator on a leased worker id.

The process leases a worker id (WorkerIdLeases) on first use, renews it on a
daemon thread, and issues ids only while

* its lease is valid by the local monotonic clock, counted from when the last
  successful renewal was *sent*, less a safety margin (so a stalled process
  stops before anyone may take its id over), and
* the id's millisecond is at or above the lease's floor (the previous
  holder's high-water mark) and below its ceiling (the mark this holder
  wrote), so no two holders of one worker id ever overlap in time, whatever
  their clocks do.

Otherwise `next_id()` raises DependencyUnavailable("store"), like any other
store outage; it resumes on the next successful renewal, or re-acquires
(maybe another worker id) if the lease was lost.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from app.domain.ids import MAX_WORKER_ID, IdWindowClosed, SnowflakeGenerator
from app.domain.worker_leases import Lease, LeaseTerms
from app.ports.errors import DependencyUnavailable
from app.ports.worker_ids import WorkerIdLeases

log = logging.getLogger(__name__)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class LeaseTiming:
    lease_seconds: float = 30.0
    renew_every_seconds: float = 10.0
    # Issuing stops this long before the lease runs out by our own clock: covers
    # a pause between a renewal's send and our use of its answer.
    safety_margin_seconds: float = 5.0
    max_clock_skew_seconds: float = 5.0
    retry_seconds: float = 1.0  # after a failed renewal or acquisition

    def __post_init__(self) -> None:
        if not 0 <= self.safety_margin_seconds < self.lease_seconds:
            raise ValueError("the safety margin must be shorter than the lease")
        if not 0 < self.renew_every_seconds < self.lease_seconds - self.safety_margin_seconds:
            raise ValueError("renewals must come well inside the lease, before the safety margin")
        if self.retry_seconds <= 0 or self.max_clock_skew_seconds < 0:
            raise ValueError("retry must be positive and the skew allowance non-negative")

    @property
    def terms(self) -> LeaseTerms:
        return LeaseTerms(
            lease_ms=int(self.lease_seconds * 1000), max_clock_skew_ms=int(self.max_clock_skew_seconds * 1000)
        )

    @property
    def valid_for_seconds(self) -> float:
        return self.lease_seconds - self.safety_margin_seconds


class LeasedIdGenerator:
    """`next_id()` like SnowflakeGenerator, on a worker id this process holds a lease on."""

    def __init__(
        self,
        leases: WorkerIdLeases,
        timing: LeaseTiming | None = None,
        *,
        preferred_worker_id: int | None = None,
        wall_ms: Callable[[], int] = _wall_ms,
        monotonic: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        if preferred_worker_id is not None and not 0 <= preferred_worker_id <= MAX_WORKER_ID:
            raise ValueError(f"worker id must be in 0..{MAX_WORKER_ID}")
        self._leases = leases
        self._timing = timing or LeaseTiming()
        self._terms = self._timing.terms
        self._preferred = preferred_worker_id
        self._wall_ms = wall_ms
        self._monotonic = monotonic
        self._background = background
        self._closed = False
        self._high_ms = -1  # the last ms any of this process's generators used
        self._reset()

    def _reset(self) -> None:
        # Also the state of a freshly forked child: the parent's lease, thread
        # and (possibly held) locks are not the child's to use.
        self._pid = os.getpid()
        self._lock = threading.Lock()  # guards the fields below; never held across I/O
        self._io_lock = threading.Lock()  # one store call at a time from this generator
        self._lease: Lease | None = None
        self._generator: SnowflakeGenerator | None = None
        self._valid_until = float("-inf")
        self._renewed_at = float("-inf")  # when the last successful renewal (or acquisition) was sent
        self._last_attempt = float("-inf")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- issuing ------------------------------------------------------------

    @property
    def worker_id(self) -> int | None:
        lease = self._lease
        return None if lease is None else lease.worker_id

    def next_id(self) -> int:
        return self.next_block(1)

    def next_block(self, count: int) -> int:
        self._ensure_started()
        if self._lease is None:
            self._acquire_if_due()
        with self._lock:
            if self._closed:
                raise DependencyUnavailable("store", "the id generator is closed")
            if self._lease is None or self._generator is None:
                raise DependencyUnavailable("store", "no lease on a worker id yet")
            if self._monotonic() >= self._valid_until:
                self._wake.set()
                raise DependencyUnavailable("store", f"lease on worker id {self._lease.worker_id} lapsed")
            try:
                return self._generator.next_block(count)
            except IdWindowClosed as exc:
                # The clock ran past the mark we wrote: a renewal raises it.
                self._wake.set()
                raise DependencyUnavailable("store", f"worker id {self._lease.worker_id}: {exc}") from exc

    # -- the lease ------------------------------------------------------------

    def renew_now(self) -> bool:
        """One round of upkeep: renew the lease, or (re-)acquire one. True if we hold a valid lease after."""
        with self._io_lock:
            lease = self._lease
            if self._closed:
                return False
            if lease is None:
                return self._acquire_logged()
            sent = self._monotonic()
            try:
                renewed = self._leases.renew(lease, self._wall_ms(), self._terms)
            except DependencyUnavailable as exc:
                log.warning("renewing the lease on worker id %d failed: %s", lease.worker_id, exc)
                return False
            with self._lock:
                if renewed is not None:
                    self._lease = renewed
                    self._renewed_at = sent
                    self._valid_until = sent + self._timing.valid_for_seconds
                    assert self._generator is not None
                    self._generator.raise_ceiling(renewed.issued_until_ms)
                    return True
                log.error("lost the lease on worker id %d: taking another", lease.worker_id)
                self._drop_lease()
            return self._acquire_logged()

    def _acquire_if_due(self) -> None:
        with self._io_lock:
            if self._lease is not None or self._closed:
                return
            # A caller after a failed attempt gets the failure, not another wait on the store.
            if self._monotonic() - self._last_attempt < self._timing.retry_seconds:
                return
            self._acquire()

    def _acquire_logged(self) -> bool:
        try:
            self._acquire()
        except DependencyUnavailable as exc:
            log.warning("acquiring a worker id failed: %s", exc)
            return False
        return True

    def _acquire(self) -> None:
        """Called with _io_lock held."""
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        sent = self._last_attempt = self._monotonic()
        lease = self._leases.acquire(holder, self._wall_ms(), self._terms, self._preferred)
        if lease is None:
            raise DependencyUnavailable("store", "every worker id is leased")
        if self._preferred is not None and lease.worker_id != self._preferred:
            log.warning("worker id %d is held by another process; leased %d", self._preferred, lease.worker_id)
        with self._lock:
            # Strictly above anything this process issued before, so its ids keep increasing.
            lease = dataclasses.replace(lease, floor_ms=max(lease.floor_ms, self._high_ms + 1))
            self._lease = lease
            self._generator = SnowflakeGenerator(
                lease.worker_id, self._wall_ms, floor_ms=lease.floor_ms, ceiling_ms=lease.issued_until_ms
            )
            self._renewed_at = sent
            self._valid_until = sent + self._timing.valid_for_seconds
        log.info("leased worker id %d (ids from ms %d)", lease.worker_id, lease.floor_ms)

    def _drop_lease(self) -> None:
        """Called with _lock held."""
        if self._generator is not None:
            self._high_ms = max(self._high_ms, self._generator.last_ms)
        self._lease = None
        self._generator = None
        self._valid_until = float("-inf")

    # -- the renewal thread ---------------------------------------------------

    def _ensure_started(self) -> None:
        if self._pid != os.getpid():
            self._reset()
        if not self._background or self._thread is not None or self._closed:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="worker-id-lease", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # next_id() wakes us when the lease lapsed or the clock reached the
            # ceiling: renew at once rather than at the next scheduled time.
            forced = self._wake.is_set()
            self._wake.clear()
            due = self._monotonic() >= self._renewed_at + self._timing.renew_every_seconds
            if forced or due or self._lease is None:
                try:
                    held = self.renew_now()
                except Exception:
                    log.exception("worker id lease upkeep failed")
                    held = False
                if not held:
                    # Paced, however often requests wake us: an outage is not a reason to hammer the store.
                    self._stop.wait(self._timing.retry_seconds)
                    continue
            self._wake.wait(max(0.01, self._renewed_at + self._timing.renew_every_seconds - self._monotonic()))

    def close(self) -> None:
        """Stop renewing and free the worker id for the next process."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._timing.lease_seconds)
        with self._io_lock, self._lock:
            lease = self._lease
            self._drop_lease()
        try:
            # Not from a forked child: the parent's lease is the parent's to free.
            if lease is not None and self._pid == os.getpid():
                self._leases.release(lease)
        except Exception:
            # Nothing is lost: the lease simply runs out.
            log.warning("releasing worker id %d failed", lease.worker_id if lease else -1, exc_info=True)
        finally:
            self._leases.close()
