"""Liveness and readiness."""

from __future__ import annotations

import logging
import threading
import time

from flask import Blueprint, Response, current_app, jsonify
from flask.blueprints import BlueprintSetupState

from app.api.inbound import container

log = logging.getLogger(__name__)
blp = Blueprint("health", __name__)

# /readyz has no token: one answer serves every probe for this long, so a
# flood of probes costs the backends a ping each per second, not per probe.
READINESS_CACHE_SECONDS = 1.0


class Readiness:
    """The last readiness check of one app, and the lock that lets one request at a time renew it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checked_at = float("-inf")
        self.down: list[str] = []

    def current(self) -> list[str]:
        with self.lock:
            if time.monotonic() - self.checked_at >= READINESS_CACHE_SECONDS:
                self.down = _ping_all()
                self.checked_at = time.monotonic()
            return self.down


def _ping_all() -> list[str]:
    services = container()
    down = []
    for name, backend in (("store", services.store), ("ledger", services.ledger), ("bus", services.bus)):
        try:
            backend.ping()
        except Exception as exc:  # any failed ping means "not ready"
            # Hosts and driver messages stay in the log, not in a public answer.
            log.warning("readiness: %s is down: %s", name, exc)
            down.append(name)
    return down


@blp.record_once
def _readiness_state(state: BlueprintSetupState) -> None:
    state.app.extensions["readiness"] = Readiness()


@blp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blp.get("/readyz")
def readyz() -> Response:
    down = current_app.extensions["readiness"].current()
    if down:
        response = jsonify({"status": "unavailable", "down": down})
        response.status_code = 503
        response.headers["Retry-After"] = "2"
        return response
    return jsonify({"status": "ready"})
