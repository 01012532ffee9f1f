"""Ids in URL paths: one rule for the user and the admin routes."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import BaseConverter

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


class TransferIdSegment(BaseConverter):
    """The `{request_id}` segment under `/internal_transfer`: any segment but `batch`.

    `/internal_transfer/batch` is the batch route; were it also read as a
    transfer id, its `Allow` header would name a GET it does not have. Any
    other segment still reaches the route (a bad one is 401 without a token,
    404 with one: `path_id`), as before batches existed.
    """

    regex = r"(?!batch(?:/|$))[^/]+"


def transfer_id_segment_schema(_: Any) -> dict[str, Any]:
    return {"type": "string"}
