"""The web process's side: trace ids in and out, request metrics, and GET /metrics.

Every request gets a trace id (the caller's X-Request-Id when it is safe,
else a fresh one), bound in the log context and echoed in the response.
The latency histogram is labelled by route template, never by the path,
so ids in URLs cannot multiply the series.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from app.observability.context import request_id_var, trace_id_from_header, trace_id_var
from app.observability.metrics import HTTP_REQUEST_SECONDS, exposition

TRACE_HEADER = "X-Request-Id"


def install(app: Flask, *, metrics_on_web: bool, multiproc_dir: str | None) -> None:
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

    @app.after_request
    def _end(response: Response) -> Response:
        trace_id = g.get("trace_id")
        if trace_id is not None:
            response.headers[TRACE_HEADER] = trace_id
        started = g.get("started")
        if started is not None:
            rule = request.url_rule
            HTTP_REQUEST_SECONDS.labels(
                method=request.method,
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
        # No user token: Prometheus scrapes it. Keep it off the public
        # listener with METRICS_ON_WEB=0 and WEB_METRICS_PORT (docs/runbook.md).
        def _metrics() -> Response:
            body, content_type = exposition(multiproc_dir)
            return Response(body, mimetype=None, content_type=content_type)

        app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])
