"""The WorkerIdLeases contract, on every implementation (and on the unit tests' fake).

Each test gets a factory of adapters over one empty lease table: two adapters
from it behave like two processes sharing the store (for SQLite, two
connections to one file).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.domain.worker_leases import Lease, LeaseTerms
from app.ports.worker_ids import WorkerIdLeases
from tests.support.fake_worker_ids import FakeWorkerIdLeases

TERMS = LeaseTerms(lease_ms=30_000, max_clock_skew_ms=5_000)
Factory = Callable[[], WorkerIdLeases]


@pytest.fixture(params=["fake", "sqlite", "cassandra"])
def new_leases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    made: list[WorkerIdLeases] = []
    if request.param == "fake":
        shared = FakeWorkerIdLeases()

        def make() -> WorkerIdLeases:
            return shared

    elif request.param == "sqlite":
        from app.adapters.sqlite_worker_ids import SqliteWorkerIdLeases

        def make() -> WorkerIdLeases:
            made.append(SqliteWorkerIdLeases(str(tmp_path / "store.worker_ids.db")))
            return made[-1]

    else:
        from app.adapters.cassandra_worker_ids import CassandraWorkerIdLeases

        store = request.getfixturevalue("cassandra_store")
        # The keyspace lives for the whole session: start each test from no leases.
        store.session().execute(f"TRUNCATE {store.keyspace}.worker_id_leases", timeout=60)

        def make() -> WorkerIdLeases:
            return CassandraWorkerIdLeases(store)

        made.append(store)
    yield make
    for item in made:
        item.close()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def acquire(leases: WorkerIdLeases, holder: str, now: int, preferred: int | None = None) -> Lease:
    lease = leases.acquire(holder, now, TERMS, preferred)
    assert lease is not None
    assert lease.holder == holder
    assert lease.floor_ms < lease.issued_until_ms
    return lease


def test_two_holders_never_hold_the_same_worker_id_at_once(new_leases: Factory) -> None:
    a_side, b_side = new_leases(), new_leases()
    now = wall_ms()
    a = acquire(a_side, "a", now, preferred=5)
    assert a.worker_id == 5
    # Live, then expired but within the skew allowance: both still A's.
    for at in (now, now + TERMS.lease_ms, now + TERMS.lease_ms + TERMS.max_clock_skew_ms):
        b = acquire(b_side, f"b@{at}", at, preferred=5)
        assert b.worker_id != 5
    held = {record.worker_id: record.holder for record in a_side.holders()}
    assert held[5] == "a"


def test_the_losers_renewal_fails_after_a_takeover(new_leases: Factory) -> None:
    a_side, b_side = new_leases(), new_leases()
    now = wall_ms()
    a = acquire(a_side, "a", now, preferred=9)
    later = a.expires_at_ms + TERMS.max_clock_skew_ms + 1
    b = acquire(b_side, "b", later, preferred=9)
    assert b.worker_id == 9
    assert a_side.renew(a, later + 1, TERMS) is None
    assert not a_side.release(a)  # nor can the loser free the winner's id
    renewed = b_side.renew(b, later + 1, TERMS)
    assert renewed is not None and renewed.expires_at_ms == later + 1 + TERMS.lease_ms
    assert {record.worker_id: record.holder for record in b_side.holders()}[9] == "b"


def test_renewal_extends_and_never_lowers_the_mark(new_leases: Factory) -> None:
    leases = new_leases()
    now = wall_ms()
    a = acquire(leases, "a", now, preferred=11)
    renewed = leases.renew(a, now + 10_000, TERMS)
    assert renewed is not None
    assert renewed.issued_until_ms == now + 10_000 + TERMS.lease_ms
    assert renewed.expires_at_ms == now + 10_000 + TERMS.lease_ms
    # The clock steps back a minute: the lease is extended, the mark stays.
    stepped_back = leases.renew(renewed, now - 60_000, TERMS)
    assert stepped_back is not None
    assert stepped_back.issued_until_ms == renewed.issued_until_ms
    stored = {record.worker_id: record for record in leases.holders()}[11]
    assert stored.issued_until_ms == renewed.issued_until_ms


def test_an_expired_lease_is_taken_over_at_or_above_the_old_mark(new_leases: Factory) -> None:
    a_side, b_side = new_leases(), new_leases()
    now = wall_ms()
    a = acquire(a_side, "a", now, preferred=3)
    a = a_side.renew(a, now + 10_000, TERMS) or pytest.fail("renewal refused")
    # A dies without releasing; B comes after the expiry plus the skew allowance.
    later = a.expires_at_ms + TERMS.max_clock_skew_ms + 1
    b = acquire(b_side, "b", later, preferred=3)
    assert b.worker_id == 3
    assert b.floor_ms >= a.issued_until_ms
    assert b.issued_until_ms >= b.floor_ms + TERMS.lease_ms


def test_a_new_holder_whose_clock_is_behind_still_starts_at_the_old_mark(new_leases: Factory) -> None:
    a_side, b_side = new_leases(), new_leases()
    now = wall_ms()
    a = acquire(a_side, "a", now, preferred=4)
    assert a_side.release(a)
    b = acquire(b_side, "b", now - 3_600_000, preferred=4)  # an hour behind
    assert b.worker_id == 4
    assert b.floor_ms >= a.issued_until_ms
    # Its window starts at the mark, whatever its clock says.
    assert b.issued_until_ms >= a.issued_until_ms + TERMS.lease_ms


def test_release_frees_the_id_at_once(new_leases: Factory) -> None:
    a_side, b_side = new_leases(), new_leases()
    now = wall_ms()
    a = acquire(a_side, "a", now, preferred=7)
    assert a_side.release(a)
    assert a_side.renew(a, now + 1, TERMS) is None
    b = acquire(b_side, "b", now + 1, preferred=7)
    assert b.worker_id == 7
    assert b.floor_ms >= a.issued_until_ms
    assert not a_side.release(a)


@pytest.mark.parametrize("previously_held", [False, True], ids=["fresh", "expired"])
def test_many_concurrent_acquirers_get_distinct_ids(new_leases: Factory, previously_held: bool) -> None:
    now = wall_ms()
    sides = [new_leases() for _ in range(4)]
    if previously_held:
        # Id 1 has a long-expired lease: every acquirer reads it as free, and
        # the takeover's compare-and-set must let only one of them have it.
        acquire(sides[0], "old", now - 120_000, preferred=1)

    def take(index: int) -> Lease | None:
        # Everyone wants id 1 as well: exactly one may get it.
        return sides[index % len(sides)].acquire(f"h{index}", now, TERMS, 1)

    with ThreadPoolExecutor(max_workers=8) as pool:
        leases = list(pool.map(take, range(24)))
    assert all(lease is not None for lease in leases)
    worker_ids = [lease.worker_id for lease in leases if lease is not None]
    assert len(set(worker_ids)) == len(worker_ids)
    assert worker_ids.count(1) == 1
    stored = {record.worker_id: record.holder for record in sides[0].holders()}
    assert {stored[lease.worker_id] for lease in leases if lease is not None} == {f"h{i}" for i in range(24)}
