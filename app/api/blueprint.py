"""The Blueprint every API route uses: authentication first, then the body, then the schema.

flask-smorest validates `@blp.arguments` inside the view wrapper, so a
decorator on the view cannot run before it. A blueprint's `before_request`
does: it runs after routing and before the view, so an unauthenticated
caller never gets a validation answer (which would echo the schema) and
a body is never parsed for a caller who may not send it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import flask_smorest
from flask import request
from marshmallow import missing
from webargs.flaskparser import FlaskParser

from app.api import body
from app.api.auth import authenticate, authorize_operator


class _BoundedJsonParser(FlaskParser):
    """webargs' parser, with the bounded JSON reader of app/api/body.py instead of json.loads."""

    # The API answers validation errors 400 (never webargs' default 422), and the spec says so.
    DEFAULT_VALIDATION_STATUS = 400

    def load_json(self, req: Any, schema: Any) -> Any:
        raw = req.get_data(cache=True)
        body.check_read_size(raw)
        if not raw:
            return missing  # marshmallow then names the required fields
        return body.parse_json_body(raw)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _BoundedJsonParser()

    def __init__(
        self,
        *args: Any,
        operator_only: bool = False,
        public_endpoints: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._operator_only = operator_only
        self._public = frozenset(f"{self.name}.{endpoint}" for endpoint in public_endpoints)
        self.before_request(self._guard)

    def _guard(self) -> None:
        if request.endpoint not in self._public:
            if self._operator_only:
                authorize_operator()
            else:
                authenticate()
        body.check_media_type()
