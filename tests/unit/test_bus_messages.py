"""Engine results as the contract spells them: request_id a decimal string, outcome one of two words."""

from __future__ import annotations

from typing import Any

import pytest

from app.adapters.bus_messages import SCHEMA_VERSION, decode_result, encode_result
from app.domain.transfer import Outcome
from app.ports.bus import EngineResult


def message(**overrides: Any) -> dict[str, object]:
    body: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "request_id": "118682025984004096",
        "outcome": "rejected",
        "reason": "no liquidity",
    }
    body.update(overrides)
    return body


def test_a_result_round_trips_in_the_contract_s_wire_format() -> None:
    result = decode_result(message())
    assert result == EngineResult(118682025984004096, Outcome.REJECTED, "no liquidity")
    assert encode_result(result) == message()
    # The wire keeps plain strings, not enum reprs.
    assert type(encode_result(result)["outcome"]) is str


@pytest.mark.parametrize(
    "request_id",
    [
        118682025984004096,  # a JSON number: through a double it would be ...4000, a sibling's id
        118682025984004096.0,
        True,
        None,
        ["118682025984004096"],
        " 118682025984004096",
        "0118682025984004096",
        "1e5",
        "0",
    ],
    ids=repr,
)
def test_request_id_must_be_the_decimal_string(request_id: object) -> None:
    with pytest.raises(ValueError):
        decode_result(message(request_id=request_id))


@pytest.mark.parametrize("outcome", ["maybe", "CONFIRMED", None, 1])
def test_an_unknown_outcome_is_malformed(outcome: object) -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        decode_result(message(outcome=outcome))


def test_a_reason_must_be_text_or_null() -> None:
    assert decode_result(message(reason=None)).reason is None
    with pytest.raises(ValueError):
        decode_result(message(reason={"code": 1}))
