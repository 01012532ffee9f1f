"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.api.container import container
from app.ports.errors import DependencyUnavailable

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
        except DependencyUnavailable as exc:
            down[name] = str(exc)
        except Exception as exc:  # a ping that fails oddly still means "not ready"
            down[name] = type(exc).__name__
    if down:
        response = jsonify({"status": "unavailable", "down": sorted(down), "details": down})
        response.status_code = 503
        response.headers["Retry-After"] = "2"
        return response
    return jsonify({"status": "ready"})
