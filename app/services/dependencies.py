"""The ports the handlers and services work through, bundled once by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from app.domain.ids import IdGenerator
from app.domain.money import AssetCatalog
from app.ports.bus import ServiceBus
from app.ports.ledger import IdempotencyKeys, Ledger, LedgerAccounts, LedgerMoves, LedgerQuotas
from app.ports.store import (
    BatchRecords,
    DepositRecords,
    EventOutbox,
    LimitOverrides,
    OpenTransfers,
    TransferRecords,
    TransferStore,
)

Clock = Callable[[], datetime]


# A partial of the C function, not a Python one: the clock is read several times per request.
utc_now: Clock = partial(datetime.now, UTC)


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
    # The one clock every handler and service reads (tests pass a fake one).
    clock: Clock = utc_now

    @classmethod
    def over(
        cls,
        catalog: AssetCatalog,
        ids: IdGenerator,
        store: TransferStore,
        ledger: Ledger,
        bus: ServiceBus,
        clock: Clock = utc_now,
    ) -> Dependencies:
        """Every store port from one store adapter, every ledger port from one ledger adapter."""
        return cls(
            catalog=catalog,
            ids=ids,
            keys=ledger,
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
            clock=clock,
        )
