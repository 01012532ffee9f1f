"""Swagger UI and ReDoc, served from pinned Python packages instead of a CDN.

/docs and /redoc rendered a blank page on a machine without internet: they
loaded unpinned scripts from a CDN. The scripts now come from two packages
pinned in requirements.txt, each of which ships the upstream distribution
files and depends on nothing the service does not already use:
flask-swagger-ui (Swagger UI's dist; its version is Swagger UI's) and
openapi-ui-bundles (ReDoc's standalone bundle, exposed as `static_path`).
The pages themselves are flask-smorest's; only these files are served.

Files are served from an explicit allowlist, never by a client-supplied path.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
import openapi_ui_bundles.redoc
from flask import Blueprint, Response, abort, send_file

URL_PREFIX = "/docs-assets"
SWAGGER_UI_URL = f"{URL_PREFIX}/swagger-ui/"
REDOC_URL = f"{URL_PREFIX}/redoc/redoc.standalone.js"

# flask-swagger-ui keeps Swagger UI's dist beside its module (its own blueprint serves it from there).
_SWAGGER = Path(flask_swagger_ui.__file__).parent / "dist"
_REDOC = Path(openapi_ui_bundles.redoc.static_path)

_ASSETS = {
    "swagger-ui/swagger-ui.css": _SWAGGER / "swagger-ui.css",
    "swagger-ui/swagger-ui-bundle.js": _SWAGGER / "swagger-ui-bundle.js",
    "swagger-ui/swagger-ui-standalone-preset.js": _SWAGGER / "swagger-ui-standalone-preset.js",
    "redoc/redoc.standalone.js": _REDOC / "redoc.standalone.js",
}

# A day: the files change only with a pinned version, i.e. with a deploy.
_MAX_AGE_SECONDS = 24 * 3600

blp = Blueprint("docs_assets", __name__, url_prefix=URL_PREFIX)


@blp.get("/<path:name>")
def asset(name: str) -> Response:
    path = _ASSETS.get(name)
    if path is None:
        abort(404)
    return send_file(path, max_age=_MAX_AGE_SECONDS)
