"""The WSGI entrypoint: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

from __future__ import annotations

from flask import Flask

from app.factory import create_app
from consumers.worker import ensure_background_workers


def _start_background_on_first_request(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        ensure_background_workers(app)


app = create_app()
_start_background_on_first_request(app)
