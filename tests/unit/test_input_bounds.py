"""Input parsers refuse what would crash them or slip past a `$`: full matches and length bounds."""

from __future__ import annotations

import pytest

from app.api.inbound import MAX_JSON_DEPTH, parse_json_body
from app.domain.errors import InvalidAmount, ValidationFailed
from app.domain.money import MAX_AMOUNT_CHARS, Asset, parse_amount, parse_config_amount

USDT = Asset("USDT", 8, 1, 10**20, 1)


@pytest.mark.parametrize("text", ["1\n", "1\r\n", "\n1", "1 ", "1.5\n", "\uff11", "\u0661", "1_000"])
def test_an_amount_must_be_exactly_a_plain_decimal(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(text, USDT)


def test_a_very_long_amount_is_invalid_not_a_crash() -> None:
    # 5,000 digits is past Python's int-string limit (4,300): int() would raise ValueError.
    for text in ("9" * 5000, "1." + "0" * 5000, "9" * (MAX_AMOUNT_CHARS + 1)):
        with pytest.raises(InvalidAmount):
            parse_amount(text, USDT, bounded=False)


def test_a_configured_amount_is_held_to_the_same_rules() -> None:
    with pytest.raises(ValueError):
        parse_config_amount("1\n", 8)
    with pytest.raises(ValueError):
        parse_config_amount("9" * 5000, 8)
    assert parse_config_amount("1.5", 8) == 150_000_000


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 60_000,
        b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
        b'{"a": ' + b"9" * 5000 + b"}",
        b'{"a": 1.' + b"0" * 5000 + b"}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"\xff\xfe",
        b'{"a": 1',
    ],
)
def test_a_hostile_json_body_is_a_validation_error(raw: bytes) -> None:
    with pytest.raises(ValidationFailed):
        parse_json_body(raw)


def test_an_ordinary_body_parses() -> None:
    nested = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json_body(b'{"amount": "1.5", "user_id": 3001}') == {"amount": "1.5", "user_id": 3001}
    assert parse_json_body(nested) is not None
