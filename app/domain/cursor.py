"""Opaque history cursors: the last request id a page returned."""

from __future__ import annotations

import base64

from app.domain.errors import ValidationFailed
from app.domain.ids import parse_id


def encode_cursor(request_id: int) -> str:
    return base64.urlsafe_b64encode(str(request_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return parse_id(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor is not one this service issued") from exc
