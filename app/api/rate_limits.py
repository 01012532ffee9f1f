"""Per-caller request rate limits (Flask-Limiter): the transfer POSTs, and every authenticated GET.

Keyed by the authenticated caller (role and id), so one user's burst never
slows another's requests; a request without a valid token is keyed by its
address (it is refused with 401 anyway). Each route has its own budget. The
counters live in RATELIMIT_STORAGE_URI: the default, memory://, is per
process, so N gunicorn workers on M hosts allow N*M times the rate; a
deployment of more than one process points it at a shared store
(redis://... or memcached://...). See README, "Rate limits".
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit

from app.api.auth import rate_limit_key
from app.api.blueprint import Blueprint
from app.api.errors import RateLimited, error_response

TRANSFER_ENDPOINT = "internal_transfer.InternalTransfers"
# The batch POST (up to 50 legs a request) has a budget of the same size, its own.
BATCH_ENDPOINT = "internal_transfer_batch.Batches"


def _too_many(limit: RequestLimit | None) -> Response:
    reset_at = limit.reset_at if limit is not None else time.time() + 1
    retry_after = max(1, math.ceil(reset_at - time.time()))
    # Flask-Limiter's own headers (X-RateLimit-*, and Retry-After, rounded its
    # way) are added after this; the header, not the body, says when to retry.
    error = RateLimited("too many requests; retry after the given seconds")
    if limit is not None:
        error.details["limit"] = str(limit.limit)
    response = error_response(error)
    response.headers["Retry-After"] = str(retry_after)
    return response


def authenticated_reads(app: Flask) -> list[str]:
    """The endpoints that answer GET to a token holder: every API route but the public ones."""
    found = []
    for rule in app.url_map.iter_rules():
        blueprint = app.blueprints.get(rule.endpoint.partition(".")[0])
        if (
            isinstance(blueprint, Blueprint)
            and "GET" in (rule.methods or ())
            and not blueprint.is_public(rule.endpoint)
        ):
            found.append(rule.endpoint)
    return found


def install_rate_limits(app: Flask, storage_uri: str, transfer_limit: str, read_limit: str) -> Limiter:
    """One limiter per app (its own counters), applied to the transfer POSTs and the authenticated GETs."""
    limiter = Limiter(
        key_func=rate_limit_key,
        app=app,
        storage_uri=storage_uri,
        # Supported by the memory, Redis and Memcached storages alike, and
        # without a fixed window's double burst at each window's edge.
        strategy="sliding-window-counter",
        headers_enabled=True,
        # The storage is down: refuse nothing rather than every transfer; the
        # rate limit protects capacity, the ledger protects money.
        swallow_errors=True,
    )

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(_: RateLimitExceeded) -> Response:
        # The usual error body; `current_limit` is the limit this request broke.
        return _too_many(limiter.current_limit)

    budgets = [(endpoint, transfer_limit, "POST") for endpoint in (TRANSFER_ENDPOINT, BATCH_ENDPOINT)]
    budgets += [(endpoint, read_limit, "GET") for endpoint in authenticated_reads(app)]
    for endpoint, limit, method in budgets:
        view = app.view_functions[endpoint]
        # Flask-Limiter's decorator is typed for async views too; these views are sync.
        app.view_functions[endpoint] = limiter.limit(limit, methods=[method])(view)  # type: ignore[assignment]
    return limiter
