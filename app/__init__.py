"""The Flask application factory."""

from __future__ import annotations

import threading

from flask import Flask
from flask_smorest import Api

from app.bootstrap import Container, build
from app.config import Settings
from app.logging_setup import configure_logging

API_TITLE = "Internal transfer service"


def create_app(settings: Settings | None = None, container: Container | None = None) -> Flask:
    configure_logging("web")
    settings = settings or (container.settings if container else Settings())
    app = Flask(__name__)
    app.config.update(
        JWT_SECRET=settings.effective_jwt_secret(),
        API_TITLE=API_TITLE,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        OPENAPI_REDOC_PATH="/redoc",
        OPENAPI_REDOC_URL="https://cdn.jsdelivr.net/npm/redoc/bundles/redoc.standalone.js",
        JSON_SORT_KEYS=False,
    )
    app.extensions["internal_transfer"] = container or build(settings)

    from app.api import accounts, admin, health, transfers
    from app.api.errors import register_error_handlers

    api = Api(app, spec_kwargs={"info": {"description": "See docs/API.md for the contract."}})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    api.spec.options["security"] = [{"bearerAuth": []}]
    for blueprint in (transfers.blp, accounts.blp, admin.blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(health.blp)
    register_error_handlers(app)

    from app.observability import web as observability

    observability.install(app)

    from app.cli import register_cli

    register_cli(app)
    return app


_background_lock = threading.Lock()


def ensure_background_workers(app: Flask) -> None:
    """Start the in-process consumer and scanner once, in embedded mode.

    Called from gunicorn's post-fork hook and on the first request under
    `flask run`, never at import, so CLI commands start no threads.
    """
    services: Container = app.extensions["internal_transfer"]
    if not services.settings.runs_background_workers:
        return
    with _background_lock:
        if "background_workers" in app.extensions:
            return
        from consumers.worker import BackgroundWorkers

        workers = BackgroundWorkers(services, with_reference_engine=services.settings.embedded_bus)
        workers.start()
        app.extensions["background_workers"] = workers
