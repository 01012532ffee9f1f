"""The event outbox, on both stores: an event is kept with the write it tells of, and found until flagged."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.adapters.cassandra_events import EVENT_BUCKET_SECONDS
from app.adapters.cassandra_store import CassandraTransferStore
from app.adapters.sqlite_store import SqliteTransferStore
from app.domain.events import EventKind, StatusEvent
from app.domain.transfer import API, SETTLEMENT, AuditActor, AuditEntry, Status
from app.ports.store import OutboxEntry, TransferStore
from tests.conftest import make_transfer, random_user_id, record_move
from tests.support.cassandra_fixtures import store_in_fresh_keyspace

MARGIN_SECONDS = 2


@dataclass
class MovableClock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Outbox:
    store: TransferStore
    clock: MovableClock | None
    heard: list[OutboxEntry] = field(default_factory=list)

    def listen(self, entries: Sequence[OutboxEntry]) -> None:
        self.heard.extend(entries)

    def age(self) -> None:
        """Let time pass so that everything written so far is the relay's to find."""
        if self.clock is not None:
            self.clock.now += timedelta(seconds=EVENT_BUCKET_SECONDS + MARGIN_SECONDS + 1)

    def unpublished(self, grace: timedelta = timedelta(0)) -> list[OutboxEntry]:
        now = self.clock() if self.clock is not None else datetime.now(UTC)
        return self.store.unpublished_events(1000, now - grace + timedelta(seconds=1))


@pytest.fixture(params=["sqlite", "cassandra"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outbox]:
    # A keyspace of its own: the relay's position and rows are the test's alone.
    if request.param == "sqlite":
        store = SqliteTransferStore(str(tmp_path / "store.db"))
        kit = Outbox(store, None)
        store.outbox_listener = kit.listen
        yield kit
        store.close()
        return
    clock = MovableClock()
    with store_in_fresh_keyspace("it_events", clock) as cassandra:
        assert isinstance(cassandra, CassandraTransferStore)
        cassandra.outbox.margin = timedelta(seconds=MARGIN_SECONDS)
        kit = Outbox(cassandra, clock)
        cassandra.outbox_listener = kit.listen
        yield kit


def _changes(entries: Sequence[OutboxEntry]) -> list[tuple[str | None, str]]:
    return [(e.event.from_status.value if e.event.from_status else None, e.event.to_status.value) for e in entries]


def test_every_status_write_keeps_its_event_and_says_so_once_durable(outbox: Outbox) -> None:
    store = outbox.store
    transfer = make_transfer(random_user_id(), 2**70)
    store.record_new(transfer)
    pending = record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
    record_move(store, pending, Status.SUCCESS, actor=SETTLEMENT, reason="posted")
    expected = [(None, "requesting"), ("requesting", "pending"), ("pending", "success")]
    assert _changes(outbox.heard) == expected
    assert outbox.heard[-1].event.amount == 2**70 and outbox.heard[-1].event.actor == "settlement"
    outbox.age()
    found = [e for e in outbox.unpublished() if e.event.request_id == transfer.request_id]
    assert _changes(found) == expected
    assert [e.event for e in found] == [e.event for e in outbox.heard]


def test_flagged_events_are_not_found_again(outbox: Outbox) -> None:
    store = outbox.store
    transfer = make_transfer(random_user_id(), 5)
    store.record_new(transfer)
    record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
    store.mark_events_published(outbox.heard[:1])
    outbox.age()
    found = [e for e in outbox.unpublished() if e.event.request_id == transfer.request_id]
    assert _changes(found) == [("requesting", "pending")]
    store.mark_events_published(found)
    assert [e for e in outbox.unpublished() if e.event.request_id == transfer.request_id] == []


def test_young_events_are_left_to_the_inline_publish(outbox: Outbox) -> None:
    transfer = make_transfer(random_user_id(), 5)
    outbox.store.record_new(transfer)
    held_back = outbox.unpublished(grace=timedelta(seconds=30))
    assert [e for e in held_back if e.event.request_id == transfer.request_id] == []


def test_actions_without_a_status_change_join_the_outbox(outbox: Outbox) -> None:
    store = outbox.store
    transfer = make_transfer(random_user_id(), 5)
    store.record_new(transfer)
    pending = record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
    carol, now = AuditActor.operator("carol"), datetime.now(UTC)
    resend = StatusEvent.about(EventKind.OPERATOR_ACTION, pending, carol, "re-sent", now)
    store.append_audit(AuditEntry(pending.request_id, now, carol, Status.PENDING, Status.PENDING, "re-sent"), resend)
    warning = StatusEvent.about(EventKind.STUCK_WARNING, pending, API, "pending for over 30 minutes", now)
    store.record_events([warning])
    assert [e.event for e in outbox.heard[-2:]] == [resend, warning]
    assert any(e.reason == "re-sent" for e in store.audit_trail(pending.request_id))
    outbox.age()
    kinds = {e.event.kind for e in outbox.unpublished() if e.event.request_id == transfer.request_id}
    assert kinds == {EventKind.STATUS_CHANGED, EventKind.OPERATOR_ACTION, EventKind.STUCK_WARNING}


def test_cassandra_files_again_an_event_acknowledged_too_late_for_its_bucket() -> None:
    clock = MovableClock()
    with store_in_fresh_keyspace("it_events", clock) as store:
        store.outbox.margin = timedelta(seconds=MARGIN_SECONDS)
        transfer = make_transfer(random_user_id(), 5)
        event = StatusEvent.status_changed(None, transfer, API, "accepted")
        statements, entries = store.outbox.filing([event])
        # The writer stalls before its write lands; meanwhile the bucket closes and the relay passes it.
        clock.now += timedelta(seconds=EVENT_BUCKET_SECONDS + MARGIN_SECONDS + 1)
        assert store.unpublished_events(1000, clock.now) == []
        store.db.run_together(statements)
        assert store.unpublished_events(1000, clock.now) == []  # behind the relay: found by nobody ...
        refiled = store.outbox.confirm_filed(entries)  # ... until the writer's own check files it again
        assert refiled[0].slot != entries[0].slot
        clock.now += timedelta(seconds=EVENT_BUCKET_SECONDS + MARGIN_SECONDS + 1)
        assert [e.event for e in store.unpublished_events(1000, clock.now)] == [event]


def test_cassandra_keeps_the_event_of_a_status_that_landed_from_a_write_reported_failed() -> None:
    clock = MovableClock()
    with store_in_fresh_keyspace("it_events", clock) as store:
        store.outbox.margin = timedelta(seconds=MARGIN_SECONDS)
        transfer = make_transfer(random_user_id(), 5)
        store.record_new(transfer)
        send = store.db.start_each_as_one

        def partial(groups: Sequence[Sequence[tuple[str, tuple[object, ...]]]]) -> Callable[[], None]:
            # Inside Cassandra the status landed, the event's row did not, and the writer got an error.
            store.db.start_each_as_one = send  # type: ignore[method-assign]  # only this one write fails
            send([[s for s in group if "event_outbox" not in s[0]] for group in groups])()

            def failed() -> None:
                raise TimeoutError("coordinator timed out")

            return failed

        store.db.start_each_as_one = partial  # type: ignore[method-assign]
        with pytest.raises(TimeoutError):
            record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
        stored = store.get(transfer.request_id)
        assert stored is not None and stored.status == Status.PENDING
        clock.now += timedelta(seconds=EVENT_BUCKET_SECONDS + MARGIN_SECONDS + 1)
        found = [e.event for e in store.unpublished_events(1000, clock.now)]
        assert [(e.from_status, e.to_status) for e in found] == [
            (None, Status.REQUESTING),
            (Status.REQUESTING, Status.PENDING),
        ]


def test_cassandra_keeps_the_event_of_a_failed_write_that_outlasted_its_bucket() -> None:
    """The write reported failed only after its bucket closed and the relay moved past it.

    Its event's row is written again before the error goes up; written into
    the bucket the write started in, the relay would never read it.
    """
    clock = MovableClock()
    with store_in_fresh_keyspace("it_events", clock) as store:
        store.outbox.margin = timedelta(seconds=MARGIN_SECONDS)
        transfer = make_transfer(random_user_id(), 5)
        store.record_new(transfer)
        send = store.db.start_each_as_one

        def slow_and_partial(groups: Sequence[Sequence[tuple[str, tuple[object, ...]]]]) -> Callable[[], None]:
            store.db.start_each_as_one = send  # type: ignore[method-assign]  # only this one write fails
            # Inside Cassandra the status landed, the event's row did not ...
            send([[s for s in group if "event_outbox" not in s[0]] for group in groups])()

            def failed() -> None:
                # ... and the error came late: the bucket closed, and the relay
                # published what it held and moved its position past it.
                clock.now += timedelta(seconds=EVENT_BUCKET_SECONDS + MARGIN_SECONDS + 1)
                relayed = store.unpublished_events(1000, clock.now)
                assert [e.event.to_status for e in relayed] == [Status.REQUESTING]
                store.mark_events_published(relayed)
                assert store.unpublished_events(1000, clock.now) == []
                raise TimeoutError("coordinator timed out")

            return failed

        store.db.start_each_as_one = slow_and_partial  # type: ignore[method-assign]
        with pytest.raises(TimeoutError):
            record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
        stored = store.get(transfer.request_id)
        assert stored is not None and stored.status == Status.PENDING
        clock.now += timedelta(seconds=EVENT_BUCKET_SECONDS + MARGIN_SECONDS + 1)
        found = [e.event for e in store.unpublished_events(1000, clock.now)]
        assert [(e.from_status, e.to_status) for e in found] == [(Status.REQUESTING, Status.PENDING)]


def test_flagging_many_events_flags_each_of_them(outbox: Outbox) -> None:
    store = outbox.store
    transfers = [make_transfer(random_user_id(), 5) for _ in range(40)]
    for transfer in transfers:
        store.record_new(transfer)
        record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
    store.mark_events_published(outbox.heard)
    outbox.age()
    ours = {t.request_id for t in transfers}
    assert [e for e in outbox.unpublished() if e.event.request_id in ours] == []


def test_cassandra_flags_published_events_with_one_request_per_partition() -> None:
    # Each flag was a request of its own; a transfer's events share their partition.
    clock = MovableClock()
    with store_in_fresh_keyspace("it_events", clock) as store:
        assert isinstance(store, CassandraTransferStore)
        heard: list[OutboxEntry] = []
        store.outbox_listener = heard.extend
        for _ in range(30):
            transfer = make_transfer(random_user_id(), 5)
            store.record_new(transfer)
            record_move(store, transfer, Status.PENDING, actor=API, reason="locked")
        requests: list[object] = []
        store.db.connect().add_request_init_listener(requests.append)
        try:
            store.mark_events_published(heard)
        finally:
            store.db.connect().remove_request_init_listener(requests.append)
        assert len(heard) == 60
        assert len(requests) <= len({entry.slot for entry in heard}) <= 16
