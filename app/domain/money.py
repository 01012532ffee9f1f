"""Amounts as integers of an asset's smallest unit; decimal strings only at the edges.

No float is ever involved: parsing is done on the string's digits.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass

from app.domain.errors import AmountTooLarge, AmountTooSmall, InvalidAmount, InvalidPrecision, ValidationFailed

# Used with fullmatch only: `$` would also match before a final "\n", so "1\n" would pass.
# ASCII digits only: `[0-9]`, never `\d`, which matches any Unicode digit.
_PLAIN_DECIMAL = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")

# Longer than any amount an asset can hold (the ledger's 128-bit balances have
# 39 digits), far below Python's int-string limit (4,300 digits), which would
# otherwise raise ValueError deep in int() and answer 500.
MAX_AMOUNT_CHARS = 80


# Quota account ids hold an asset's ledger in 16 bits; the ledger above is the key claims' (account_model).
MAX_ASSET_LEDGER = (1 << 16) - 1


@dataclass(frozen=True)
class Asset:
    symbol: str
    decimals: int
    min_units: int
    max_units: int
    ledger: int

    def parse(self, text: object, *, bounded: bool = True) -> int:
        return parse_amount(text, self, bounded=bounded)

    def format(self, units: int) -> str:
        return format_units(units, self.decimals)


def parse_amount(text: object, asset: Asset, *, bounded: bool = True) -> int:
    """Turn a client's decimal string into minor units, refusing anything ambiguous.

    `bounded` applies the asset's transfer limits (deposits are not transfers).
    """
    if not isinstance(text, str):
        raise InvalidAmount("amount must be a decimal string")
    if len(text) > MAX_AMOUNT_CHARS:
        raise InvalidAmount(f"amount must be at most {MAX_AMOUNT_CHARS} characters")
    match = _PLAIN_DECIMAL.fullmatch(text)
    if match is None:
        raise InvalidAmount('amount must be a plain positive decimal string such as "100.5"')
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > asset.decimals:
        # Trailing zeros beyond the precision are still refused: the client
        # must not believe the service keeps digits it does not.
        raise InvalidPrecision(f"{asset.symbol} has {asset.decimals} decimals", decimals=asset.decimals)
    units = int(whole + fraction.ljust(asset.decimals, "0"))
    if units == 0:
        raise InvalidAmount("amount must be greater than zero")
    if not bounded:
        return units
    if units < asset.min_units:
        raise AmountTooSmall(
            f"amount is below the minimum {asset.format(asset.min_units)}", min_amount=asset.format(asset.min_units)
        )
    if units > asset.max_units:
        raise AmountTooLarge(
            f"amount is above the maximum {asset.format(asset.max_units)}", max_amount=asset.format(asset.max_units)
        )
    return units


def parse_config_amount(text: str, decimals: int) -> int:
    """Parse an amount from trusted configuration (no min/max applies)."""
    match = _PLAIN_DECIMAL.fullmatch(text) if len(text) <= MAX_AMOUNT_CHARS else None
    if match is None or len(match.group(2) or "") > decimals:
        raise ValueError(f"bad configured amount {text!r}")
    return int(match.group(1) + (match.group(2) or "").ljust(decimals, "0"))


def format_units(units: int, decimals: int) -> str:
    """Minor units to a decimal string with exactly `decimals` places."""
    sign = "-" if units < 0 else ""
    digits = str(abs(units)).rjust(decimals + 1, "0")
    if decimals == 0:
        return sign + digits
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


class AssetCatalog:
    """The supported assets, by symbol (configured in app/assets.toml)."""

    def __init__(self, assets: list[Asset]) -> None:
        self._by_symbol = {asset.symbol: asset for asset in assets}
        ledgers = [asset.ledger for asset in assets]
        if len(set(ledgers)) != len(ledgers):
            raise ValueError("each asset needs its own ledger number")
        if any(not 0 < ledger <= MAX_ASSET_LEDGER for ledger in ledgers):
            raise ValueError(f"an asset's ledger number is 1 to {MAX_ASSET_LEDGER}")

    @classmethod
    def from_toml(cls, text: str) -> AssetCatalog:
        assets = []
        for symbol, spec in tomllib.loads(text)["assets"].items():
            decimals = int(spec["decimals"])
            assets.append(
                Asset(
                    symbol=symbol,
                    decimals=decimals,
                    min_units=parse_config_amount(spec["min_amount"], decimals),
                    max_units=parse_config_amount(spec["max_amount"], decimals),
                    ledger=int(spec["ledger"]),
                )
            )
        return cls(assets)

    def get(self, symbol: object) -> Asset:
        asset = self._by_symbol.get(symbol) if isinstance(symbol, str) else None
        if asset is None:
            raise ValidationFailed(f"asset {symbol!r} is not supported", code="UNSUPPORTED_ASSET")
        return asset

    def __iter__(self) -> Iterator[Asset]:
        return iter(self._by_symbol.values())
