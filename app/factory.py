"""The Flask application factory: the web process's wiring, with the CLI's commands.

It sits on top of the app package and nothing in the package imports it;
the background work it may run in embedded mode is started by the
entrypoints (wsgi.py, gunicorn.conf.py) through consumers.worker, which
depends on the app, never the reverse.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

from app.api import docs_assets
from app.api.auth import TokenPolicy
from app.bootstrap import Container, build
from app.config import Settings
from app.logging_setup import configure_logging

API_TITLE = "Internal transfer service"


def create_app(settings: Settings | None = None, container: Container | None = None) -> Flask:
    settings = settings or (container.settings if container else Settings())
    configure_logging("web", settings)
    # Named after the package: Flask finds its root path and names its logger by it.
    app = Flask("app")
    user_key, operator_key = settings.effective_secrets()
    app.config.update(
        TOKEN_POLICY=TokenPolicy(
            user_key=user_key,
            operator_key=operator_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            max_ttl_seconds=settings.jwt_max_ttl_seconds,
        ),
        API_TITLE=API_TITLE,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        # Served by this app from pinned packages (app/api/docs_assets.py), so the pages work offline.
        OPENAPI_SWAGGER_UI_URL=docs_assets.SWAGGER_UI_URL,
        # No validator badge: Swagger UI would fetch it from the internet.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        OPENAPI_REDOC_PATH="/redoc",
        OPENAPI_REDOC_URL=docs_assets.REDOC_URL,
        JSON_SORT_KEYS=False,
    )
    app.extensions["internal_transfer"] = container or build(settings)

    from app.api import accounts, admin, batches, health, inbound, limits, transfers
    from app.api.errors import register_error_handlers
    from app.api.openapi import Api
    from app.api.path_ids import TransferIdSegment, transfer_id_segment_schema
    from app.api.rate_limits import install_rate_limits

    inbound.install(app)

    api = Api(app, spec_kwargs={"info": {"description": "See docs/API.md for the contract."}})
    app.url_map.converters["transfer_id"] = TransferIdSegment
    api.register_converter(TransferIdSegment, transfer_id_segment_schema)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    api.spec.options["security"] = [{"bearerAuth": []}]
    api.document_catalog(app.extensions["internal_transfer"].catalog)
    for blueprint in (transfers.blp, batches.blp, accounts.blp, admin.blp, limits.user_blp, limits.admin_blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(health.blp)
    app.register_blueprint(docs_assets.blp)
    install_rate_limits(app, settings.ratelimit_storage_uri, settings.transfer_rate_limit, settings.read_rate_limit)
    register_error_handlers(app)

    if settings.uses_dev_secrets:
        refuse_requests_beyond_loopback(app, settings)

    # Last, so its before_request runs after the size, loopback and limiter checks, as before.
    inbound.install_trace_and_metrics(
        app, metrics_on_web=settings.metrics_on_web, multiproc_dir=settings.prometheus_multiproc_dir
    )

    from app.cli import register_cli

    register_cli(app)
    return app


def refuse_requests_beyond_loopback(app: Flask, settings: Settings) -> None:
    """With the public development secrets, answer only on a loopback listener.

    Anyone can mint an operator token with those secrets. gunicorn refuses
    such a bind at start (gunicorn.conf.py); this catches any other server
    (`flask run --host 0.0.0.0`), by the address each connection arrived on.
    """
    from flask import request

    from app.api.errors import error_response
    from app.domain.errors import PermissionDenied

    @app.before_request
    def _loopback_only() -> Response | None:
        try:
            settings.check_listen_addresses([listener_address(request.environ)])
        except RuntimeError as exc:
            return error_response(PermissionDenied(str(exc)))
        return None


def listener_address(environ: dict[str, Any]) -> str:
    """The address the request's connection arrived on, from the connection itself.

    Not SERVER_NAME: on a unix socket gunicorn builds it from the client's
    Host header. A server that does not hand over its connection (gunicorn
    and werkzeug do) gets "", which is not loopback.
    """
    connection = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if connection is None:
        return ""
    local = connection.getsockname()
    if isinstance(local, tuple):
        return str(local[0])
    name = local.decode(errors="replace") if isinstance(local, bytes) else str(local)
    return f"unix:{name}"
