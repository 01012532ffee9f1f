"""Deposits (operator credits) and balances."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

from app.domain.assets import AssetCatalog
from app.domain.ids import IdGenerator
from app.domain.money import Asset
from app.domain.transfer import AccountType
from app.ports.ledger import DepositOutcome, Ledger
from app.services.transfers import IdempotencyKeyReused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deposit:
    deposit_id: int
    user_id: int
    asset: Asset
    amount: int


@dataclass(frozen=True)
class Balance:
    asset: Asset
    account_type: AccountType
    available: int
    locked: int


def deposit_id_for_key(user_id: int, key: str) -> int:
    """A deposit id the same key always maps to, so a retry credits once."""
    digest = hashlib.sha256(f"deposit:{user_id}:{key}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 1) or 1


class AccountService:
    def __init__(self, ledger: Ledger, catalog: AssetCatalog, ids: IdGenerator) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.ids = ids

    def deposit(
        self, user_id: int, asset_symbol: object, amount: object, idempotency_key: str | None, operator: str
    ) -> Deposit:
        asset = self.catalog.get(asset_symbol)
        # The transfer limits bound deposits too, so no credit can overflow an account.
        units = asset.parse(amount)
        # Without a key, a random id: a Snowflake drawn twice by two processes
        # would make the second deposit look like a replay of the first.
        deposit_id = deposit_id_for_key(user_id, idempotency_key) if idempotency_key else secrets.randbits(63) or 1
        if self.ledger.deposit(deposit_id, user_id, asset, units) == DepositOutcome.CONFLICT:
            raise IdempotencyKeyReused("this Idempotency-Key was already used for a different deposit")
        log.info("deposit %s: %s %s to user %s by %s", deposit_id, asset.format(units), asset.symbol, user_id, operator)
        return Deposit(deposit_id=deposit_id, user_id=user_id, asset=asset, amount=units)

    def balances(self, user_id: int) -> list[Balance]:
        assets = list(self.catalog)
        found = {(b.asset, b.account_type): b for b in self.ledger.balances(user_id, assets)}
        balances = []
        for asset in assets:
            for account_type in AccountType:
                entry = found.get((asset.symbol, account_type))
                balances.append(
                    Balance(
                        asset=asset,
                        account_type=account_type,
                        available=entry.available if entry else 0,
                        locked=entry.locked if entry else 0,
                    )
                )
        return balances
