"""Opaque history cursors: the last request id a page returned."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from app.domain.errors import ValidationFailed
from app.domain.ids import parse_id
from app.domain.transfer import Transfer


def encode_cursor(request_id: int) -> str:
    return base64.urlsafe_b64encode(str(request_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return parse_id(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor is not one this service issued") from exc


# Index rows one history page may read. A filtered page that finds fewer
# matches than it asked for in this many rows answers with what it found and
# a cursor to read on: a page's work is bounded whatever the history holds.
HISTORY_SCAN_BUDGET = 200


def rows_to_read(limit: int, filtered: bool) -> int:
    """How many of the user's newest rows (below the cursor) a page reads: what it needs, within the budget."""
    return HISTORY_SCAN_BUDGET if filtered else min(limit + 1, HISTORY_SCAN_BUDGET)


def page_of(
    matches: Sequence[Transfer], limit: int, read: Sequence[int], asked: int
) -> tuple[list[Transfer], str | None]:
    """A page from the rows a store read (their ids, newest first) and those of them that matched.

    The cursor continues after the last match shown when there are more
    matches than the page holds; else after the last row read when the read
    was cut short by its size (more history lies beyond); else there is none.
    """
    page = list(matches[:limit])
    if len(matches) > limit:
        return page, encode_cursor(page[-1].request_id)
    if len(read) >= asked:
        return page, encode_cursor(read[-1])
    return page, None
