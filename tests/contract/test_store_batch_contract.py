"""The TransferStore contract for batches: the batch record, and legs that name their batch."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from app.domain.batch import Batch
from app.domain.transfer import Status, Transfer
from app.ports.store import TransferStore
from tests.conftest import make_transfer, random_request_id, random_user_id, record_move


def a_batch(user_id: int, amounts: list[int]) -> tuple[Batch, list[Transfer]]:
    batch_id = random_request_id()
    legs = [replace(make_transfer(user_id, amount), batch_id=batch_id) for amount in amounts]
    batch = Batch(
        batch_id=batch_id,
        user_id=user_id,
        request_ids=tuple(leg.request_id for leg in legs),
        created_at=datetime.now(UTC).replace(microsecond=0),
        idempotency_key="key-1",
        fingerprint="f" * 64,
    )
    return batch, legs


def test_a_batch_and_its_legs_round_trip(store: TransferStore) -> None:
    user_id = random_user_id()
    batch, legs = a_batch(user_id, [10, 2**64 + 1, 30])
    store.record_batch(batch, legs)
    assert store.get_batch(batch.batch_id) == batch
    found = store.get_many(batch.request_ids)
    assert [found[i] for i in batch.request_ids] == legs
    assert all(found[i].batch_id == batch.batch_id for i in batch.request_ids)
    # Every leg is an ordinary transfer: in history and in the open set.
    history = {t.request_id for t in store.history(user_id, 10).items}
    assert set(batch.request_ids) <= history
    open_ids: set[int] = set()
    after = None
    while True:
        page = store.open_transfers(1000, after=after)
        open_ids.update(t.request_id for t in page.items)
        if page.next_after is None:
            break
        after = page.next_after
    assert set(batch.request_ids) <= open_ids


def test_recording_a_batch_again_keeps_what_its_legs_reached(store: TransferStore) -> None:
    batch, legs = a_batch(random_user_id(), [10, 20])
    store.record_batch(batch, legs)
    record_move(store, legs[0], Status.PENDING)
    store.record_batch(batch, legs)  # an idempotent retry
    assert store.get_batch(batch.batch_id) == batch
    first = store.get(legs[0].request_id)
    assert first is not None and first.status == Status.PENDING


def test_a_single_transfer_names_no_batch_and_an_unknown_batch_is_none(store: TransferStore) -> None:
    transfer = make_transfer(random_user_id(), 5)
    store.record_new(transfer)
    found = store.get(transfer.request_id)
    assert found is not None and found.batch_id is None
    assert store.get_batch(random_request_id()) is None


def test_a_batch_of_fifty_legs_is_recorded_whole(store: TransferStore) -> None:
    user_id = random_user_id()
    batch, legs = a_batch(user_id, [n + 1 for n in range(50)])
    store.record_batch(batch, legs)
    found = store.get_many(batch.request_ids)
    assert [found[i] for i in batch.request_ids] == legs
