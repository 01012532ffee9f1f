"""The wire form of the engine's messages (docs/messages.md): JSON objects, ids as decimal strings.

Both bus adapters encode and decode with these; the port (app/ports/bus.py)
holds only the plain message types.
"""

from __future__ import annotations

from app.domain.ids import id_field
from app.domain.transfer import Outcome
from app.observability.context import valid_trace_id
from app.ports.bus import AnyEngineRequest, EngineBatchRequest, EngineLeg, EngineRequest, EngineResult

SCHEMA_VERSION = 1
# A batch request or result (docs/messages.md, "Batches"): its own version, so
# an engine that only knows version 1 dead-letters it instead of misreading it.
BATCH_SCHEMA_VERSION = 2


def encode_request(request: AnyEngineRequest) -> dict[str, object]:
    message: dict[str, object]
    if isinstance(request, EngineBatchRequest):
        message = {
            "schema_version": BATCH_SCHEMA_VERSION,
            "batch_id": str(request.batch_id),
            "user_id": str(request.user_id),
            "legs": [_encode_leg(leg) for leg in request.legs],
        }
    else:
        message = {
            "schema_version": SCHEMA_VERSION,
            "request_id": str(request.request_id),
            "user_id": str(request.user_id),
            "asset": request.asset,
            "from_account_type": request.from_account_type,
            "to_account_type": request.to_account_type,
            "amount_units": str(request.amount_units),
        }
    if request.trace_id is not None:
        message["trace_id"] = request.trace_id
    return message


def decode_request(message: dict[str, object]) -> AnyEngineRequest:
    """A request of either kind, told apart by its schema_version."""
    if message.get("schema_version") == BATCH_SCHEMA_VERSION:
        return _decode_batch_request(message)
    if message.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {message.get('schema_version')!r}")
    return EngineRequest(
        request_id=id_field(message, "request_id"),
        user_id=id_field(message, "user_id"),
        asset=str(message["asset"]),
        from_account_type=str(message["from_account_type"]),
        to_account_type=str(message["to_account_type"]),
        amount_units=int(str(message["amount_units"])),
        # Not a reason to dead-letter: an unusable trace id is dropped.
        trace_id=valid_trace_id(message.get("trace_id")),
    )


def encode_result(result: EngineResult) -> dict[str, object]:
    message: dict[str, object] = {
        "schema_version": BATCH_SCHEMA_VERSION if result.batch else SCHEMA_VERSION,
        "batch_id" if result.batch else "request_id": str(result.request_id),
        "outcome": result.outcome.value,
        "reason": result.reason,
    }
    if result.trace_id is not None:
        message["trace_id"] = result.trace_id
    return message


def decode_result(message: dict[str, object]) -> EngineResult:
    batch = message.get("schema_version") == BATCH_SCHEMA_VERSION
    if message.get("schema_version") != SCHEMA_VERSION and not batch:
        raise ValueError(f"unsupported schema_version {message.get('schema_version')!r}")
    outcome = message.get("outcome")
    if not isinstance(outcome, str) or outcome not in Outcome.__members__.values():
        raise ValueError(f"unknown outcome {outcome!r}")
    reason = message.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason must be a string or null")
    return EngineResult(
        request_id=id_field(message, "batch_id" if batch else "request_id"),
        outcome=Outcome(outcome),
        reason=reason,
        trace_id=valid_trace_id(message.get("trace_id")),
        batch=batch,
    )


def _encode_leg(leg: EngineLeg) -> dict[str, object]:
    return {
        "request_id": str(leg.request_id),
        "asset": leg.asset,
        "from_account_type": leg.from_account_type,
        "to_account_type": leg.to_account_type,
        "amount_units": str(leg.amount_units),
    }


def _decode_batch_request(message: dict[str, object]) -> EngineBatchRequest:
    legs = message.get("legs")
    if not isinstance(legs, list) or not legs or not all(isinstance(leg, dict) for leg in legs):
        raise ValueError("legs must be a non-empty list of objects")
    return EngineBatchRequest(
        batch_id=id_field(message, "batch_id"),
        user_id=id_field(message, "user_id"),
        legs=tuple(_decode_leg(leg) for leg in legs),
        trace_id=valid_trace_id(message.get("trace_id")),
    )


def _decode_leg(message: dict[str, object]) -> EngineLeg:
    return EngineLeg(
        request_id=id_field(message, "request_id"),
        asset=str(message["asset"]),
        from_account_type=str(message["from_account_type"]),
        to_account_type=str(message["to_account_type"]),
        amount_units=int(str(message["amount_units"])),
    )
