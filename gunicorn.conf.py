"""gunicorn settings; every value can be overridden by the environment."""

import os

from app.config import Settings

_settings = Settings()

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# gthread, with gunicorn's own error pages (400, 414...) in the service's JSON error shape.
worker_class = "app.api.gunicorn_errors.JsonErrorThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Embedded mode keeps state in one process (SQLite, the in-process bus), so
# it runs exactly one worker. Scale-out needs the real backends.
workers = 1 if _settings.embedded_bus else int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
graceful_timeout = 20
accesslog = "-"


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    # After the fork: background threads must live in the worker, not the master.
    from app import ensure_background_workers

    ensure_background_workers(worker.wsgi)


def on_starting(server):  # type: ignore[no-untyped-def]
    # With the public development secrets anyone can mint an operator token:
    # refuse to start on anything but loopback (checked in app/config.py).
    _settings.check_listen_addresses(server.cfg.bind)
