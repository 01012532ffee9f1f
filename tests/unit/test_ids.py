from __future__ import annotations

import threading

import pytest

from app.domain.ids import IdWindowClosed, SnowflakeGenerator, block_ids, timestamp_ms_of


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


def test_no_id_falls_below_the_floor_whatever_the_clock_says() -> None:
    generator = SnowflakeGenerator(1, clock_ms=lambda: 1_800_000_000_000, floor_ms=1_800_000_060_000)
    ids = [generator.next_id() for _ in range(3)]
    assert [timestamp_ms_of(i) for i in ids] == [1_800_000_060_000] * 3
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_no_id_reaches_the_ceiling_until_it_is_raised() -> None:
    now = [1_800_000_000_000]
    generator = SnowflakeGenerator(1, clock_ms=lambda: now[0], ceiling_ms=1_800_000_000_002)
    first = generator.next_id()
    now[0] = 1_800_000_000_002
    with pytest.raises(IdWindowClosed):
        generator.next_id()
    generator.raise_ceiling(1_800_000_000_001)  # lowering is ignored
    with pytest.raises(IdWindowClosed):
        generator.next_id()
    generator.raise_ceiling(1_800_000_000_010)
    later = generator.next_id()
    assert later > first and timestamp_ms_of(later) == 1_800_000_000_002


def test_sequence_overflow_into_the_ceiling_is_refused_without_losing_state() -> None:
    generator = SnowflakeGenerator(1, clock_ms=lambda: 1_800_000_000_000, ceiling_ms=1_800_000_000_001)
    ids = [generator.next_id() for _ in range(4096)]
    with pytest.raises(IdWindowClosed):
        generator.next_id()
    generator.raise_ceiling(1_800_000_000_005)
    assert generator.next_id() > max(ids)


def test_a_block_is_consecutive_ids_of_one_millisecond_and_never_overlaps_the_next_draw() -> None:
    now = [1_800_000_000_000]
    generator = SnowflakeGenerator(3, clock_ms=lambda: now[0])
    first = generator.next_id()
    block = generator.next_block(51)
    assert block == first + 1
    assert generator.next_id() == block + 51
    # A block that would run past the millisecond's last sequence moves to the next millisecond, whole.
    generator.next_block(4000)
    wrapped = generator.next_block(100)
    assert timestamp_ms_of(wrapped) == now[0] + 1 and timestamp_ms_of(wrapped + 99) == now[0] + 1
    assert list(block_ids(wrapped, 3)) == [wrapped, wrapped + 1, wrapped + 2]
    with pytest.raises(ValueError):
        generator.next_block(0)
