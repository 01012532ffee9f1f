"""The batch delivery rules both buses share, on cases a real broker makes hard to stage."""

from __future__ import annotations

from collections.abc import Sequence

from app.adapters.bus_delivery import BatchDelivery, DeliveryPolicy, Polled

P = "p0"


class Letters:
    def __init__(self, working: bool = True) -> None:
        self.working = working
        self.sent: list[tuple[int, str, int]] = []

    def __call__(self, record: Polled[str, str], kind: str, error: str, attempts: int) -> bool:
        if self.working:
            self.sent.append((record.offset, kind, attempts))
        return self.working


def polled(*messages: str | None) -> dict[str, list[Polled[str, str]]]:
    return {P: [Polled(P, offset, m, None if m else "bad JSON") for offset, m in enumerate(messages)]}


def running() -> bool:
    return True


def test_a_malformed_record_between_good_ones_is_dead_lettered_and_committed_with_the_batch() -> None:
    batches: list[Sequence[str]] = []
    letters = Letters()
    delivery = BatchDelivery(batches.append, DeliveryPolicy(), letters, "t")
    outcome = delivery.deliver(polled("a", None, "b", None), running)[P]
    assert batches == [["a", "b"]]
    assert letters.sent == [(1, "malformed", 0), (3, "malformed", 0)]
    assert (outcome.commit_up_to, outcome.retry_from) == (4, None)


def test_when_the_dlq_is_down_the_partition_stops_at_the_malformed_record_and_letters_it_once() -> None:
    batches: list[Sequence[str]] = []
    letters = Letters(working=False)
    delivery = BatchDelivery(batches.append, DeliveryPolicy(), letters, "t")
    outcome = delivery.deliver(polled("a", None, "b"), running)[P]
    assert batches == [["a"]]  # nothing past the record that could not be dealt with
    assert (outcome.commit_up_to, outcome.retry_from) == (1, 1)
    letters.working = True
    outcome = delivery.deliver({P: polled("a", None, "b")[P][1:]}, running)[P]
    assert letters.sent == [(1, "malformed", 0)]
    assert (outcome.commit_up_to, outcome.retry_from) == (3, None)


def test_the_count_of_a_failing_message_starts_afresh_on_a_partition_owned_again() -> None:
    def failing(batch: Sequence[str]) -> None:
        raise ValueError("no")

    delivery = BatchDelivery(failing, DeliveryPolicy(max_attempts=5), Letters(), "t")
    delivery.deliver(polled("a"), running)
    delivery.deliver(polled("a"), running)
    assert delivery.attempts(P) == 2
    delivery.retain({"another partition"})
    assert delivery.attempts(P) == 0
