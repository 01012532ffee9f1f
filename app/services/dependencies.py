"""The ports the handlers and services work through, bundled once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.ids import IdGenerator
from app.domain.money import AssetCatalog
from app.ports.bus import ServiceBus
from app.ports.ledger import Ledger, LedgerAccounts, LedgerMoves, LedgerQuotas
from app.ports.store import (
    BatchRecords,
    DepositRecords,
    EventOutbox,
    IdempotencyKeys,
    LimitOverrides,
    OpenTransfers,
    TransferRecords,
    TransferStore,
)


@dataclass(frozen=True)
class Dependencies:
    """Each field is one narrow port; one adapter may stand behind several of them."""

    catalog: AssetCatalog
    ids: IdGenerator
    keys: IdempotencyKeys
    transfers: TransferRecords
    batches: BatchRecords
    open_set: OpenTransfers
    outbox: EventOutbox
    overrides: LimitOverrides
    deposits: DepositRecords
    moves: LedgerMoves
    quotas: LedgerQuotas
    accounts: LedgerAccounts
    bus: ServiceBus

    @classmethod
    def over(
        cls, catalog: AssetCatalog, ids: IdGenerator, store: TransferStore, ledger: Ledger, bus: ServiceBus
    ) -> Dependencies:
        """Every store port from one store adapter, every ledger port from one ledger adapter."""
        return cls(
            catalog=catalog,
            ids=ids,
            keys=store,
            transfers=store,
            batches=store,
            open_set=store,
            outbox=store,
            overrides=store,
            deposits=store,
            moves=ledger,
            quotas=ledger,
            accounts=ledger,
            bus=bus,
        )
