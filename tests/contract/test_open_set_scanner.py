"""The scanner on real Cassandra sees every open transfer, whatever happened before.

One case each from docs/open-set.md: many open at once in one shard, a
transfer open for days after an operator's listing, a late retry of an old
id, and a day of settled transfers far beyond the tombstone thresholds (the
dev services run Cassandra with them lowered, so reading them would fail).
Each test has a keyspace of its own, because it moves time forward.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.adapters.cassandra_store import CassandraTransferStore
from app.domain.ids import SnowflakeGenerator
from app.domain.money import AssetCatalog
from app.domain.transfer import API, Status, Transfer
from app.ports.ledger import IdempotencyClaim, LockOutcome
from app.services.operations import OperatorService
from app.services.recovery import RecoveryPolicy
from tests.conftest import record_move
from tests.support.cassandra_fixtures import store_in_fresh_keyspace, store_url
from tests.support.inprocess_bus import deliver_queued
from tests.support.quotas import UNLIMITED
from tests.unit.harness import FakeClock, Harness

pytestmark = pytest.mark.real_backends

UNIT = 10**8
POLICY = RecoveryPolicy(batch_size=1000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def cassandra(clock: FakeClock) -> Iterator[CassandraTransferStore]:
    with store_in_fresh_keyspace("it_open", clock) as store:
        yield store


@pytest.fixture
def stack(tmp_path: Path, catalog: AssetCatalog, cassandra: CassandraTransferStore, clock: FakeClock) -> Harness:
    return Harness(tmp_path, catalog, store=cassandra, clock=clock, policy=POLICY)


def _ids_in_shard(store: CassandraTransferStore, shard: int, count: int, clock: FakeClock) -> list[int]:
    ids = SnowflakeGenerator(7, clock_ms=lambda: int(clock().timestamp() * 1000))
    chosen: list[int] = []
    while len(chosen) < count:
        candidate = ids.next_id()
        if store.open_set.shard_of(candidate) == shard:
            chosen.append(candidate)
    return chosen


def _pending(stack: Harness, request_id: int, user_id: int, units: int) -> Transfer:
    """A transfer locked and recorded pending, as the API leaves it; its engine request is lost."""
    transfer = Transfer.new(request_id, stack.command(user_id, units), stack.clock())
    stack.store.record_new(transfer)
    assert stack.ledger.lock(transfer, stack.deps.catalog.get("USDT"), UNLIMITED) == LockOutcome.LOCKED
    return stack.settle.locked(transfer, API, "funds locked")


def _statuses(stack: Harness, transfers: list[Transfer]) -> dict[Status, int]:
    found = stack.store.get_many([t.request_id for t in transfers])
    counts: dict[Status, int] = {}
    for transfer in found.values():
        counts[transfer.status] = counts.get(transfer.status, 0) + 1
    return counts


def _drop_engine_traffic(stack: Harness) -> None:
    deliver_queued(stack.bus)


def test_1200_open_in_one_shard_and_3_in_another_all_settle_after_an_engine_outage(stack: Harness) -> None:
    store = stack.store
    assert isinstance(store, CassandraTransferStore)
    stack.fund(1, "100000")
    crowded = _ids_in_shard(store, 3, 1200, stack.clock)
    sparse = _ids_in_shard(store, 11, 3, stack.clock)
    with ThreadPoolExecutor(16) as pool:
        transfers = list(pool.map(lambda rid: _pending(stack, rid, 1, UNIT), crowded + sparse))
    _drop_engine_traffic(stack)  # the engine is down: every request is lost
    # Passes while the engine is down: nothing settles, every transfer stays open and visible.
    for _ in range(3):
        stack.clock.advance(seconds=31)
        stack.recovery.scan()
        _drop_engine_traffic(stack)
    assert _statuses(stack, transfers) == {Status.PENDING: 1203}
    # The engine is back: the scanner re-sends, the engine answers, settlement posts.
    for _ in range(6):
        stack.clock.advance(seconds=31)
        stack.recovery.scan()
        stack.pump()
        if _statuses(stack, transfers) == {Status.SUCCESS: 1203}:
            break
    assert _statuses(stack, transfers) == {Status.SUCCESS: 1203}
    assert store.open_transfers(2000).items == []


def _alerts(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "internal_transfer.alerts"]


def test_a_transfer_open_for_three_days_after_an_operator_listing_is_alerted_and_resent(
    stack: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    store = stack.store
    assert isinstance(store, CassandraTransferStore)
    stack.fund(1)
    # In front of it: an orphan row (its writer died before the record) and a settled transfer.
    orphan = stack.deps.ids.next_id()
    store.db.run_together(store.open_set.filing(orphan, store.open_set.window_of(stack.clock())))
    settled = stack.submit.transfer(stack.command(1, UNIT)).transfer
    stack.pump()
    assert stack.reload(settled).status == Status.SUCCESS
    stuck = stack.submit.transfer(stack.command(1, 2 * UNIT)).transfer
    _drop_engine_traffic(stack)  # its engine request is lost
    operations = OperatorService(stack.deps, stack.settle)
    assert len(operations.stuck(None, timedelta(0), limit=1)) <= 1
    operations.reconcile(limit=1)
    caplog.set_level(logging.INFO)
    for hours in range(1, 73):  # three days, a scan an hour
        stack.clock.now = stuck.created_at + timedelta(hours=hours)
        stack.recovery.scan()
        operations.stuck(None, timedelta(0), limit=1)
    visits = [a for a in _alerts(caplog) if a.get("request_id") == stuck.request_id]
    assert len(visits) == 72
    assert visits[-1]["alert"] == "transfer_pending_too_long" and visits[-1]["severity"] == "critical"
    assert visits[-1]["age_seconds"] == 72 * 3600
    resent: list[int] = []
    deliver_queued(stack.bus, lambda requests: resent.extend(r.request_id for r in requests))
    assert stuck.request_id in resent
    stack.pump()
    stack.clock.advance(seconds=31)
    stack.recovery.scan()
    stack.pump()
    assert stack.reload(stuck).status == Status.SUCCESS


def test_a_late_retry_of_an_id_issued_20_minutes_earlier_is_visited(stack: Harness) -> None:
    store = stack.store
    assert isinstance(store, CassandraTransferStore)
    stack.fund(1)
    command = stack.command(1, 5 * UNIT)
    early = stack.deps.ids.next_id()
    # The first attempt claimed its key and died before recording anything.
    stack.deps.keys.claim_idempotency_key(1, "k", IdempotencyClaim(request_id=early, fingerprint=command.fingerprint()))
    # Another was recorded 20 minutes ago and died before locking: its row is in an old window.
    recorded_early = Transfer.new(stack.deps.ids.next_id(), stack.command(1, 7 * UNIT), stack.clock(), "k2")
    stack.deps.keys.claim_idempotency_key(
        1, "k2", IdempotencyClaim(request_id=recorded_early.request_id, fingerprint=recorded_early.fingerprint)
    )
    store.record_new(recorded_early)
    store.open_set.remove(
        recorded_early.request_id,
        store.open_set.read(10_000, 0).where.get(recorded_early.request_id, []),
    )  # as if its row had been lost: only the retry can bring it back
    for _ in range(40):  # 20 minutes of scanner passes: the windows of those ids close
        stack.clock.advance(seconds=30)
        stack.recovery.scan()
    assert store.open_set.position() > store.open_set.window_of(recorded_early.created_at)
    first = stack.submit.transfer(command, "k").transfer
    second = stack.submit.transfer(stack.command(1, 7 * UNIT), "k2").transfer
    assert (first.request_id, second.request_id) == (early, recorded_early.request_id)
    _drop_engine_traffic(stack)
    stack.clock.advance(seconds=31)
    visited = {t.request_id for t in store.open_transfers(1000).items}
    assert {early, recorded_early.request_id} <= visited
    assert stack.recovery.scan()["resent"] == 2
    # Windows keep closing; they stay visible until they settle.
    stack.clock.advance(minutes=5)
    stack.recovery.scan()
    assert {early, recorded_early.request_id} <= {t.request_id for t in store.open_transfers(1000).items}
    stack.clock.advance(seconds=31)
    stack.recovery.scan()
    stack.pump()
    assert {stack.reload(first).status, stack.reload(second).status} == {Status.SUCCESS}


def test_a_day_of_settled_transfers_beyond_the_tombstone_thresholds_does_not_break_the_scan(stack: Harness) -> None:
    store = stack.store
    assert isinstance(store, CassandraTransferStore)
    stack.fund(1, "1000000")
    opened_first = stack.submit.transfer(stack.command(1, UNIT)).transfer
    _drop_engine_traffic(stack)
    settled = 0
    # 12,000 settled transfers over a day (the dev Cassandra fails a read past 1,000 tombstones).
    with ThreadPoolExecutor(16) as pool:
        for _ in range(24):
            batch = [Transfer.new(stack.deps.ids.next_id(), stack.command(1, UNIT), stack.clock()) for _ in range(500)]

            def settle(transfer: Transfer) -> None:
                store.record_new(transfer)
                pending = record_move(store, transfer, Status.PENDING, now=stack.clock())
                record_move(store, pending, Status.SUCCESS, now=stack.clock())

            list(pool.map(settle, batch))
            settled += len(batch)
            stack.clock.advance(hours=1)
            stack.recovery.scan()
    assert settled == 12_000
    open_now = store.open_transfers(1000)
    assert [t.request_id for t in open_now.items] == [opened_first.request_id]
    stack.clock.advance(seconds=31)
    assert stack.recovery.scan()["resent"] == 1


def test_a_closing_pass_too_slow_for_its_target_window_leaves_the_windows_open(stack: Harness) -> None:
    store = stack.store
    assert isinstance(store, CassandraTransferStore)
    stack.fund(1)
    stuck = stack.submit.transfer(stack.command(1, UNIT)).transfer
    _drop_engine_traffic(stack)
    position = store.open_set.position()
    stack.clock.advance(minutes=5)

    def slow_still_open(ids: list[int]) -> list[int]:
        stack.clock.advance(minutes=2)  # a GC pause, a stalled node: past the target window's deadline
        return ids

    store.open_set.close_due_windows(slow_still_open)
    # Its filing may sit in a window another scanner has closed meanwhile:
    # the window it came from stays open, so the transfer stays visible.
    home = store.open_set.window_of(stuck.created_at)
    assert position <= store.open_set.position() <= home
    assert stuck.request_id in {t.request_id for t in store.open_transfers(1000).items}
    stack.recovery.scan()  # an ordinary pass closes it, in time
    assert store.open_set.position() > home
    assert stuck.request_id in {t.request_id for t in store.open_transfers(1000).items}


def test_every_process_files_and_closes_by_the_margin_the_open_set_was_made_with(
    cassandra: CassandraTransferStore,
) -> None:
    configured_otherwise = CassandraTransferStore.from_url(
        store_url(cassandra.keyspace).replace("?", "?open_margin_seconds=600&shards=3&open_window_seconds=5&")
    )
    try:
        layout = configured_otherwise.open_set.layout()
        assert (layout.margin_seconds, layout.shards, layout.window_seconds) == (60, 16, 30)
    finally:
        configured_otherwise.close()
