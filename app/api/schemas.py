"""Marshmallow schemas: request validation and the OpenAPI description."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from app.api.patterns import NON_BLANK
from app.domain.money import MAX_AMOUNT_CHARS
from app.domain.transfer import Status

# Amounts the service sends: balances may be zero.
_DECIMAL = {"type": "string", "pattern": r"^(0|[1-9][0-9]*)(\.[0-9]+)?$", "example": "100.00000000"}
# Amounts a client sends: a plain positive decimal string. Its pattern depends on the
# asset (decimals, minimum, maximum): app/api/openapi.py adds it per asset.
_POSITIVE_DECIMAL = {
    "type": "string",
    "maxLength": MAX_AMOUNT_CHARS,
    "example": "100.00000000",
    "description": "a plain positive decimal string, at most the asset's decimals, within its limits",
}
# Reasons go into audit trails: one that is blank once stripped is refused.
REASON = {"pattern": NON_BLANK, "description": "why, for the audit trail; not blank"}
# The spec lists the symbols of the running catalogue (app/api/openapi.py fills the enum).
ASSET = {"asset_symbol": True, "example": "USDT"}


class AccountRefSchema(Schema):
    class Meta:
        unknown = RAISE

    # Left as raw strings here so the domain can answer with its own codes
    # (INVALID_ACCOUNT_TYPE, UNSUPPORTED_ASSET) rather than a generic one.
    account_type = fields.String(required=True, metadata={"enum": ["funding", "spot"]})
    asset = fields.String(required=True, metadata=ASSET)
    user_id = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(min=1, max=2**63 - 1)
    )


class TransferRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    from_account = fields.Nested(AccountRefSchema, required=True)
    to_account = fields.Nested(AccountRefSchema, required=True)
    # Raw, so a JSON number reaches the domain and is refused as INVALID_AMOUNT.
    amount = fields.Raw(required=True, metadata=_POSITIVE_DECIMAL)


class AccountViewSchema(Schema):
    account_type = fields.String()
    asset = fields.String(metadata=ASSET)
    user_id = fields.Integer()


class TransferSchema(Schema):
    request_id = fields.String(metadata={"description": "Snowflake id, as a decimal string"})
    from_account = fields.Nested(AccountViewSchema)
    to_account = fields.Nested(AccountViewSchema)
    amount = fields.String(metadata=_DECIMAL)
    status = fields.String(metadata={"enum": [s.value for s in Status]})
    failure_reason = fields.String(allow_none=True)
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})


class HistoryQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    # Opaque: only a cursor a page returned is valid (the spec can state no more than "not empty").
    cursor = fields.String(load_default=None, validate=validate.Length(min=1))
    status = fields.String(load_default=None, validate=validate.OneOf([s.value for s in Status]))
    asset = fields.String(load_default=None, metadata=ASSET)


class HistorySchema(Schema):
    items = fields.List(fields.Nested(TransferSchema))
    next_cursor = fields.String(allow_none=True)


class BalanceSchema(Schema):
    asset = fields.String(metadata=ASSET)
    account_type = fields.String()
    available = fields.String(metadata=_DECIMAL)
    locked = fields.String(metadata=_DECIMAL)


class BalancesSchema(Schema):
    balances = fields.List(fields.Nested(BalanceSchema))


class AssetSchema(Schema):
    symbol = fields.String(metadata=ASSET)
    decimals = fields.Integer()
    min_amount = fields.String(metadata=_DECIMAL)
    max_amount = fields.String(metadata=_DECIMAL)


class AssetsSchema(Schema):
    assets = fields.List(fields.Nested(AssetSchema))


class DepositRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    user_id = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=2**63 - 1))
    asset = fields.String(required=True, metadata=ASSET)
    amount = fields.Raw(required=True, metadata=_POSITIVE_DECIMAL)
    # Why the money is credited: kept in the deposit audit with the operator.
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500), metadata=REASON)


class DepositSchema(Schema):
    deposit_id = fields.String()
    user_id = fields.Integer()
    asset = fields.String(metadata=ASSET)
    amount = fields.String(metadata=_DECIMAL)


class ApiErrorBodySchema(Schema):
    code = fields.String()
    message = fields.String()
    details = fields.Dict()


class ApiErrorSchema(Schema):
    error = fields.Nested(ApiErrorBodySchema)


class OperatorActionSchema(Schema):
    class Meta:
        unknown = RAISE

    reason = fields.String(required=True, validate=validate.Length(min=1, max=500), metadata=REASON)


MAX_OLDER_THAN_SECONDS = 366 * 24 * 3600


class StuckQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(load_default=None, validate=validate.OneOf(["requesting", "pending"]))
    # Bounded so timedelta() never overflows (it did at 10^11, a 500); a year is past any real question.
    older_than_seconds = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OLDER_THAN_SECONDS))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class ReconcileQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    request_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**63 - 1))
    user_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**63 - 1))


class AuditEntrySchema(Schema):
    at = fields.String()
    actor = fields.String(
        metadata={
            "description": "who: `api`, `settlement`, `scanner`, `operator:<token subject>` (the admin API), or"
            " `operator:<name as typed> (cli: <OS user>@<host>)` (the CLI; `#<uid>` when there is no login name)"
        }
    )
    from_status = fields.String(allow_none=True)
    to_status = fields.String()
    reason = fields.String()


class TransferReportSchema(Schema):
    transfer = fields.Nested(TransferSchema)
    user_id = fields.Integer()
    ledger_state = fields.String()
    agrees = fields.Boolean()
    audit = fields.List(fields.Nested(AuditEntrySchema))


class ReconcileRowSchema(Schema):
    request_id = fields.String()
    user_id = fields.Integer()
    asset = fields.String(metadata=ASSET)
    amount_units = fields.String()
    store_status = fields.String()
    ledger_state = fields.String()
    agrees = fields.Boolean()
    age_seconds = fields.Integer()


class ReconcileSchema(Schema):
    rows = fields.List(fields.Nested(ReconcileRowSchema))
    mismatches = fields.Integer()


class TransferListSchema(Schema):
    items = fields.List(fields.Nested(TransferSchema))


# -- batches (app/api/batches.py) ----------------------------------------------


class BatchRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    # Each leg is exactly a single transfer's body; 2 to 50 of them, all or nothing.
    legs = fields.List(fields.Nested(TransferRequestSchema), required=True, validate=validate.Length(min=2, max=50))


class BatchSchema(Schema):
    batch_id = fields.String(metadata={"description": "Snowflake id, as a decimal string"})
    status = fields.String(metadata={"enum": [s.value for s in Status]})
    created_at = fields.String(metadata={"format": "date-time"})
    # In the order they were sent; a leg's index is its position here.
    legs = fields.List(fields.Nested(TransferSchema))
