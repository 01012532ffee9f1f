"""Ids in URL paths: one rule for the user and the admin routes."""

from __future__ import annotations

from app.domain.errors import NotFound
from app.domain.ids import parse_id


def path_id(text: str, what: str = "transfer") -> int:
    """The id a path names; a segment that is not one (non-numeric, 0, over 2^63-1) names nothing: 404.

    404 rather than 400 because the path, not the input, is wrong: no URL of
    that shape has ever existed, exactly as for an id that was never issued.
    """
    try:
        return parse_id(text)
    except ValueError:
        raise NotFound(f"no such {what}") from None
