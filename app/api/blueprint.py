"""The Blueprint every API route uses: authentication first, then the body, then the schema.

flask-smorest validates `@blp.arguments` inside the view wrapper, so a
decorator on the view cannot run before it. A blueprint's `before_request`
does: it runs after routing and before the view, so an unauthenticated
caller never gets a validation answer (which would echo the schema) and
a body is never parsed for a caller who may not send it.

The same class documents what it enforces: every operation's spec lists the
errors the guard can answer (401, 403, 413, 415), those its view declares
with `@raises(...)`, and 503 wherever a backend is asked, each with its codes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any, TypeVar

import flask_smorest

from app.api import inbound
from app.api.errors import PayloadTooLarge, RateLimited, ServiceUnavailable, UnsupportedMediaType, status_of
from app.api.schemas import ApiErrorSchema
from app.domain.errors import (
    AmountTooLarge,
    AmountTooSmall,
    AssetMismatch,
    DailyLimitExceeded,
    DomainError,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidAccountType,
    InvalidAmount,
    InvalidPrecision,
    PermissionDenied,
    SameAccount,
    Unauthenticated,
    UnsupportedAsset,
    ValidationFailed,
)
from app.domain.ids import IDEMPOTENCY_KEY_PATTERN

F = TypeVar("F", bound=Callable[..., Any])

IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "pattern": f"^{IDEMPOTENCY_KEY_PATTERN}$"}


def _apidoc(func: Any) -> dict[str, Any]:
    # Every flask-smorest decorator copies `_apidoc` onto its wrapper, so any order works.
    func._apidoc = deepcopy(getattr(func, "_apidoc", {}))
    doc: dict[str, Any] = func._apidoc
    return doc


# The errors of a family of routes, each family declared once (the guard's own are added by the Blueprint).
# An amount of an asset (app/domain/money.py): transfers, their batches' legs, deposits.
AMOUNT_ERRORS: tuple[type[DomainError], ...] = (
    UnsupportedAsset,
    InvalidAmount,
    InvalidPrecision,
    AmountTooSmall,
    AmountTooLarge,
)
# Moving funds between the caller's own accounts, alone or in a batch (app/services/submit.py
# build_command, the lock and its daily quota), rate-limited per user (app/api/rate_limits.py).
TRANSFER_ERRORS: tuple[type[DomainError], ...] = (
    *AMOUNT_ERRORS,
    AssetMismatch,
    InvalidAccountType,
    SameAccount,
    PermissionDenied,
    IdempotencyKeyReused,
    InsufficientBalance,
    DailyLimitExceeded,
    RateLimited,
)


def raises(*errors: type[DomainError]) -> Callable[[F], F]:
    """Declare, for the spec, the errors a view itself can answer (besides those of the guard)."""

    def decorator(func: F) -> F:
        _apidoc(func).setdefault("errors", []).extend(errors)
        return func

    return decorator


def takes_idempotency_key(*, required: bool) -> Callable[[F], F]:
    """Declare, for the spec, the Idempotency-Key header a view reads."""

    def decorator(func: F) -> F:
        _apidoc(func)["idempotency_key"] = required
        return func

    return decorator


# Headers the error responses carry (app/api/errors.py sets them).
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}},
}


def _error_response(status: int, errors: list[type[DomainError]]) -> dict[str, Any]:
    codes = sorted({e.code for e in errors})
    response: dict[str, Any] = {
        "description": ", ".join(codes),
        "content": {"application/json": {"schema": ApiErrorSchema}},
    }
    if status in _ERROR_HEADERS:
        response["headers"] = _ERROR_HEADERS[status]
    return response


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = inbound.BoundedJsonParser()

    def __init__(
        self,
        *args: Any,
        operator_only: bool = False,
        public_endpoints: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._public_endpoints = frozenset(public_endpoints)
        self._public = frozenset(f"{self.name}.{endpoint}" for endpoint in public_endpoints)
        self.before_request(inbound.guard(self._public, operator_only))
        self._prepare_doc_cbks.append(self._prepare_errors_doc)

    def is_public(self, endpoint: str) -> bool:
        """Whether `endpoint` (qualified by this blueprint's name) answers without a token."""
        return endpoint in self._public

    def _store_endpoint_docs(self, endpoint: str, obj: Any, parameters: Any, tags: Any, **options: Any) -> None:
        super()._store_endpoint_docs(endpoint, obj, parameters, tags, **options)
        for method_doc in self._docs[endpoint].values():
            if isinstance(method_doc, dict):
                method_doc["public"] = endpoint in self._public_endpoints

    def _prepare_errors_doc(
        self, doc: dict[str, Any], doc_info: dict[str, Any], *, method: str, **kwargs: Any
    ) -> dict[str, Any]:
        errors: list[type[DomainError]] = list(doc_info.get("errors", []))
        public = bool(doc_info.get("public"))
        if not public:
            # PermissionDenied: a token of the other role (app/api/auth.py authorize).
            errors += [Unauthenticated, PermissionDenied, ServiceUnavailable]
            if method.upper() == "GET":
                errors.append(RateLimited)  # app/api/rate_limits.py: every authenticated read
        if method.upper() in inbound.BODY_METHODS:
            errors += [PayloadTooLarge, UnsupportedMediaType, ValidationFailed]
        if doc_info.get("arguments"):
            errors.append(ValidationFailed)
        by_status: dict[int, list[type[DomainError]]] = defaultdict(list)
        for error in errors:
            status = status_of(error)
            if status is None:
                raise TypeError(f"{error.__name__} has no HTTP status (app/api/errors.py)")
            by_status[status].append(error)
        responses = doc.setdefault("responses", {})
        for status, group in by_status.items():
            responses.pop(status, None)  # flask-smorest's own entry (e.g. the arguments' 400), replaced
            responses[str(status)] = _error_response(status, group)
        if public:
            doc["security"] = []
        if "idempotency_key" in doc_info:
            doc.setdefault("parameters", []).append(
                {
                    "in": "header",
                    "name": "Idempotency-Key",
                    "required": doc_info["idempotency_key"],
                    "schema": IDEMPOTENCY_KEY_SCHEMA,
                    "description": "Makes a retry safe: a replay answers what the first request answered.",
                }
            )
        return doc
