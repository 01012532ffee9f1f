"""gunicorn settings; every value can be overridden by the environment (read in app/config.py)."""

import shutil

from app.config import GunicornSettings, Settings, claim_metrics_dir

# -- metrics: prometheus-client's multiprocess mode ------------------------------
# Each worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR and a
# scrape adds them up, so /metrics answers for all workers whichever serves
# it. Set before anything imports prometheus_client (app.config does not),
# which reads it once.
_metrics_dir, _own_metrics_dir = claim_metrics_dir()

_settings = Settings()
_gunicorn = GunicornSettings()

bind = _gunicorn.bind
# gthread, with gunicorn's own error pages (400, 414...) in the service's JSON error shape.
worker_class = "app.api.gunicorn_errors.JsonErrorThreadWorker"
threads = _gunicorn.threads
# Embedded mode keeps state in one process (SQLite, the in-process bus), so
# it runs exactly one worker. Scale-out needs the real backends.
workers = 1 if _settings.embedded_bus else _gunicorn.web_concurrency
timeout = 30
graceful_timeout = 20
accesslog = "-"
# The trace id (X-Request-Id, as echoed) ends each access line, so one grep finds it.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms trace_id=%({x-request-id}o)s'
if not _settings.log_as_text:
    # gunicorn's own lines (boot, worker exits, access) as JSON objects too, to stderr.
    _json_handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["context"],
        "stream": "ext://sys.stderr",
    }
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "app.logging_setup.make_formatter"}},
        "filters": {"context": {"()": "app.observability.context.ContextFilter", "process": "web"}},
        "handlers": {"gunicorn_json": _json_handler},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["gunicorn_json"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["gunicorn_json"], "propagate": False},
        },
        "root": {"level": "INFO", "handlers": []},
    }


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    # After the fork: background threads must live in the worker, not the master.
    from consumers.worker import ensure_background_workers

    ensure_background_workers(worker.wsgi)


def on_starting(server):  # type: ignore[no-untyped-def]
    # With the public development secrets anyone can mint an operator token:
    # refuse to start on anything but loopback (checked in app/config.py).
    _settings.check_listen_addresses(server.cfg.bind)
    # Files left by an earlier run would add its counts to ours.
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in _metrics_dir.glob("*.db"):
        stale.unlink()


def when_ready(server):  # type: ignore[no-untyped-def]
    # WEB_METRICS_PORT: /metrics from the master on a port of its own (METRICS_ADDR,
    # loopback by default), so METRICS_ON_WEB=0 can keep it off the public listener.
    from app.observability.metrics import start_exporter

    start_exporter(_gunicorn.web_metrics_port, _settings.metrics_addr, str(_metrics_dir))


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    # A dead worker's live gauges must not count any more.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server):  # type: ignore[no-untyped-def]
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
