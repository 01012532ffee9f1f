"""The catalogue of supported assets."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

from app.domain.errors import ValidationFailed
from app.domain.money import Asset, parse_config_amount


class AssetCatalog:
    def __init__(self, assets: list[Asset]) -> None:
        self._by_symbol = {asset.symbol: asset for asset in assets}
        ledgers = [asset.ledger for asset in assets]
        if len(set(ledgers)) != len(ledgers):
            raise ValueError("each asset needs its own ledger number")

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

    @classmethod
    def from_file(cls, path: str | Path) -> AssetCatalog:
        return cls.from_toml(Path(path).read_text())

    def get(self, symbol: object) -> Asset:
        asset = self._by_symbol.get(symbol) if isinstance(symbol, str) else None
        if asset is None:
            raise ValidationFailed(f"asset {symbol!r} is not supported", code="UNSUPPORTED_ASSET")
        return asset

    def __iter__(self) -> Iterator[Asset]:
        return iter(self._by_symbol.values())
