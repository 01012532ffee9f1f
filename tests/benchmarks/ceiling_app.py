"""The ceiling: a bare Flask app answering a JSON POST, run in the service's gunicorn shape."""

from __future__ import annotations

from typing import Any

from flask import Flask, request

app = Flask(__name__)


@app.post("/api/v1/user/internal_transfer")
def transfer() -> tuple[dict[str, Any], int]:
    body = request.get_json(force=True)
    return {"status": "pending", "amount": body.get("amount")}, 202
