"""flask-smorest's Api, made to tell the truth about errors and about the rules of its input.

ERROR_SCHEMA is what the spec shows for every error response, and
handle_http_exception is what flask-smorest registers for HTTPException:
overriding both keeps the documented and the real error shape one and the same.

The request schemas are marshmallow's; the rules the domain checks on top of
them (which account pairs may move which asset, how many decimals and how
much an amount may have) are added to their JSON Schema here, from the
running catalogue and the domain's own definitions, so that a request the
spec accepts is one the service accepts (tests/e2e/test_schemathesis.py).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import flask_smorest
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_instance
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from flask import Response
from werkzeug.exceptions import HTTPException

from app.api.errors import http_error_response
from app.api.limits import LimitOverrideRequestSchema
from app.api.patterns import amount_pattern, limit_pattern
from app.api.schemas import ApiErrorSchema, DepositRequestSchema, TransferRequestSchema
from app.domain.account_model import Direction
from app.domain.money import AssetCatalog
from app.domain.transfer import AccountType

JsonSchema = dict[str, Any]


def legal_pairs() -> list[tuple[AccountType, AccountType]]:
    """The (from, to) account types a transfer may name: those the domain gives a direction."""
    pairs = []
    for source, target in itertools.product(AccountType, AccountType):
        try:
            Direction.of(source, target)
        except ValueError:
            continue
        pairs.append((source, target))
    return pairs


def _pin(schema: JsonSchema, **values: str) -> None:
    """Narrow each named property to a single value."""
    for name, value in values.items():
        schema["properties"][name]["enum"] = [value]


def transfer_variants(base: JsonSchema, catalog: AssetCatalog) -> JsonSchema:
    """A transfer (or a batch's leg) is one of: an asset, from one account type to the other, an amount of it.

    What build_command refuses otherwise: SAME_ACCOUNT, ASSET_MISMATCH, and of
    the amount INVALID_PRECISION, AMOUNT_TOO_SMALL and AMOUNT_TOO_LARGE.
    """
    variants = []
    for asset in catalog:
        for from_type, to_type in legal_pairs():
            variant = copy.deepcopy(base)
            variant["title"] = f"{asset.symbol}, {from_type.value} to {to_type.value}"
            _pin(variant["properties"]["from_account"], account_type=from_type.value, asset=asset.symbol)
            _pin(variant["properties"]["to_account"], account_type=to_type.value, asset=asset.symbol)
            variant["properties"]["amount"]["pattern"] = amount_pattern(asset)
            variants.append(variant)
    return {"oneOf": variants}


def _per_asset(base: JsonSchema, catalog: AssetCatalog, field: str, pattern: Callable[[Any], str]) -> JsonSchema:
    """`field`'s pattern for each asset; one schema when every asset has the same, else one variant per asset."""
    patterns = {asset.symbol: pattern(asset) for asset in catalog}
    if len(set(patterns.values())) == 1:
        narrowed = copy.deepcopy(base)
        narrowed["properties"][field]["pattern"] = next(iter(patterns.values()))
        return narrowed
    variants = []
    for symbol, text in patterns.items():
        variant = copy.deepcopy(base)
        variant["title"] = symbol
        _pin(variant, asset=symbol)
        variant["properties"][field]["pattern"] = text
        variants.append(variant)
    return {"oneOf": variants}


def deposit_variants(base: JsonSchema, catalog: AssetCatalog) -> JsonSchema:
    """A deposit's amount is bounded like a transfer's, per asset."""
    return _per_asset(base, catalog, "amount", amount_pattern)


def limit_override_variants(base: JsonSchema, catalog: AssetCatalog) -> JsonSchema:
    """A limit is zero, or an amount of the asset (its decimals) the ledger can hold."""
    return _per_asset(base, catalog, "limit", limit_pattern)


_VARIANTS: dict[type, Callable[[JsonSchema, AssetCatalog], JsonSchema]] = {
    TransferRequestSchema: transfer_variants,
    DepositRequestSchema: deposit_variants,
    LimitOverrideRequestSchema: limit_override_variants,
}


class _Converter(OpenAPIConverter):
    catalog: AssetCatalog | None = None

    def schema2jsonschema(self, schema: Any) -> JsonSchema:
        jsonschema: JsonSchema = super().schema2jsonschema(schema)  # type: ignore[no-untyped-call]
        variants = _VARIANTS.get(type(resolve_schema_instance(schema)))
        if variants is None:
            return jsonschema
        if self.catalog is None:
            raise RuntimeError("Api.document_catalog must be called before blueprints are registered")
        return variants(self._inlined(jsonschema), self.catalog)

    def _inlined(self, jsonschema: JsonSchema) -> JsonSchema:
        """The schema with its nested schemas' references replaced by copies, so variants can narrow them."""
        inlined = copy.deepcopy(jsonschema)
        for name, prop in inlined["properties"].items():
            ref = prop.get("$ref", "")
            if ref.startswith("#/components/schemas/"):
                inlined["properties"][name] = copy.deepcopy(self.spec.components.schemas[ref.rsplit("/", 1)[1]])
        return inlined


class _Plugin(MarshmallowPlugin):
    Converter = _Converter


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ApiErrorSchema

    def __init__(self, app: Any = None, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(app, spec_kwargs={"marshmallow_plugin": _Plugin(), **(spec_kwargs or {})})

    def document_catalog(self, catalog: AssetCatalog) -> None:
        """Every field marked ASSET in app/api/schemas.py becomes an enum of the catalogue's symbols,
        and each asset's amount rules go into the request schemas (above)."""
        symbols = [asset.symbol for asset in catalog]

        def asset_enum(converter: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            return {"enum": list(symbols)} if field.metadata.get("asset_symbol") else {}

        self.ma_plugin.converter.add_attribute_function(asset_enum)
        self.ma_plugin.converter.catalog = catalog

    def handle_http_exception(self, error: HTTPException) -> Response:
        return http_error_response(error)
