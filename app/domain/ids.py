"""Snowflake request ids: time-ordered 63-bit integers, unique per worker id."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER_ID = (1 << WORKER_BITS) - 1
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
# What an Idempotency-Key may be, wherever it comes from (an HTTP header, the CLI): one rule, one home.
IDEMPOTENCY_KEY_PATTERN = "[A-Za-z0-9_-]{1,64}"
IDEMPOTENCY_KEY_RULE = "Idempotency-Key must be 1 to 64 characters of [A-Za-z0-9_-]"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN, re.ASCII)


MAX_BLOCK = 1 << SEQUENCE_BITS  # the ids of one worker in one millisecond


class IdGenerator(Protocol):
    """Anything that issues request ids: the services depend on this, not on a class."""

    def next_id(self) -> int: ...

    def next_block(self, count: int) -> int:
        """The first of `count` consecutive ids, all issued to the caller (see `block_ids`)."""
        ...


def block_ids(first: int, count: int) -> range:
    """The ids of a block that starts at `first`: what a batch's id names (itself, then its legs, in order).

    Whoever holds the first id of a block (an Idempotency-Key's claim, say)
    knows every id of it, so a retry that finds the key claimed and nothing
    recorded yet carries on with the very ids the first attempt drew.
    """
    return range(first, first + count)


class IdWindowClosed(Exception):
    """The next id would fall at or past the generator's ceiling (its lease's high-water mark)."""


class SnowflakeGenerator:
    """Issues ids for one worker id, never below `floor_ms` and never at or past `ceiling_ms`.

    The floor and ceiling are what make a leased worker id safe to hand over:
    a holder never issues at or past the mark it wrote into its lease, and the
    next holder starts at that mark, whatever either one's clock says.
    """

    def __init__(
        self,
        worker_id: int,
        clock_ms: Callable[[], int] | None = None,
        *,
        floor_ms: int = EPOCH_MS,
        ceiling_ms: int | None = None,
    ) -> None:
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ValueError(f"worker id must be in 0..{MAX_WORKER_ID}")
        self.worker_id = worker_id
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._floor_ms = floor_ms
        self._ceiling_ms = ceiling_ms
        self._last_ms = -1
        self._sequence = 0

    @property
    def last_ms(self) -> int:
        """The millisecond of the last id issued, -1 before the first."""
        return self._last_ms

    def raise_ceiling(self, ceiling_ms: int) -> None:
        """A renewed lease extends the window; a ceiling is never lowered."""
        with self._lock:
            if self._ceiling_ms is not None:
                self._ceiling_ms = max(self._ceiling_ms, ceiling_ms)

    def next_id(self) -> int:
        return self.next_block(1)

    def next_block(self, count: int) -> int:
        """The first of `count` consecutive ids: one millisecond's sequence numbers, so the block never wraps."""
        if not 0 < count <= MAX_BLOCK:
            raise ValueError(f"a block is 1..{MAX_BLOCK} ids")
        with self._lock:
            # A clock that steps back must never produce an id already issued.
            now = max(self._clock_ms(), self._floor_ms, self._last_ms)
            first = 0
            if now == self._last_ms:
                first = self._sequence + 1
                if first + count > MAX_BLOCK:
                    now, first = self._last_ms + 1, 0
            if self._ceiling_ms is not None and now >= self._ceiling_ms:
                # Checked before any state changes, so a refused draw costs nothing.
                raise IdWindowClosed(f"ms {now} is at or past the ceiling {self._ceiling_ms}")
            self._last_ms, self._sequence = now, first + count - 1
            return ((now - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS)) | (self.worker_id << SEQUENCE_BITS) | first


def timestamp_ms_of(snowflake: int) -> int:
    return (snowflake >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS


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


def parse_canonical_id(text: object) -> int:
    """parse_id, and only in the id's one spelling: "03001" is not 3001."""
    value = parse_id(text)
    if str(value) != text:
        raise ValueError("an id is written without leading zeros")
    return value


def id_field(message: Mapping[str, object], name: str) -> int:
    """A message's id field, only as the canonical decimal string the contracts name.

    A JSON number is refused: a peer whose JSON library goes through doubles
    would turn it into a neighbouring id, and act on a sibling transfer.
    """
    value = message.get(name)
    try:
        return parse_canonical_id(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a decimal string, not {type(value).__name__} ({exc})") from None


def is_idempotency_key(text: object) -> bool:
    # fullmatch, not match with `$`: `$` also matches before a final newline.
    return isinstance(text, str) and _IDEMPOTENCY_KEY.fullmatch(text) is not None
