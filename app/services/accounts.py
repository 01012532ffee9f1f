"""Deposits (operator credits) and balances."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.domain.deposit import DepositAudit, check_idempotency_key, check_reason, deposit_id_for_key
from app.domain.errors import IdempotencyKeyReused, ValidationFailed
from app.domain.ids import IdGenerator
from app.domain.money import Asset, AssetCatalog
from app.domain.transfer import AccountType
from app.ports.ledger import DepositOutcome, LedgerAccounts
from app.ports.store import DepositRecords
from app.services.dependencies import utc_now

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


class AccountService:
    def __init__(
        self,
        ledger: LedgerAccounts,
        catalog: AssetCatalog,
        ids: IdGenerator,
        deposits: DepositRecords,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.ids = ids
        self.deposits = deposits
        self.clock = clock

    def deposit(
        self,
        user_id: int,
        asset_symbol: object,
        amount: object,
        idempotency_key: object,
        operator: str,
        reason: str,
    ) -> Deposit:
        """Credit once per key: the audit (who, why) is durable first, then the ledger credits under its id.

        A key is required: without one a retry of a timed-out request would
        credit twice. A crash between the two writes leaves an audit row
        without its credit, which a retry under the same key completes.
        """
        idempotency_key = check_idempotency_key(idempotency_key)
        reason = check_reason(reason)
        if not operator:
            raise ValidationFailed("the operator is required for every deposit", field="operator")
        asset = self.catalog.get(asset_symbol)
        # The transfer limits bound deposits too, so no credit can overflow an account.
        units = asset.parse(amount)
        asked = DepositAudit(
            deposit_id=deposit_id_for_key(user_id, idempotency_key),
            user_id=user_id,
            asset=asset.symbol,
            amount=units,
            operator=operator,
            reason=reason,
            idempotency_key=idempotency_key,
            at=self.clock(),
        )
        kept = self.deposits.record_deposit(asked)
        if not kept.same_request(asked):
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different deposit", deposit_id=str(kept.deposit_id)
            )
        # The ledger transfer's id derives from the audit row's id: the credit names its audit.
        if self.ledger.deposit(kept.deposit_id, user_id, asset, units) == DepositOutcome.CONFLICT:
            raise IdempotencyKeyReused("this Idempotency-Key was already used for a different deposit")
        log.info(
            "deposit %s: %s %s to user %s by %s",
            kept.deposit_id,
            asset.format(units),
            asset.symbol,
            user_id,
            kept.operator,
        )
        return Deposit(deposit_id=kept.deposit_id, user_id=user_id, asset=asset, amount=units)

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
