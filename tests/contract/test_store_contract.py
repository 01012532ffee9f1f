"""The TransferStore contract, including the races two actors can run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.domain.batch import BatchCommand, new_batch
from app.domain.cursor import HISTORY_SCAN_BUDGET
from app.domain.errors import InsufficientBalance
from app.domain.events import StatusEvent
from app.domain.money import AssetCatalog
from app.domain.transfer import (
    API,
    FAILURE_ORDER,
    SCANNER,
    SETTLEMENT,
    AuditActor,
    AuditEntry,
    FailureReason,
    Status,
    Transfer,
)
from app.ports.store import StatusChange, TransferStore
from tests.conftest import make_transfer, random_request_id, random_user_id, record_move
from tests.unit.harness import FakeClock, Harness

UNIT = 10**8  # one USDT


def now() -> datetime:
    return datetime.now(UTC)


def test_record_then_get_round_trips_every_field(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 2**64 + 99)
    store.record_new(transfer)
    found = store.get(transfer.request_id)
    assert found == transfer
    assert found is not None and found.amount == 2**64 + 99 and found.fingerprint == transfer.fingerprint


def test_get_many_reads_what_exists(store: TransferStore) -> None:
    recorded = [make_transfer(random_user_id(), n + 1) for n in range(5)]
    for transfer in recorded:
        store.record_new(transfer)
    missing = random_request_id()
    found = store.get_many([*(t.request_id for t in recorded), missing])
    assert found == {t.request_id: t for t in recorded}


def test_recording_again_never_moves_a_status_back(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.record_new(transfer)
    record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
    store.record_new(transfer)  # an idempotent retry of the first step
    stored = store.get(transfer.request_id)
    assert stored is not None and stored.status == Status.PENDING


def test_get_of_an_unknown_id_is_none(store: TransferStore) -> None:
    assert store.get(random_request_id()) is None


def test_a_stale_writer_never_moves_a_status_back(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.record_new(transfer)
    pending = record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
    record_move(store, pending, Status.SUCCESS, actor=SETTLEMENT, reason="posted")
    # A scanner that read the transfer while it was `requesting` writes late.
    record_move(store, transfer, Status.PENDING, actor=SCANNER, reason="lock found in the ledger")
    stored = store.get(transfer.request_id)
    assert stored is not None and stored.status == Status.SUCCESS
    # ... and its late write is still on the audit trail.
    assert (SCANNER, Status.PENDING) in [(e.actor, e.to_status) for e in store.audit_trail(transfer.request_id)]


def test_writes_that_land_out_of_order_keep_the_most_advanced(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.record_new(transfer)
    pending = transfer.moved_to(Status.PENDING, now())
    failed = pending.moved_to(Status.FAILED, now(), FailureReason.REJECTED_BY_ENGINE)
    store.record_statuses([StatusChange(pending, failed, SETTLEMENT, "rejected")])
    store.record_statuses([StatusChange(transfer, pending, API, "locked")])
    stored = store.get(transfer.request_id)
    assert stored is not None
    assert (stored.status, stored.failure_reason) == (Status.FAILED, "REJECTED_BY_ENGINE")


@pytest.mark.parametrize("generic_first", [True, False])
def test_a_known_cause_of_failure_outranks_the_bare_voided(store: TransferStore, generic_first: bool) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.record_new(transfer)
    pending = record_move(store, transfer, Status.PENDING)
    generic = (SCANNER, FailureReason.VOIDED)
    known = (SETTLEMENT, FailureReason.REJECTED_BY_ENGINE)
    for actor, reason in (generic, known) if generic_first else (known, generic):
        record_move(store, pending, Status.FAILED, actor=actor, failure_reason=reason)
    stored = store.get(transfer.request_id)
    assert stored is not None and (stored.status, stored.failure_reason) == (Status.FAILED, "REJECTED_BY_ENGINE")


# The refusals a client was answered 422 for: the lock was refused, so nothing
# is in the ledger, and the scanner may fence the same request meanwhile.
_ANSWERED_422 = [FailureReason.INSUFFICIENT_BALANCE, FailureReason.DAILY_LIMIT_EXCEEDED, FailureReason.BATCH_FAILED]


@pytest.mark.parametrize("fence_first", [True, False], ids=["fence-first", "fence-last"])
@pytest.mark.parametrize("refusal", _ANSWERED_422)
def test_a_refusal_answered_422_outranks_the_scanners_fence(
    store: TransferStore, refusal: FailureReason, fence_first: bool
) -> None:
    """A retry refused at the lock races the scanner fencing the same request: the refusal stands.

    The client was told 422; a replay of its Idempotency-Key answers from the
    record, so the record must keep the refusal, whichever write lands last,
    and all of it (cause and time) from that one write.
    """
    transfer = make_transfer(random_user_id(), 10)
    store.record_new(transfer)
    refused = transfer.moved_to(Status.FAILED, now(), refusal)
    fenced = transfer.moved_to(Status.FAILED, now(), FailureReason.NOT_LOCKED)
    writes = [
        StatusChange(transfer, refused, API, f"lock refused: {refusal}"),
        StatusChange(transfer, fenced, SCANNER, "no lock found after the grace period; id fenced"),
    ]
    for change in reversed(writes) if fence_first else writes:
        store.record_statuses([change])
    stored = store.get(transfer.request_id)
    assert stored is not None
    assert (stored.status, stored.failure_reason, stored.updated_at) == (Status.FAILED, refusal, refused.updated_at)


_CAUSE_PAIRS = [(a, b) for i, a in enumerate(FailureReason) for b in list(FailureReason)[i + 1 :]]


@pytest.mark.parametrize(("first", "second"), _CAUSE_PAIRS, ids=[f"{a}-{b}" for a, b in _CAUSE_PAIRS])
def test_two_causes_of_failure_resolve_the_same_whichever_lands_first(
    store: TransferStore, first: FailureReason, second: FailureReason
) -> None:
    """Two actors record `failed` with different causes: the outcome never depends on arrival order.

    (Cassandra breaks a tie of write timestamps by comparing values, cell by
    cell; SQLite kept whichever came first. Neither is an order the domain chose.)
    """
    outcomes = []
    for order in ((first, second), (second, first)):
        transfer = make_transfer(random_user_id(), 10)
        store.record_new(transfer)
        written = {}
        for cause in order:
            written[cause] = transfer.moved_to(Status.FAILED, now(), cause)
            store.record_statuses([StatusChange(transfer, written[cause], SCANNER, f"failed: {cause}")])
        stored = store.get(transfer.request_id)
        assert stored is not None and stored.status == Status.FAILED and stored.failure_reason in written
        # The whole record from the one write that won, not a cell from each.
        assert stored.updated_at == written[stored.failure_reason].updated_at
        outcomes.append(stored.failure_reason)
    assert outcomes[0] == outcomes[1]
    # ... and it is the one the domain's order names, on every store.
    assert outcomes[0] == max(first, second, key=FAILURE_ORDER.index)


def _racing_the_fence(
    monkeypatch: pytest.MonkeyPatch, harness: Harness, lock: str, stale: list[Transfer], fence_first: bool
) -> Callable[[], None]:
    """The scanner's pass over `stale` (read `requesting`): it fences and fails each, NOT_LOCKED.

    With `fence_first` it runs right after the ledger refuses the retry's
    lock (`lock` names the ledger method) and before the refusal is
    recorded; otherwise the caller runs it after the refusal's write.
    """

    def fence() -> None:
        assert [harness.recovery.reconcile(t, harness.clock()) for t in stale] == ["failed_not_locked"] * len(stale)

    if fence_first:
        refuse = getattr(harness.ledger, lock)

        def refuse_then_fence(*args: object, **kwargs: object) -> object:
            outcome = refuse(*args, **kwargs)
            fence()
            return outcome

        monkeypatch.setattr(harness.ledger, lock, refuse_then_fence)
        return lambda: None
    return fence


@pytest.mark.parametrize("fence_first", [True, False], ids=["fence-first", "fence-last"])
def test_a_retry_refused_422_that_races_the_fence_replays_422(
    store: TransferStore, tmp_path: Path, catalog: AssetCatalog, monkeypatch: pytest.MonkeyPatch, fence_first: bool
) -> None:
    harness = Harness(tmp_path, catalog, store=store, clock=FakeClock(now()))
    told: list[StatusEvent] = []  # what the dispatcher would publish, once each write is durable
    store.outbox_listener = lambda entries: told.extend(entry.event for entry in entries)
    user_id = random_user_id()
    harness.fund(user_id, "1")
    command = harness.command(user_id, 2 * UNIT)
    # The first attempt recorded the transfer and died before its lock.
    request_id, _ = harness.submit.claim_key(user_id, "key-1", command.fingerprint())
    stale = Transfer.new(request_id, command, harness.clock(), "key-1")
    store.record_new(stale)
    harness.clock.advance(minutes=1)  # past the scanner's grace
    fence_later = _racing_the_fence(monkeypatch, harness, "lock", [stale], fence_first)
    with pytest.raises(InsufficientBalance):
        harness.submit.transfer(command, "key-1")  # the retry: answered 422
    fence_later()
    replay = harness.submit.transfer(command, "key-1")
    assert replay.replayed and replay.transfer.request_id == request_id
    assert replay.transfer.failure_reason == FailureReason.INSUFFICIENT_BALANCE
    assert isinstance(harness.submit.refusal(replay.transfer), InsufficientBalance)  # 422 again, never a 202
    # Each actor's event tells what it did (docs/events.md), so two `failed`
    # go out. A consumer that deduplicates as documented keeps both, and the
    # one it keeps as the transfer's state, by the store's own order, is the
    # stored one.
    failed = [e for e in told if e.request_id == request_id and e.to_status == Status.FAILED]
    assert {e.failure_reason for e in failed} == {FailureReason.INSUFFICIENT_BALANCE, FailureReason.NOT_LOCKED}
    assert len({e.dedupe_key for e in failed}) == 2
    kept = max(failed, key=lambda e: e.precedence)
    assert (kept.failure_reason, kept.actor) == (FailureReason.INSUFFICIENT_BALANCE, "api")


@pytest.mark.parametrize("fence_first", [True, False], ids=["fence-first", "fence-last"])
def test_a_batch_retry_refused_422_that_races_the_fence_replays_422(
    store: TransferStore, tmp_path: Path, catalog: AssetCatalog, monkeypatch: pytest.MonkeyPatch, fence_first: bool
) -> None:
    harness = Harness(tmp_path, catalog, store=store, clock=FakeClock(now()))
    user_id = random_user_id()
    harness.fund(user_id, "2")
    command = BatchCommand(user_id, (harness.command(user_id, UNIT), harness.command(user_id, 5 * UNIT)))
    # The first attempt recorded the batch and its legs and died before the lock.
    batch_id, _ = harness.submit.claim_key(user_id, "key-1", command.fingerprint())
    drafted = new_batch(batch_id, command, harness.clock(), "key-1")
    batch, legs = drafted.batch, [leg for leg in drafted.legs if leg is not None]
    store.record_batch(batch, legs)
    harness.clock.advance(minutes=1)
    fence_later = _racing_the_fence(monkeypatch, harness, "lock_batch", legs, fence_first)
    with pytest.raises(InsufficientBalance) as refused:
        harness.submit.batch(command, "key-1")
    assert refused.value.details["leg"] == 1
    fence_later()
    replay = harness.submit.batch(command, "key-1")
    assert replay.replayed
    assert [leg.failure_reason if leg else None for leg in replay.view.legs] == [
        FailureReason.BATCH_FAILED,
        FailureReason.INSUFFICIENT_BALANCE,
    ]
    replayed = harness.submit.batch_refusal(replay.view)
    assert isinstance(replayed, InsufficientBalance) and replayed.details["leg"] == 1


def test_failed_keeps_its_reason(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.record_new(transfer)
    record_move(
        store, transfer, Status.FAILED, actor=API, reason="no funds", failure_reason=FailureReason.INSUFFICIENT_BALANCE
    )
    stored = store.get(transfer.request_id)
    assert stored is not None and stored.failure_reason == "INSUFFICIENT_BALANCE"


def test_racing_writers_of_one_change_are_all_audited(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.record_new(transfer)
    pending = record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
    racers = 8
    start = threading.Barrier(racers)

    def race(index: int) -> None:
        start.wait()
        record_move(store, pending, Status.SUCCESS, actor=AuditActor.operator(f"racer-{index}"), reason="posted")

    with ThreadPoolExecutor(racers) as pool:
        list(pool.map(race, range(racers)))
    stored = store.get(transfer.request_id)
    assert stored is not None and stored.status == Status.SUCCESS
    trail = store.audit_trail(transfer.request_id)
    assert [(e.from_status, e.to_status) for e in trail[:2]] == [
        (None, Status.REQUESTING),
        (Status.REQUESTING, Status.PENDING),
    ]
    assert sorted(str(e.actor) for e in trail[2:]) == sorted(f"operator:racer-{i}" for i in range(racers))
    assert all((e.from_status, e.to_status) == (Status.PENDING, Status.SUCCESS) for e in trail[2:])


def test_audit_trail_says_who_when_and_why(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.record_new(transfer)
    record_move(store, transfer, Status.PENDING, actor=SCANNER, reason="lock found in the ledger")
    trail = store.audit_trail(transfer.request_id)
    assert trail[-1].actor == SCANNER
    assert trail[-1].reason == "lock found in the ledger"
    assert trail[-1].at.tzinfo is not None


def test_actions_without_a_status_change_join_the_trail(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.record_new(transfer)
    entry = AuditEntry(
        request_id=transfer.request_id,
        at=now(),
        actor=AuditActor.operator("7"),
        from_status=Status.REQUESTING,
        to_status=Status.REQUESTING,
        reason="re-sent to the engine: ticket 42",
    )
    store.append_audit(entry)
    trail = store.audit_trail(transfer.request_id)
    assert len(trail) == 2
    assert (str(trail[-1].actor), trail[-1].reason) == ("operator:7", "re-sent to the engine: ticket 42")


def _insert_many(store: TransferStore, user_id: int, count: int, asset: str = "USDT") -> list[Transfer]:
    # Distinct, increasing ids so "newest first" has exactly one right answer.
    transfers = [
        make_transfer(user_id, index + 1, asset=asset, request_id=random_request_id()) for index in range(count)
    ]
    for transfer in transfers:
        store.record_new(transfer)
    return transfers


def test_history_is_newest_first_and_pages_cover_everything_once(store: TransferStore) -> None:
    user_id = random_user_id()
    transfers = _insert_many(store, user_id, 23)
    seen: list[int] = []
    cursor = None
    while True:
        page = store.history(user_id, 5, cursor)
        seen.extend(t.request_id for t in page.items)
        assert len(page.items) <= 5
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted((t.request_id for t in transfers), reverse=True)


def test_history_filters_by_status_and_asset(store: TransferStore) -> None:
    user_id = random_user_id()
    usdt = _insert_many(store, user_id, 6)
    btc = _insert_many(store, user_id, 3, asset="BTC")
    for transfer in usdt[:2]:
        record_move(
            store, transfer, Status.FAILED, actor=API, reason="x", failure_reason=FailureReason.INSUFFICIENT_BALANCE
        )
    failed = store.history(user_id, 100, status=Status.FAILED)
    assert {t.request_id for t in failed.items} == {t.request_id for t in usdt[:2]}
    assert all(t.status == Status.FAILED for t in failed.items)
    only_btc = store.history(user_id, 100, asset="BTC")
    assert {t.request_id for t in only_btc.items} == {t.request_id for t in btc}
    requesting_usdt = store.history(user_id, 2, status=Status.REQUESTING, asset="USDT")
    assert len(requesting_usdt.items) == 2 and requesting_usdt.next_cursor is not None
    rest = store.history(user_id, 100, requesting_usdt.next_cursor, Status.REQUESTING, "USDT")
    assert len(requesting_usdt.items) + len(rest.items) == 4


def _history_pages(store: TransferStore, user_id: int, **filters: object) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        page = store.history(user_id, 10, cursor, **filters)  # type: ignore[arg-type]
        pages.append([t.request_id for t in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


@pytest.mark.parametrize("by", ["asset", "status"])
def test_a_filtered_history_page_reads_a_bounded_number_of_rows_and_hands_back_a_cursor(
    store: TransferStore, by: str
) -> None:
    # A user can fill their own history cheaply (refused batch legs are recorded):
    # a filtered page must not read all of it to find one match.
    user_id = random_user_id()
    (wanted,) = _insert_many(store, user_id, 1)
    record_move(store, wanted, Status.FAILED, actor=API, reason="x", failure_reason=FailureReason.INSUFFICIENT_BALANCE)
    _insert_many(store, user_id, HISTORY_SCAN_BUDGET + 10, asset="BTC")
    filters = {"asset": "USDT"} if by == "asset" else {"status": Status.FAILED}
    pages = _history_pages(store, user_id, **filters)
    # The first page ran out of budget with no match; the cursor reads on and finds it.
    assert pages == [[], [wanted.request_id]]


def test_history_shows_only_the_users_own_transfers(store: TransferStore) -> None:
    mine, theirs = random_user_id(), random_user_id()
    _insert_many(store, theirs, 3)
    assert store.history(mine, 10).items == []


def test_paging_while_transfers_are_created_returns_each_older_one_once(store: TransferStore) -> None:
    user_id = random_user_id()
    existing = _insert_many(store, user_id, 30)
    newest = max(t.request_id for t in existing)
    stop = threading.Event()

    def keep_creating() -> None:
        request_id = newest
        while not stop.is_set():
            request_id += 1
            store.record_new(make_transfer(user_id, 1, request_id=request_id))

    writer = threading.Thread(target=keep_creating)
    writer.start()
    try:
        first = store.history(user_id, 7)
        seen = [t.request_id for t in first.items]
        cursor = first.next_cursor
        while cursor is not None:
            page = store.history(user_id, 7, cursor)
            seen.extend(t.request_id for t in page.items)
            cursor = page.next_cursor
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen))
    older = [r for r in seen if r <= newest]
    assert sorted(older, reverse=True) == sorted((t.request_id for t in existing), reverse=True)


def _all_open(store: TransferStore, limit: int = 1000, after: int | None = None) -> list[int]:
    seen: list[int] = []
    while True:
        page = store.open_transfers(limit, after=after)
        seen.extend(t.request_id for t in page.items)
        if page.next_after is None:
            return seen
        after = page.next_after


def test_open_transfers_lists_requesting_and_pending_only(store: TransferStore) -> None:
    user_id = random_user_id()
    requesting, pending, done = (make_transfer(user_id, n) for n in (1, 2, 3))
    for transfer in (requesting, pending, done):
        store.record_new(transfer)
    record_move(store, pending, Status.PENDING, actor=API, reason="locked")
    record_move(store, done, Status.FAILED, actor=API, reason="x", failure_reason=FailureReason.INSUFFICIENT_BALANCE)
    open_ids = set(_all_open(store))
    assert requesting.request_id in open_ids
    assert pending.request_id in open_ids
    assert done.request_id not in open_ids


def test_open_transfers_page_with_after_and_survive_settlement(store: TransferStore) -> None:
    user_id = random_user_id()
    transfers = [make_transfer(user_id, n + 1) for n in range(6)]
    for transfer in transfers:
        store.record_new(transfer)
    for transfer in transfers[:3]:
        record_move(store, transfer, Status.FAILED, actor=API, reason="x", failure_reason=FailureReason.NOT_LOCKED)
    _all_open(store)  # a scan that meets the settled rows
    late = make_transfer(user_id, 99)
    store.record_new(late)
    mine = {t.request_id for t in transfers[3:]} | {late.request_id}
    seen = _all_open(store, 2, after=transfers[0].request_id - 1)
    assert [r for r in seen if r in mine] == sorted(mine)
    assert len(seen) == len(set(seen))


def test_a_listing_never_hides_an_open_transfer_from_the_next(store: TransferStore) -> None:
    user_id = random_user_id()
    transfers = [make_transfer(user_id, n + 1) for n in range(5)]
    for transfer in transfers:
        store.record_new(transfer)
    for transfer in transfers[:2]:
        record_move(store, transfer, Status.FAILED, failure_reason=FailureReason.NOT_LOCKED)
    store.open_transfers(1)  # an operator's `stuck --limit 1`
    store.advance_open_set()
    assert {t.request_id for t in transfers[2:]} <= set(_all_open(store))


def test_ping_answers(store: TransferStore) -> None:
    store.ping()
