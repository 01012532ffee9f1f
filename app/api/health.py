"""Liveness and readiness."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from app.api.inbound import container

log = logging.getLogger(__name__)
blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blp.get("/readyz")
def readyz() -> Response:
    services = container()
    down = {}
    for name, backend in (("store", services.store), ("ledger", services.ledger), ("bus", services.bus)):
        try:
            backend.ping()
        except Exception as exc:  # any failed ping means "not ready"
            # Hosts and driver messages stay in the log, not in a public answer.
            log.warning("readiness: %s is down: %s", name, exc)
            down[name] = True
    if down:
        response = jsonify({"status": "unavailable", "down": sorted(down)})
        response.status_code = 503
        response.headers["Retry-After"] = "2"
        return response
    return jsonify({"status": "ready"})
