from __future__ import annotations

import pytest

from app.domain.account_model import KEY_CLAIMS_LEDGER
from app.domain.errors import ValidationFailed
from app.domain.money import MAX_ASSET_LEDGER, Asset, AssetCatalog, format_units, parse_amount

ASSET = Asset(symbol="USDT", decimals=8, min_units=1, max_units=10**8 * 100_000_000, ledger=3)
WIDE = Asset(symbol="BIG", decimals=18, min_units=1, max_units=2**100, ledger=9)


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("100", 100 * 10**8),
        ("100.00000000", 100 * 10**8),
        ("0.00000001", 1),  # one unit
        ("1.5", 150_000_000),
        ("100000000", 10**8 * 100_000_000),  # the largest allowed amount
        ("0.1", 10_000_000),
    ],
)
def test_parses_plain_decimals_exactly(text: str, units: int) -> None:
    assert parse_amount(text, ASSET) == units


@pytest.mark.parametrize(
    "value",
    [
        100,
        1.5,
        None,
        "",
        " 1",
        "1 ",
        "+1",
        "-1",
        "1e3",
        "1E3",
        "0x10",
        "1.",
        ".5",
        "01",
        "1,5",
        "NaN",
        "Infinity",
        "١٢",
        "0",
        "0.00000000",
        True,
    ],
)
def test_refuses_anything_but_a_plain_positive_decimal_string(value: object) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_amount(value, ASSET)
    assert caught.value.code == "INVALID_AMOUNT"


def test_more_decimals_than_the_asset_has_is_a_precision_error() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_amount("0.000000001", ASSET)
    assert caught.value.code == "INVALID_PRECISION"
    with pytest.raises(ValidationFailed) as trailing_zero:
        parse_amount("1.000000000", ASSET)
    assert trailing_zero.value.code == "INVALID_PRECISION"


def test_limits() -> None:
    tight = Asset(symbol="X", decimals=2, min_units=100, max_units=10_000, ledger=1)
    with pytest.raises(ValidationFailed) as small:
        parse_amount("0.99", tight)
    assert small.value.code == "AMOUNT_TOO_SMALL"
    with pytest.raises(ValidationFailed) as large:
        parse_amount("100.01", tight)
    assert large.value.code == "AMOUNT_TOO_LARGE"
    assert parse_amount("100.00", tight) == 10_000
    assert parse_amount("1", tight) == 100


def test_values_over_two_to_the_64_units_are_not_truncated() -> None:
    # 2**64 + 1 units: a 64-bit parser would wrap this to 1 unit.
    text = format_units(2**64 + 1, 18)
    assert parse_amount(text, WIDE) == 2**64 + 1
    with pytest.raises(ValidationFailed) as caught:
        parse_amount("184467440737.09551617", ASSET)
    assert caught.value.code == "AMOUNT_TOO_LARGE"


def test_formats_with_exactly_the_asset_decimals() -> None:
    assert format_units(1, 8) == "0.00000001"
    assert format_units(150_000_000, 8) == "1.50000000"
    assert format_units(0, 8) == "0.00000000"
    assert format_units(2**64 + 1, 8) == "184467440737.09551617"
    assert format_units(7, 0) == "7"


def test_unbounded_parse_skips_transfer_limits() -> None:
    assert parse_amount("1000000000", ASSET, bounded=False) == 10**17


@pytest.mark.parametrize("ledger", [0, MAX_ASSET_LEDGER + 1, KEY_CLAIMS_LEDGER])
def test_an_asset_ledger_outside_the_sixteen_bits_quotas_use_is_refused(ledger: int) -> None:
    with pytest.raises(ValueError, match="ledger number is 1 to 65535"):
        AssetCatalog([Asset("XYZ", 8, 1, 10**20, ledger)])
    AssetCatalog([Asset("XYZ", 8, 1, 10**20, MAX_ASSET_LEDGER)])  # the largest allowed
