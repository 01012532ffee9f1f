"""flask-smorest's Api, made to tell the truth about errors.

ERROR_SCHEMA is what the spec shows for every error response, and
handle_http_exception is what flask-smorest registers for HTTPException:
overriding both keeps the documented and the real error shape one and the same.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import Response
from werkzeug.exceptions import HTTPException

from app.api.errors import http_error_response
from app.api.schemas import ApiErrorSchema


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ApiErrorSchema

    def document_assets(self, symbols: list[str]) -> None:
        """Every field marked ASSET in app/api/schemas.py becomes an enum of the catalogue's symbols."""

        def asset_enum(converter: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            return {"enum": list(symbols)} if field.metadata.get("asset_symbol") else {}

        self.ma_plugin.converter.add_attribute_function(asset_enum)

    def handle_http_exception(self, error: HTTPException) -> Response:
        return http_error_response(error)
