"""The composition root: builds every adapter and service from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from app.config import PROJECT_ROOT, Settings
from app.domain.assets import AssetCatalog
from app.domain.ids import SnowflakeGenerator, process_worker_id
from app.ports.bus import EngineBus, ServiceBus
from app.ports.ledger import Ledger
from app.ports.store import TransferStore
from app.services.accounts import AccountService
from app.services.operations import OperatorService
from app.services.recovery import RecoveryPolicy, RecoveryService
from app.services.transfers import TransferService

log = logging.getLogger(__name__)


def _sqlite_path(url: str) -> str:
    """sqlite:///var/store.db is under the project; sqlite:////abs/path is absolute."""
    path = url.split("://", 1)[1].removeprefix("/")
    if path == ":memory:" or Path(path).is_absolute():
        return path
    return str(PROJECT_ROOT / path)


def make_store(url: str) -> TransferStore:
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from app.adapters.sqlite_store import SqliteTransferStore

        return SqliteTransferStore(_sqlite_path(url))
    if scheme == "cassandra":
        from app.adapters.cassandra_store import CassandraTransferStore

        return CassandraTransferStore.from_url(url)
    raise ValueError(f"STORE_URL scheme {scheme!r} is not supported")


def make_ledger(url: str) -> Ledger:
    scheme = urlparse(url).scheme
    if scheme == "embedded":
        from app.adapters.embedded_ledger import EmbeddedLedger

        return EmbeddedLedger(_sqlite_path(url))
    if scheme == "tigerbeetle":
        from app.adapters.tigerbeetle_ledger import TigerBeetleLedger

        return TigerBeetleLedger.from_url(url)
    raise ValueError(f"LEDGER_URL scheme {scheme!r} is not supported")


def make_bus(url: str) -> ServiceBus:
    """The service's side of the bus."""
    scheme = urlparse(url).scheme
    if scheme == "inprocess":
        from app.adapters.inprocess_bus import InProcessServiceBus

        return InProcessServiceBus()
    if scheme == "kafka":
        from app.adapters.kafka_bus import KafkaServiceBus

        return KafkaServiceBus.from_url(url)
    raise ValueError(f"BUS_URL scheme {scheme!r} is not supported")


def make_engine_bus(url: str, service_bus: ServiceBus | None = None) -> EngineBus:
    """The engine's side of the bus, for the reference engine.

    In-process the two sides must share one link, so `service_bus` (the
    service's side, in this same process) is required there; over Kafka the
    engine side has clients of its own, and usually runs in its own process.
    """
    scheme = urlparse(url).scheme
    if scheme == "inprocess":
        from app.adapters.inprocess_bus import InProcessServiceBus

        if not isinstance(service_bus, InProcessServiceBus):
            raise ValueError("an in-process bus's engine side lives in the process of its service side")
        return service_bus.engine_side()
    if scheme == "kafka":
        from app.adapters.kafka_bus import KafkaEngineBus

        return KafkaEngineBus.from_url(url)
    raise ValueError(f"BUS_URL scheme {scheme!r} is not supported")


@dataclass
class Container:
    settings: Settings
    catalog: AssetCatalog
    store: TransferStore
    ledger: Ledger
    bus: ServiceBus
    # The engine's side, for the reference engine; built lazily over Kafka, so
    # it costs nothing in a process that never runs the engine.
    engine_bus: EngineBus
    transfers: TransferService
    accounts: AccountService
    recovery: RecoveryService
    operations: OperatorService

    def close(self) -> None:
        for adapter in (self.engine_bus, self.bus, self.ledger, self.store):
            try:
                adapter.close()
            except Exception:
                log.exception("closing %s failed", type(adapter).__name__)


def build(
    settings: Settings,
    *,
    store: TransferStore | None = None,
    ledger: Ledger | None = None,
    bus: ServiceBus | None = None,
) -> Container:
    catalog = AssetCatalog.from_file(settings.assets_file)
    ids = SnowflakeGenerator(process_worker_id())
    store = store or make_store(settings.store_url)
    ledger = ledger or make_ledger(settings.ledger_url)
    bus = bus or make_bus(settings.bus_url)
    transfers = TransferService(store, ledger, bus, catalog, ids)
    policy = RecoveryPolicy(
        requesting_grace=timedelta(seconds=settings.requesting_grace_seconds),
        resend_after=timedelta(seconds=settings.resend_after_seconds),
    )
    return Container(
        settings=settings,
        catalog=catalog,
        store=store,
        ledger=ledger,
        bus=bus,
        engine_bus=make_engine_bus(settings.bus_url, bus),
        transfers=transfers,
        accounts=AccountService(ledger, catalog, ids),
        recovery=RecoveryService(transfers, policy),
        operations=OperatorService(transfers),
    )
