"""Reading a request body: size, media type, and JSON that cannot crash the parser.

The order every API route follows (see app/api/blueprint.py):
1. the declared size (413), before a byte of the body is read;
2. the token (401) and the role (403), before any input is looked at;
3. the media type (415);
4. the JSON itself (400), parsed with bounds.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, request

from app.api.errors import PayloadTooLarge, UnsupportedMediaType
from app.domain.errors import ValidationFailed

# The largest real request (a transfer) is under 400 bytes; 64 KiB leaves
# room for any client's formatting and still bounds what one request can
# make a worker read and hold.
MAX_BODY_BYTES = 64 * 1024

# Real bodies nest two levels ({"from_account": {...}}). The bound is low so
# nothing downstream (marshmallow, logging) ever meets a deep structure, and
# json.loads never approaches Python's recursion limit.
MAX_JSON_DEPTH = 32

# No number in this API needs more than 19 digits (a 63-bit id). Longer ones
# are refused while parsing, so int() never meets Python's 4,300-digit limit.
MAX_JSON_NUMBER_CHARS = 40

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def check_declared_size() -> None:
    """413 from the Content-Length header alone; a chunked body is cut by MAX_CONTENT_LENGTH while read."""
    length = request.content_length
    if length is not None and length >= MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"the body must be under {MAX_BODY_BYTES} bytes", max_bytes=MAX_BODY_BYTES, received_bytes=length
        )


def check_media_type() -> None:
    """A body-carrying request must say it is JSON; silently ignoring the body misled clients."""
    if request.method not in BODY_METHODS:
        return
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            "the body must be JSON, sent with Content-Type: application/json",
            content_type=request.mimetype or None,
        )


def check_read_size(raw: bytes) -> None:
    """413 for a chunked body (no Content-Length) that reached the limit.

    Werkzeug stops reading such a body at MAX_CONTENT_LENGTH and returns what
    it has, truncated, rather than raising; a body that fills the limit is
    taken as one that exceeds it.
    """
    if request.content_length is None and len(raw) >= MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body must be under {MAX_BODY_BYTES} bytes", max_bytes=MAX_BODY_BYTES)


class _TooLong(ValueError):
    pass


def _bounded_int(text: str) -> int:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _TooLong(text)
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _TooLong(text)
    return float(text)


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, though Python's json accepts them.
    raise ValueError(name)


def _depth(value: Any) -> int:
    """How deeply `value` nests, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json_body(raw: bytes) -> Any:
    """The body as JSON, or ValidationFailed (400) for anything malformed, oversized or too deep."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant)
    except _TooLong:
        raise ValidationFailed(
            f"a JSON number must be at most {MAX_JSON_NUMBER_CHARS} characters", code="INVALID_REQUEST"
        ) from None
    except RecursionError:
        raise ValidationFailed(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        # JSONDecodeError is a ValueError; the message names no input, so nothing is echoed.
        raise ValidationFailed("the body is not valid JSON") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValidationFailed(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def install(app: Flask) -> None:
    """The size limit, for every route, before anything else runs."""
    # Werkzeug refuses to read past this (413), which also bounds a chunked body with no Content-Length.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.before_request(check_declared_size)
