from __future__ import annotations

import threading

import pytest

from app.domain.ids import MAX_WORKER_ID, SnowflakeGenerator, process_worker_id, timestamp_ms_of


def test_ids_are_unique_and_increasing_across_threads() -> None:
    generator = SnowflakeGenerator(7)
    found: list[list[int]] = []

    def draw() -> None:
        found.append([generator.next_id() for _ in range(5000)])

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for chunk in found for i in chunk]
    assert len(set(every)) == len(every)
    assert all(chunk == sorted(chunk) for chunk in found)
    assert all(0 < i < 2**63 for i in every)


def test_a_clock_that_steps_back_never_repeats_an_id() -> None:
    times = iter([1_800_000_000_000, 1_800_000_000_000, 1_799_999_999_000, 1_799_999_999_000])
    generator = SnowflakeGenerator(1, clock_ms=lambda: next(times))
    ids = [generator.next_id() for _ in range(4)]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_sequence_overflow_moves_to_the_next_millisecond() -> None:
    generator = SnowflakeGenerator(1, clock_ms=lambda: 1_800_000_000_000)
    ids = [generator.next_id() for _ in range(4097)]
    assert len(set(ids)) == 4097
    assert timestamp_ms_of(ids[-1]) == 1_800_000_000_001


def test_different_workers_never_collide() -> None:
    clock = lambda: 1_800_000_000_000  # noqa: E731
    a, b = SnowflakeGenerator(1, clock), SnowflakeGenerator(2, clock)
    assert {a.next_id() for _ in range(100)}.isdisjoint({b.next_id() for _ in range(100)})


def test_worker_id_can_be_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNOWFLAKE_WORKER_ID", "42")
    assert process_worker_id() == 42
    monkeypatch.delenv("SNOWFLAKE_WORKER_ID")
    assert 0 <= process_worker_id() <= MAX_WORKER_ID
