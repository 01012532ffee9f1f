"""The status event stream on the embedded adapters: what is published, when, and that nothing is lost."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.adapters.inprocess_bus import InProcessServiceBus
from app.bootstrap import build
from app.config import Settings
from app.domain.errors import InsufficientBalance
from app.domain.events import EventKind, StatusEvent
from app.domain.transfer import AccountType, FailureReason, Status, Transfer, TransferCommand
from app.services.events import EventDispatcher, EventRelay
from app.services.operations import OperatorService
from app.services.recovery import RecoveryPolicy
from tests.conftest import TEST_JWT_SECRET, TEST_OPERATOR_JWT_SECRET
from tests.unit.harness import Harness

UNIT = 10**8


class Subscriber:
    """An in-process consumer of the events; can be told to fail (a broker that refuses)."""

    def __init__(self) -> None:
        self.events: list[StatusEvent] = []
        self.failing = False
        self.lock = threading.Lock()

    def __call__(self, event: StatusEvent) -> None:
        if self.failing:
            raise ConnectionError("events topic unavailable")
        with self.lock:
            self.events.append(event)

    def of(self, request_id: int) -> list[tuple[str, str | None, str]]:
        with self.lock:
            return [
                (e.kind.value, e.from_status.value if e.from_status else None, e.to_status.value)
                for e in self.events
                if e.request_id == request_id
            ]


@pytest.fixture
def subscriber(harness: Harness) -> Iterator[Subscriber]:
    subscriber = Subscriber()
    harness.bus.subscribe_events(subscriber)
    harness.store.outbox_listener = EventDispatcher(harness.store, harness.bus, background=False)
    yield subscriber


def _relay(harness: Harness, grace_seconds: float = 10, ahead_seconds: float = 0) -> EventRelay:
    # The SQLite outbox stamps rows with the real clock; the relay's grace is measured on it.
    return EventRelay(
        harness.store,
        harness.bus,
        lambda: datetime.now(UTC) + timedelta(seconds=ahead_seconds),
        timedelta(seconds=grace_seconds),
    )


def _pending(harness: Harness, user_id: int, units: int = UNIT) -> int:
    harness.fund(user_id)
    return harness.submit.transfer(harness.command(user_id, units)).transfer.request_id


def test_every_status_change_of_a_settled_transfer_is_published_in_order(
    harness: Harness, subscriber: Subscriber
) -> None:
    request_id = _pending(harness, 1, 40 * UNIT)
    harness.pump()
    assert subscriber.of(request_id) == [
        ("status_changed", None, "requesting"),
        ("status_changed", "requesting", "pending"),
        ("status_changed", "pending", "success"),
    ]
    success = subscriber.events[-1]
    assert (success.user_id, success.asset, success.amount, success.actor) == (1, "USDT", 40 * UNIT, "settlement")
    assert (success.from_account_type, success.to_account_type) == ("funding", "spot")
    assert success.reason == "confirmed by the engine" and success.failure_reason is None
    # Published and flagged: the relay finds nothing left, however late it runs.
    assert _relay(harness, grace_seconds=0, ahead_seconds=60).run_once() == 0


def test_a_refused_lock_publishes_failed_with_its_reason(harness: Harness, subscriber: Subscriber) -> None:
    with pytest.raises(InsufficientBalance) as refused:
        harness.submit.transfer(harness.command(2, UNIT))
    request_id = int(refused.value.details["request_id"])
    assert subscriber.of(request_id) == [
        ("status_changed", None, "requesting"),
        ("status_changed", "requesting", "failed"),
    ]
    assert subscriber.events[-1].failure_reason == FailureReason.INSUFFICIENT_BALANCE
    assert subscriber.events[-1].actor == "api"


def test_an_operator_void_and_a_resend_are_published(harness: Harness, subscriber: Subscriber) -> None:
    operations = OperatorService(harness.deps, harness.settle)
    resent = _pending(harness, 3)
    operations.resend(resent, "carol", "engine restarted")
    voided = _pending(harness, 4)
    operations.void(voided, "alice", "customer asked")
    assert subscriber.of(resent)[-1] == ("operator_action", "pending", "pending")
    assert subscriber.events[-1].actor == "operator:alice"
    assert subscriber.of(voided)[-1] == ("status_changed", "pending", "failed")
    assert subscriber.events[-1].failure_reason == FailureReason.VOIDED_BY_OPERATOR
    resend = next(e for e in subscriber.events if e.kind == EventKind.OPERATOR_ACTION)
    assert resend.actor == "operator:carol" and "engine restarted" in resend.reason


def test_stuck_warnings_are_published_once_per_level(harness: Harness, subscriber: Subscriber) -> None:
    harness.recovery.policy = RecoveryPolicy(resend_after=timedelta(days=1))
    request_id = _pending(harness, 5)
    harness.clock.advance(minutes=29)
    harness.recovery.scan()
    assert [k for k, _, _ in subscriber.of(request_id)].count("stuck_warning") == 0
    harness.clock.advance(minutes=2)
    harness.recovery.scan()
    harness.recovery.scan()
    harness.clock.advance(hours=2)
    harness.recovery.scan()
    harness.recovery.scan()
    kinds = [k for k, _, _ in subscriber.of(request_id)]
    assert kinds.count("stuck_warning") == 1 and kinds.count("stuck_critical") == 1
    warning = next(e for e in subscriber.events if e.kind == EventKind.STUCK_WARNING)
    assert (warning.from_status, warning.to_status, warning.actor) == (Status.PENDING, Status.PENDING, "scanner")


def test_the_scanners_repairs_are_published(harness: Harness, subscriber: Subscriber) -> None:
    harness.recovery.policy = RecoveryPolicy(requesting_grace=timedelta(seconds=30))
    transfer = Transfer.new(harness.deps.ids.next_id(), harness.command(6, UNIT), harness.clock())
    harness.store.record_new(transfer)  # ... and the web process died before locking
    harness.clock.advance(minutes=1)
    assert harness.recovery.scan()["failed_not_locked"] == 1
    assert subscriber.of(transfer.request_id)[-1] == ("status_changed", "requesting", "failed")
    assert subscriber.events[-1].actor == "scanner"
    assert subscriber.events[-1].failure_reason == FailureReason.NOT_LOCKED


def test_an_event_whose_publish_failed_is_relayed_after_the_grace(harness: Harness, subscriber: Subscriber) -> None:
    subscriber.failing = True
    request_id = _pending(harness, 7)  # the writes succeed: the events wait in the outbox
    harness.pump()
    assert harness.reload(harness.store.get(request_id)).status == Status.SUCCESS  # type: ignore[arg-type]
    subscriber.failing = False
    assert subscriber.of(request_id) == []
    # Still the dispatcher's to send within the grace: the relay leaves them.
    assert _relay(harness, grace_seconds=10).run_once() == 0
    assert _relay(harness, grace_seconds=10, ahead_seconds=11).run_once() == 3
    assert [to for _, _, to in subscriber.of(request_id)] == ["requesting", "pending", "success"]
    assert _relay(harness, grace_seconds=10, ahead_seconds=11).run_once() == 0  # flagged: sent once by the relay


def test_the_background_dispatcher_publishes_off_the_callers_thread(harness: Harness) -> None:
    subscriber = Subscriber()
    callers = []
    harness.bus.subscribe_events(lambda event: callers.append(threading.current_thread().name))
    harness.bus.subscribe_events(subscriber)
    dispatcher = EventDispatcher(harness.store, harness.bus)
    harness.store.outbox_listener = dispatcher
    request_id = _pending(harness, 8)
    # A clean shutdown waits (bounded) for what is queued.
    assert dispatcher.flush(timeout_seconds=10)
    assert [to for _, _, to in subscriber.of(request_id)] == ["requesting", "pending"]
    assert set(callers) == {"event-dispatcher"}


def test_the_wire_form_round_trips_and_keeps_big_numbers_exact(harness: Harness, subscriber: Subscriber) -> None:
    request_id = _pending(harness, 9, 12_345)
    event = subscriber.events[-1]
    message = json.loads(json.dumps(event.to_message()))
    assert message["schema_version"] == 1
    assert message["request_id"] == str(request_id) and message["user_id"] == "9" and message["amount"] == "12345"
    assert message["at"].endswith("Z") and message["kind"] == "status_changed"
    assert StatusEvent.from_message(message) == event
    assert StatusEvent.from_message(message).event_id == message["event_id"]
    big = {**message, "amount": str(2**70)}
    assert StatusEvent.from_message(big).amount == 2**70
    broken_ones = ({**message, "request_id": request_id}, {**message, "schema_version": 2}, {**message, "amount": "-1"})
    for broken in broken_ones:
        with pytest.raises(ValueError):
            StatusEvent.from_message(broken)


def test_event_ids_name_what_happened(harness: Harness, subscriber: Subscriber) -> None:
    _pending(harness, 10)
    requesting, pending = subscriber.events[-2:]
    assert requesting.event_id != pending.event_id
    # The same event told twice (a retried write) has the same id: consumers can dedupe exactly.
    assert StatusEvent.from_message(pending.to_message()).event_id == pending.event_id
    assert pending.dedupe_key == (pending.request_id, "status_changed", "pending", "")


def test_a_transfer_between_spot_and_funding_says_so(harness: Harness, subscriber: Subscriber) -> None:
    harness.fund(11)
    harness.submit.transfer(harness.command(11, UNIT))
    harness.pump()
    back = harness.submit.transfer(harness.command(11, UNIT, from_type=AccountType.SPOT)).transfer
    event = subscriber.events[-1]
    assert event.request_id == back.request_id
    assert (event.from_account_type, event.to_account_type) == ("spot", "funding")


def test_embedded_mode_wires_the_stream_to_in_process_subscribers(tmp_path: Path) -> None:
    settings = Settings(
        store_url=f"sqlite:///{tmp_path}/store.db",
        ledger_url=f"embedded:///{tmp_path}/ledger.db",
        bus_url="inprocess://",
        jwt_secret=TEST_JWT_SECRET,
        operator_jwt_secret=TEST_OPERATOR_JWT_SECRET,
    )
    container = build(settings)
    try:
        assert isinstance(container.bus, InProcessServiceBus) and container.events_relay is not None
        subscriber = Subscriber()
        container.bus.subscribe_events(subscriber)
        command = TransferCommand(
            user_id=12, asset="USDT", from_type=AccountType.FUNDING, to_type=AccountType.SPOT, amount=1
        )
        with pytest.raises(InsufficientBalance) as refused:
            container.submit.transfer(command)
        request_id = int(refused.value.details["request_id"])
        deadline = time.monotonic() + 10
        while len(subscriber.of(request_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [to for _, _, to in subscriber.of(request_id)] == ["requesting", "failed"]
    finally:
        container.close()
