"""The service wired to the embedded adapters, driven step by step."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.adapters.embedded_ledger import EmbeddedLedger
from app.adapters.inprocess_bus import InProcessServiceBus
from app.adapters.sqlite_store import SqliteTransferStore
from app.config import PROJECT_ROOT
from app.domain.ids import SnowflakeGenerator
from app.domain.limits import DefaultLimits
from app.domain.money import AssetCatalog
from app.domain.transfer import AccountType, Transfer, TransferCommand
from app.ports.store import TransferStore
from app.services.accounts import AccountService
from app.services.dependencies import Dependencies
from app.services.limits import LimitService
from app.services.queries import TransferQueries
from app.services.recovery import RecoveryPolicy, RecoveryService
from app.services.settle import Settle
from app.services.submit import Submit
from consumers.reference_engine import ReferenceEngine
from consumers.settlement import SettlementConsumer
from tests.support.inprocess_bus import deliver_queued


@dataclass
class FakeClock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 24, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        catalog: AssetCatalog,
        store: TransferStore | None = None,
        clock: FakeClock | None = None,
        policy: RecoveryPolicy | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self._funded = 0
        self.store = store or SqliteTransferStore(str(tmp_path / "store.db"))
        self.ledger = EmbeddedLedger(str(tmp_path / "ledger.db"))
        self.bus = InProcessServiceBus()
        # Ids follow the fake clock, as real ones follow the real one.
        ids = SnowflakeGenerator(1, clock_ms=lambda: int(self.clock().timestamp() * 1000))
        defaults = DefaultLimits.from_toml((PROJECT_ROOT / "app" / "assets.toml").read_text(), catalog)
        self.limits = LimitService(self.store, self.ledger, catalog, defaults, self.clock)
        self.deps = Dependencies.over(catalog, ids, self.store, self.ledger, self.bus, self.clock)
        self.settle = Settle(self.deps)
        self.submit = Submit(self.deps, self.limits, self.settle)
        self.queries = TransferQueries(self.deps)
        self.accounts = AccountService(self.ledger, catalog, ids, self.store, self.clock)
        self.recovery = RecoveryService(self.deps, self.settle, policy or RecoveryPolicy())
        self.engine = ReferenceEngine(self.bus.engine_side())
        self.settlement = SettlementConsumer(self.bus, self.settle)

    def pump(self) -> int:
        """Let the engine answer and settlement apply everything queued."""
        return deliver_queued(self.bus, self.engine.handle_batch, self.settlement.handle_batch)

    def fund(self, user_id: int, amount: str = "1000", asset: str = "USDT") -> None:
        self._funded += 1
        self.accounts.deposit(user_id, asset, amount, f"fund-{self._funded}", "operator:test", "test funds")

    def command(self, user_id: int, units: int, from_type: AccountType = AccountType.FUNDING) -> TransferCommand:
        to_type = AccountType.SPOT if from_type == AccountType.FUNDING else AccountType.FUNDING
        return TransferCommand(user_id=user_id, asset="USDT", from_type=from_type, to_type=to_type, amount=units)

    def reload(self, transfer: Transfer) -> Transfer:
        found = self.store.get(transfer.request_id)
        assert found is not None
        return found

    def balance(self, user_id: int, account_type: AccountType) -> tuple[int, int]:
        for entry in self.accounts.balances(user_id):
            if entry.asset.symbol == "USDT" and entry.account_type == account_type:
                return entry.available, entry.locked
        raise AssertionError("no such balance")
