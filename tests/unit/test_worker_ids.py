"""LeasedIdGenerator on a fake port and a fake clock: ids only while the lease is good."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.bootstrap import build
from app.config import Settings
from app.domain.ids import timestamp_ms_of
from app.domain.worker_leases import FREE, Lease, LeaseTerms
from app.ports.errors import DependencyUnavailable
from app.services.worker_ids import LeasedIdGenerator, LeaseTiming
from tests.support.fake_worker_ids import FakeWorkerIdLeases

T0 = 1_800_000_000_000
TIMING = LeaseTiming(lease_seconds=30, renew_every_seconds=10, safety_margin_seconds=5, max_clock_skew_seconds=5)


class Clock:
    """One process's clocks: a wall clock that may step, and a monotonic one that never does."""

    def __init__(self, wall_ms: int = T0) -> None:
        self.wall = wall_ms
        self.mono = 1000.0

    def wall_ms(self) -> int:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += int(seconds * 1000)


def generator(leases: FakeWorkerIdLeases, clock: Clock, preferred: int | None = None) -> LeasedIdGenerator:
    return LeasedIdGenerator(
        leases,
        TIMING,
        preferred_worker_id=preferred,
        wall_ms=clock.wall_ms,
        monotonic=clock.monotonic,
        background=False,
    )


def draw(ids: LeasedIdGenerator, count: int) -> list[int]:
    return [ids.next_id() for _ in range(count)]


def test_ids_stop_when_renewal_lapses_and_resume_after_a_renewal() -> None:
    leases, clock = FakeWorkerIdLeases(), Clock()
    ids = generator(leases, clock)
    issued = draw(ids, 3)
    leases.down = True
    clock.advance(10)
    assert not ids.renew_now()
    clock.advance(14.9)  # 24.9 s after the acquisition was sent: inside lease - margin
    issued += draw(ids, 1)
    clock.advance(0.1)
    with pytest.raises(DependencyUnavailable) as refused:
        ids.next_id()
    assert refused.value.backend == "store"
    leases.down = False
    assert ids.renew_now()
    issued += draw(ids, 3)
    assert issued == sorted(issued) and len(set(issued)) == len(issued)


def test_validity_counts_from_when_the_renewal_was_sent() -> None:
    leases, clock = FakeWorkerIdLeases(), Clock()
    ids = generator(leases, clock)
    ids.next_id()
    clock.advance(10)
    real_renew = leases.renew

    def slow_renew(lease: Lease, now_ms: int, terms: LeaseTerms) -> Lease | None:
        clock.advance(8)  # the answer takes 8 s to come back
        return real_renew(lease, now_ms, terms)

    leases.renew = slow_renew  # type: ignore[method-assign]
    assert ids.renew_now()  # sent at 10 s, answered at 18 s
    clock.advance(24.9 - 8)  # 34.9 s: 24.9 s after the send
    ids.next_id()
    clock.advance(0.1)
    with pytest.raises(DependencyUnavailable):
        ids.next_id()


def test_a_lost_lease_is_replaced_and_ids_keep_increasing() -> None:
    leases, clock = FakeWorkerIdLeases(), Clock()
    ids = generator(leases, clock, preferred=5)
    before = draw(ids, 5)
    assert ids.worker_id == 5
    # A partition: our renewals fail until the lease expires and another process takes id 5.
    leases.down = True
    clock.advance(36)
    with pytest.raises(DependencyUnavailable):
        ids.next_id()
    leases.down = False
    rival = leases.acquire("rival", clock.wall, TIMING.terms, 5)
    assert rival is not None and rival.worker_id == 5
    assert ids.renew_now()  # the renewal is refused, so it takes another id at once
    assert ids.worker_id not in (None, 5)
    after = draw(ids, 5)
    assert min(after) > max(before)


def test_a_clock_stepping_back_never_repeats_or_lowers_ids_across_a_handover() -> None:
    leases = FakeWorkerIdLeases()
    a_clock = Clock()
    a = generator(leases, a_clock, preferred=3)
    a_ids = draw(a, 100)
    a_clock.advance(10)
    assert a.renew_now()
    a_ids += draw(a, 100)
    a_clock.wall -= 3_000  # A's clock steps back: A keeps going up regardless
    a_ids += draw(a, 100)
    assert a_ids == sorted(a_ids) and len(set(a_ids)) == 300
    # A dies without a word. B's clock reads just past A's expiry plus the
    # skew allowance, then steps back a whole hour.
    b_clock = Clock(wall_ms=T0 + 10_000 + 30_000 + 5_001)
    b = generator(leases, b_clock, preferred=3)
    b_ids = draw(b, 100)
    assert b.worker_id == 3
    b_clock.wall -= 3_600_000
    b_ids += draw(b, 100)
    assert b_ids == sorted(b_ids)
    assert min(b_ids) > max(a_ids)


def test_a_new_holder_with_a_clock_behind_starts_above_a_released_holders_ids() -> None:
    leases = FakeWorkerIdLeases()
    a = generator(leases, Clock(), preferred=3)
    a_ids = draw(a, 50)
    a.close()
    assert {record.worker_id: record.holder for record in leases.holders()}[3] == FREE
    b = generator(leases, Clock(wall_ms=T0 - 600_000), preferred=3)  # ten minutes behind
    b_ids = draw(b, 50)
    assert b.worker_id == 3
    assert min(b_ids) > max(a_ids)


def test_two_live_holders_never_collide() -> None:
    leases, clock = FakeWorkerIdLeases(), Clock()
    a, b = generator(leases, clock, preferred=7), generator(leases, clock, preferred=7)
    a_ids, b_ids = draw(a, 5000), draw(b, 5000)  # the same frozen millisecond, sequence overflow included
    assert a.worker_id == 7 and b.worker_id not in (None, 7)
    assert set(a_ids).isdisjoint(b_ids)
    assert len(set(a_ids)) == len(a_ids) and len(set(b_ids)) == len(b_ids)


def test_ids_never_pass_the_mark_written_into_the_lease() -> None:
    leases, clock = FakeWorkerIdLeases(), Clock()
    ids = generator(leases, clock)
    ids.next_id()
    mark = leases.holders()[0].issued_until_ms
    clock.wall += 3_600_000  # the wall clock leaps an hour forward, the monotonic one does not
    with pytest.raises(DependencyUnavailable):
        ids.next_id()
    assert ids.renew_now()
    later = ids.next_id()
    assert timestamp_ms_of(later) == clock.wall
    assert leases.holders()[0].issued_until_ms > max(mark, timestamp_ms_of(later))


def test_no_lease_no_ids_and_a_failed_acquisition_is_not_retried_at_once() -> None:
    leases, clock = FakeWorkerIdLeases(), Clock()
    leases.down = True
    ids = generator(leases, clock)
    with pytest.raises(DependencyUnavailable):
        ids.next_id()
    with pytest.raises(DependencyUnavailable):
        ids.next_id()
    assert leases.calls.count("acquire") == 1
    leases.down = False
    clock.advance(TIMING.retry_seconds)
    ids.next_id()
    assert ids.worker_id is not None


def test_a_forked_child_takes_its_own_worker_id(monkeypatch: pytest.MonkeyPatch) -> None:
    leases, clock = FakeWorkerIdLeases(), Clock()
    ids = generator(leases, clock, preferred=8)
    ids.next_id()
    assert ids.worker_id == 8
    monkeypatch.setattr("app.services.worker_ids.os.getpid", lambda: 999_999_999)
    ids.next_id()
    assert ids.worker_id not in (None, 8)
    held = [record for record in leases.holders() if record.holder != FREE]
    assert len(held) == 2  # the parent's lease is left to the parent


def test_close_releases_the_id_and_stops_issuing() -> None:
    leases, clock = FakeWorkerIdLeases(), Clock()
    ids = generator(leases, clock, preferred=2)
    ids.next_id()
    ids.close()
    assert leases.holders()[0].holder == FREE
    with pytest.raises(DependencyUnavailable):
        ids.next_id()


def test_the_background_thread_keeps_the_lease_alive_on_real_clocks() -> None:
    leases = FakeWorkerIdLeases()
    timing = LeaseTiming(lease_seconds=0.6, renew_every_seconds=0.1, safety_margin_seconds=0.2, retry_seconds=0.05)
    ids = LeasedIdGenerator(leases, timing)
    first = ids.next_id()
    time.sleep(1.0)  # without renewals the lease would have lapsed at 0.4 s
    assert ids.next_id() > first
    assert leases.calls.count("renew") >= 3
    ids.close()
    assert leases.holders()[0].holder == FREE
    renewals = leases.calls.count("renew")
    time.sleep(0.3)
    assert leases.calls.count("renew") == renewals  # the thread is gone


def test_timing_that_would_lapse_between_renewals_is_refused() -> None:
    with pytest.raises(ValueError):
        LeaseTiming(lease_seconds=30, renew_every_seconds=26, safety_margin_seconds=5)


def test_build_leases_a_worker_id_from_the_sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        store_url=f"sqlite:///{tmp_path}/store.db",
        ledger_url=f"embedded:///{tmp_path}/ledger.db",
        bus_url="inprocess://",
        snowflake_worker_id=12,
    )
    container = build(settings)
    try:
        container.ids.next_id()
        assert container.ids.worker_id == 12
        assert (tmp_path / "store.worker_ids.db").exists()
    finally:
        container.close()
    other = build(settings)
    try:
        other.ids.next_id()
        assert other.ids.worker_id == 12  # released on close, so free again
    finally:
        other.close()
