"""What every API route does with its request before its view runs, and what its view reads.

One module, so a request's way in is read in one place: the guard, the
bounded JSON body, the Idempotency-Key header, and the composition root
it is served from; and, around every request, its trace id (the caller's
X-Request-Id when it is safe, else a fresh one, bound in the log context
and echoed in the response) and its latency, labelled by route template,
never by the path, so ids in URLs cannot multiply the series. The order
every API route follows (app/api/blueprint.py
installs the guard):
1. the declared size (413), before a byte of the body is read;
2. the token (401) and the role (403), before any input is looked at;
3. the media type (415);
4. the JSON itself (400), parsed with bounds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, request
from marshmallow import missing
from webargs.flaskparser import FlaskParser

from app.api.auth import OPERATOR_ROLE, USER_ROLE, authorize
from app.api.errors import PayloadTooLarge, UnsupportedMediaType
from app.bootstrap import Container
from app.domain.errors import ValidationFailed
from app.domain.ids import IDEMPOTENCY_KEY_RULE, is_idempotency_key
from app.observability.context import request_id_var, trace_id_from_header, trace_id_var
from app.observability.metrics import HTTP_REQUEST_SECONDS, exposition

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


def container() -> Container:
    """The composition root serving this request."""
    found: Container = current_app.extensions["internal_transfer"]
    return found


def guard(public: frozenset[str], operator_only: bool) -> Callable[[], None]:
    """A blueprint's before_request: the token and its role, unless the endpoint is public; then the media type."""

    def check() -> None:
        if request.endpoint not in public:
            authorize(OPERATOR_ROLE if operator_only else USER_ROLE)
        check_media_type()

    return check


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not is_idempotency_key(key):
        raise ValidationFailed(IDEMPOTENCY_KEY_RULE)
    return key


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


class BoundedJsonParser(FlaskParser):
    """webargs' parser, with the bounded JSON reader above instead of json.loads."""

    # The API answers validation errors 400 (never webargs' default 422), and the spec says so.
    DEFAULT_VALIDATION_STATUS = 400

    def load_json(self, req: Any, schema: Any) -> Any:
        raw = req.get_data(cache=True)
        check_read_size(raw)
        if not raw:
            return missing  # marshmallow then names the required fields
        return parse_json_body(raw)


def install(app: Flask) -> None:
    """The size limit, for every route, before anything else runs; a Retry-After of at least 1 after everything."""
    # Werkzeug refuses to read past this (413), which also bounds a chunked body with no Content-Length.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.before_request(check_declared_size)
    # Registered first, so it runs last (Flask runs after_request hooks in reverse order).
    app.after_request(retry_after_at_least_one)


def retry_after_at_least_one(response: Response) -> Response:
    """Flask-Limiter rewrites a 429's Retry-After rounded down: within a second of the window's end it said 0."""
    if response.status_code == 429 and int(response.headers.get("Retry-After", "1")) < 1:
        response.headers["Retry-After"] = "1"
    return response


TRACE_HEADER = "X-Request-Id"


def install_trace_and_metrics(app: Flask, *, metrics_on_web: bool, multiproc_dir: str | None) -> None:
    """Trace ids and request metrics on every request; GET /metrics unless `metrics_on_web` is False.

    Without it only the gunicorn master's WEB_METRICS_PORT serves them.
    """

    @app.before_request
    def _begin() -> None:
        g.started = time.perf_counter()
        trace_id = trace_id_from_header(request.headers.get(TRACE_HEADER))
        g.trace_id = trace_id
        g.trace_token = trace_id_var.set(trace_id)
        g.request_token = request_id_var.set(None)

    routed_methods: set[str] = set()

    @app.after_request
    def _end(response: Response) -> Response:
        trace_id = g.get("trace_id")
        if trace_id is not None:
            response.headers[TRACE_HEADER] = trace_id
        started = g.get("started")
        if started is not None:
            if not routed_methods:
                # Read once routing is complete; gunicorn accepts any 3-20 letter
                # method, and each raw one would be new series in every worker.
                routed_methods.update(m for rule in app.url_map.iter_rules() for m in rule.methods or ())
            rule = request.url_rule
            HTTP_REQUEST_SECONDS.labels(
                method=request.method if request.method in routed_methods else "OTHER",
                route=rule.rule if rule is not None else "unmatched",
                status=str(response.status_code),
            ).observe(time.perf_counter() - started)
        return response

    @app.teardown_request
    def _forget(_exc: BaseException | None) -> None:
        # gthread reuses threads: nothing of this request may leak into the next.
        for name, var in (("request_token", request_id_var), ("trace_token", trace_id_var)):
            token = g.pop(name, None)
            if token is not None:
                var.reset(token)

    if metrics_on_web:
        # No user token: only where a deployment asks for it (METRICS_ON_WEB=1);
        # by default the master's WEB_METRICS_PORT serves them (docs/runbook.md).
        def _metrics() -> Response:
            body, content_type = exposition(multiproc_dir)
            return Response(body, mimetype=None, content_type=content_type)

        app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])
