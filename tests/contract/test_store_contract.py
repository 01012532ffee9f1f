"""The TransferStore contract, including the races two actors can run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from app.domain.errors import IllegalTransition
from app.domain.transfer import AuditEntry, Status, Transfer
from app.ports.store import IdempotencyClaim, TransferStore
from tests.conftest import make_transfer, random_request_id, random_user_id


def now() -> datetime:
    return datetime.now(UTC)


def test_insert_then_get_round_trips_every_field(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 2**64 + 99)
    assert store.insert(transfer)
    found = store.get(transfer.request_id)
    assert found == transfer
    assert found is not None and found.amount == 2**64 + 99 and found.fingerprint == transfer.fingerprint


def test_insert_of_an_existing_request_id_is_refused(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    assert store.insert(transfer)
    other = make_transfer(random_user_id(), 20, request_id=transfer.request_id)
    assert not store.insert(other)
    assert store.get(transfer.request_id) == transfer


def test_get_of_an_unknown_id_is_none(store: TransferStore) -> None:
    assert store.get(random_request_id()) is None


def test_transition_is_conditional_on_the_stored_status(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.insert(transfer)
    pending = store.transition(transfer, Status.PENDING, actor="api", reason="locked", now=now())
    assert pending is not None and pending.status == Status.PENDING
    # A second actor holding the stale `requesting` copy loses.
    assert store.transition(transfer, Status.PENDING, actor="scanner", reason="late", now=now()) is None
    assert (
        store.transition(
            transfer, Status.FAILED, actor="scanner", reason="late", now=now(), failure_reason="NOT_LOCKED"
        )
        is None
    )
    stored = store.get(transfer.request_id)
    assert stored is not None and stored.status == Status.PENDING


def test_backward_transitions_are_refused(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.insert(transfer)
    pending = store.transition(transfer, Status.PENDING, actor="api", reason="locked", now=now())
    assert pending is not None
    done = store.transition(pending, Status.SUCCESS, actor="settlement", reason="posted", now=now())
    assert done is not None
    with pytest.raises(IllegalTransition):
        store.transition(done, Status.PENDING, actor="operator", reason="undo", now=now())
    stored = store.get(transfer.request_id)
    assert stored is not None and stored.status == Status.SUCCESS


def test_failed_keeps_its_reason(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.insert(transfer)
    store.transition(
        transfer, Status.FAILED, actor="api", reason="no funds", now=now(), failure_reason="INSUFFICIENT_BALANCE"
    )
    stored = store.get(transfer.request_id)
    assert stored is not None and stored.failure_reason == "INSUFFICIENT_BALANCE"


def test_racing_terminal_transitions_apply_exactly_once(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.insert(transfer)
    pending = store.transition(transfer, Status.PENDING, actor="api", reason="locked", now=now())
    assert pending is not None
    racers = 8
    start = threading.Barrier(racers)

    def race(index: int) -> Transfer | None:
        start.wait()
        if index % 2:
            return store.transition(pending, Status.SUCCESS, actor=f"settlement-{index}", reason="posted", now=now())
        return store.transition(
            pending,
            Status.FAILED,
            actor=f"scanner-{index}",
            reason="voided",
            now=now(),
            failure_reason="REJECTED_BY_ENGINE",
        )

    with ThreadPoolExecutor(racers) as pool:
        results = list(pool.map(race, range(racers)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = store.get(transfer.request_id)
    assert stored is not None and stored.status == winners[0].status
    trail = store.audit_trail(transfer.request_id)
    assert [(e.from_status, e.to_status) for e in trail] == [
        (None, Status.REQUESTING),
        (Status.REQUESTING, Status.PENDING),
        (Status.PENDING, winners[0].status),
    ]


def test_audit_trail_says_who_when_and_why(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.insert(transfer)
    store.transition(transfer, Status.PENDING, actor="scanner", reason="lock found in the ledger", now=now())
    trail = store.audit_trail(transfer.request_id)
    assert trail[-1].actor == "scanner"
    assert trail[-1].reason == "lock found in the ledger"
    assert trail[-1].at.tzinfo is not None


def test_actions_without_a_status_change_join_the_trail(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 10)
    store.insert(transfer)
    entry = AuditEntry(
        request_id=transfer.request_id,
        at=now(),
        actor="operator:7",
        from_status=Status.REQUESTING,
        to_status=Status.REQUESTING,
        reason="re-sent to the engine: ticket 42",
    )
    store.append_audit(entry)
    trail = store.audit_trail(transfer.request_id)
    assert len(trail) == 2
    assert (trail[-1].actor, trail[-1].reason) == ("operator:7", "re-sent to the engine: ticket 42")


def test_idempotency_key_is_claimed_once(store: TransferStore) -> None:
    user_id = random_user_id()
    first = IdempotencyClaim(request_id=random_request_id(), fingerprint="a")
    assert store.claim_idempotency_key(user_id, "key-1", first) is None
    second = IdempotencyClaim(request_id=random_request_id(), fingerprint="b")
    assert store.claim_idempotency_key(user_id, "key-1", second) == first
    # Keys are scoped to the user.
    assert store.claim_idempotency_key(random_user_id(), "key-1", second) is None


def test_a_key_moves_only_from_the_id_it_still_names(store: TransferStore) -> None:
    user_id = random_user_id()
    first = IdempotencyClaim(request_id=random_request_id(), fingerprint="f")
    store.claim_idempotency_key(user_id, "k", first)
    second = IdempotencyClaim(request_id=random_request_id(), fingerprint="f")
    assert store.reassign_idempotency_key(user_id, "k", first.request_id, second) is None
    third = IdempotencyClaim(request_id=random_request_id(), fingerprint="f")
    assert store.reassign_idempotency_key(user_id, "k", first.request_id, third) == second
    assert store.claim_idempotency_key(user_id, "k", third) == second


def test_concurrent_claims_of_one_key_have_one_winner(store: TransferStore) -> None:
    user_id = random_user_id()
    claims = [IdempotencyClaim(request_id=random_request_id(), fingerprint="f") for _ in range(10)]
    start = threading.Barrier(len(claims))

    def claim(candidate: IdempotencyClaim) -> IdempotencyClaim | None:
        start.wait()
        return store.claim_idempotency_key(user_id, "same-key", candidate)

    with ThreadPoolExecutor(len(claims)) as pool:
        holders = list(pool.map(claim, claims))
    winners = [c for c, h in zip(claims, holders, strict=True) if h is None]
    assert len(winners) == 1
    assert all(h == winners[0] for h in holders if h is not None)


def _insert_many(store: TransferStore, user_id: int, count: int, asset: str = "USDT") -> list[Transfer]:
    # Distinct, increasing ids so "newest first" has exactly one right answer.
    transfers = [
        make_transfer(user_id, index + 1, asset=asset, request_id=random_request_id()) for index in range(count)
    ]
    for transfer in transfers:
        assert store.insert(transfer)
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
        store.transition(
            transfer, Status.FAILED, actor="api", reason="x", now=now(), failure_reason="INSUFFICIENT_BALANCE"
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
            store.insert(make_transfer(user_id, 1, request_id=request_id))

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


def test_open_transfers_lists_requesting_and_pending_only(store: TransferStore) -> None:
    user_id = random_user_id()
    requesting, pending, done = (make_transfer(user_id, n) for n in (1, 2, 3))
    for transfer in (requesting, pending, done):
        store.insert(transfer)
    store.transition(pending, Status.PENDING, actor="api", reason="locked", now=now())
    store.transition(done, Status.FAILED, actor="api", reason="x", now=now(), failure_reason="INSUFFICIENT_BALANCE")
    open_ids = {t.request_id for t in store.open_transfers(100_000)}
    assert requesting.request_id in open_ids
    assert pending.request_id in open_ids
    assert done.request_id not in open_ids


def test_open_transfers_page_with_after_and_survive_settlement(store: TransferStore) -> None:
    user_id = random_user_id()
    transfers = [make_transfer(user_id, n + 1) for n in range(6)]
    for transfer in transfers:
        store.insert(transfer)
    for transfer in transfers[:3]:
        store.transition(transfer, Status.FAILED, actor="api", reason="x", now=now(), failure_reason="NOT_LOCKED")
    store.open_transfers(100_000)  # a scan that meets the settled rows
    late = make_transfer(user_id, 99)
    store.insert(late)
    mine = {t.request_id for t in transfers[3:]} | {late.request_id}
    seen: list[int] = []
    after = transfers[0].request_id - 1
    while True:
        page = [t.request_id for t in store.open_transfers(2, after=after)]
        seen.extend(page)
        if len(page) < 2:
            break
        after = page[-1]
    assert [r for r in seen if r in mine] == sorted(mine)
    assert len(seen) == len(set(seen))


def test_ping_answers(store: TransferStore) -> None:
    store.ping()
