"""Snowflake request ids: time-ordered 63-bit integers, unique per worker id."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Callable

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER_ID = (1 << WORKER_BITS) - 1
_SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)


class SnowflakeGenerator:
    def __init__(self, worker_id: int, clock_ms: Callable[[], int] | None = None) -> None:
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ValueError(f"worker id must be in 0..{MAX_WORKER_ID}")
        self.worker_id = worker_id
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = 0

    def next_id(self) -> int:
        with self._lock:
            now = self._clock_ms()
            # A clock that steps back must never produce an id already issued.
            now = max(now, self._last_ms)
            if now == self._last_ms:
                self._sequence = (self._sequence + 1) & _SEQUENCE_MASK
                if self._sequence == 0:
                    now = self._last_ms + 1
            else:
                self._sequence = 0
            self._last_ms = now
            return (
                ((now - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS)) | (self.worker_id << SEQUENCE_BITS) | self._sequence
            )


def timestamp_ms_of(snowflake: int) -> int:
    return (snowflake >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS


def process_worker_id() -> int:
    """A worker id for this process.

    `SNOWFLAKE_WORKER_ID` pins it when a deployment allocates them. Otherwise
    the pid is mixed with randomness; the store's insert-if-absent catches the
    rare clash and the service draws a new id, so uniqueness never rests on luck.
    """
    configured = os.environ.get("SNOWFLAKE_WORKER_ID")
    if configured:
        return int(configured)
    return (os.getpid() ^ secrets.randbits(WORKER_BITS)) & MAX_WORKER_ID


def first_id_at(timestamp_ms: int) -> int:
    """The smallest Snowflake any worker can issue at this millisecond."""
    return max(timestamp_ms - EPOCH_MS, 0) << (WORKER_BITS + SEQUENCE_BITS)


MAX_ID = 2**63 - 1  # what every store column (bigint) can hold


def parse_id(text: object) -> int:
    """A positive 63-bit id from its decimal string; ValueError otherwise."""
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise ValueError("an id is a decimal string of 1 to 19 digits")
    value = int(text)
    if not 0 < value <= MAX_ID:
        raise ValueError("an id is between 1 and 2^63-1")
    return value
