"""Swagger UI and ReDoc, served from pinned Python packages instead of a CDN.

/docs and /redoc rendered a blank page on a machine without internet: they
loaded unpinned scripts from a CDN. The scripts now come from
flask-openapi3-swagger (Swagger UI, its version is the package's) and
flask-openapi3-redoc (ReDoc), pinned in requirements.txt. Only their static
files are used: their plugin modules (and so flask-openapi3 and pydantic,
which they declare as dependencies) are never imported.

Files are served from an explicit allowlist, never by a client-supplied path.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from flask import Blueprint, Response, abort, send_file

URL_PREFIX = "/docs-assets"
SWAGGER_UI_URL = f"{URL_PREFIX}/swagger-ui/"
REDOC_URL = f"{URL_PREFIX}/redoc/redoc.standalone.js"

_SWAGGER = Path(str(files("flask_openapi3_swagger"))) / "templates" / "swagger"
_REDOC = Path(str(files("flask_openapi3_redoc"))) / "templates" / "redoc"

_ASSETS = {
    "swagger-ui/swagger-ui.css": _SWAGGER / "css" / "swagger-ui.css",
    "swagger-ui/swagger-ui-bundle.js": _SWAGGER / "js" / "swagger-ui-bundle.js",
    "swagger-ui/swagger-ui-standalone-preset.js": _SWAGGER / "js" / "swagger-ui-standalone-preset.js",
    "redoc/redoc.standalone.js": _REDOC / "js" / "redoc.standalone.js",
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
