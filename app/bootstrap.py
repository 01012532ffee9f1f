"""The composition root: builds every adapter and service from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from app.adapters.backend_url import BackendUrl
from app.adapters.instrumented import instrumented
from app.config import PROJECT_ROOT, Settings
from app.domain.limits import DefaultLimits
from app.domain.money import AssetCatalog
from app.ports.bus import ServiceBus
from app.ports.ledger import Ledger
from app.ports.store import TransferStore
from app.ports.worker_ids import WorkerIdLeases
from app.services.accounts import AccountService
from app.services.dependencies import Dependencies, utc_now
from app.services.events import EventDispatcher, EventRelay
from app.services.limits import LimitService
from app.services.operations import OperatorService
from app.services.queries import TransferQueries
from app.services.reconciliation import ReconciliationPolicy, ReconciliationService
from app.services.recovery import RecoveryPolicy, RecoveryService
from app.services.settle import Settle
from app.services.submit import Submit
from app.services.worker_ids import LeasedIdGenerator, LeaseTiming

if TYPE_CHECKING:
    from app.adapters.kafka_monitor import KafkaMonitor

log = logging.getLogger(__name__)


def _sqlite_path(url: str) -> str:
    """sqlite:///var/store.db is under the project; sqlite:////abs/path is absolute."""
    # The one URL rule (app/adapters/backend_url.py): these file URLs know no option.
    path = BackendUrl.parse(url, urlparse(url).scheme).path.removeprefix("/")
    if path == ":memory:" or Path(path).is_absolute():
        return path
    return str(PROJECT_ROOT / path)


def make_store(url: str, credentials: tuple[str, str] | None = None) -> TransferStore:
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from app.adapters.sqlite_store import SqliteTransferStore

        return SqliteTransferStore(_sqlite_path(url))
    if scheme == "cassandra":
        from app.adapters.cassandra_store import CassandraTransferStore

        return CassandraTransferStore.from_url(url, credentials)
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

        BackendUrl.parse(url, scheme)  # the one URL rule: it knows no option
        return InProcessServiceBus()
    if scheme == "kafka":
        from app.adapters.kafka_bus import KafkaServiceBus

        return KafkaServiceBus.from_url(url)
    raise ValueError(f"BUS_URL scheme {scheme!r} is not supported")


def make_bus_monitor(url: str) -> KafkaMonitor | None:
    """What reads the bus's consumer lag and dead letters from its brokers; None for the in-process bus."""
    if urlparse(url).scheme == "kafka":
        from app.adapters.kafka_monitor import KafkaMonitor

        return KafkaMonitor.from_url(url)
    return None


def make_worker_id_leases(store_url: str, store: TransferStore) -> WorkerIdLeases:
    """Leases live beside the transfers: the store's keyspace, or a file next to its SQLite file."""
    scheme = urlparse(store_url).scheme
    if scheme == "cassandra":
        from app.adapters.cassandra_store import CassandraTransferStore
        from app.adapters.cassandra_worker_ids import CassandraWorkerIdLeases

        if not isinstance(store, CassandraTransferStore):
            raise ValueError("a cassandra STORE_URL needs the Cassandra store for its worker-id leases")
        return CassandraWorkerIdLeases(store)
    if scheme == "sqlite":
        from app.adapters.sqlite_worker_ids import SqliteWorkerIdLeases

        path = _sqlite_path(store_url)
        return SqliteWorkerIdLeases(path if path == ":memory:" else str(Path(path).with_suffix(".worker_ids.db")))
    raise ValueError(f"STORE_URL scheme {scheme!r} is not supported")


def make_id_generator(settings: Settings, store: TransferStore) -> LeasedIdGenerator:
    timing = LeaseTiming(
        lease_seconds=settings.worker_id_lease_seconds,
        renew_every_seconds=settings.worker_id_renew_seconds,
        safety_margin_seconds=settings.worker_id_safety_margin_seconds,
        max_clock_skew_seconds=settings.worker_id_max_clock_skew_seconds,
    )
    leases = make_worker_id_leases(settings.store_url, store)
    return LeasedIdGenerator(leases, timing, preferred_worker_id=settings.snowflake_worker_id)


@dataclass
class Container:
    settings: Settings
    catalog: AssetCatalog
    store: TransferStore
    ledger: Ledger
    bus: ServiceBus
    # The handlers: every submission, and every terminal status, goes through one of these.
    submit: Submit
    settle: Settle
    queries: TransferQueries
    deps: Dependencies
    accounts: AccountService
    recovery: RecoveryService
    # Run by the worker's scheduler every settings.reconcile_interval_seconds.
    reconciliation: ReconciliationService
    operations: OperatorService
    ids: LeasedIdGenerator
    limits: LimitService
    # Publishes the outbox's leftovers (docs/events.md); run by the scheduler.
    # None where the bus reaches no consumer (in-process over a shared store).
    events_relay: EventRelay | None
    # Publishes each write's events at once; flushed (bounded) on close.
    events_dispatcher: EventDispatcher | None

    def close(self) -> None:
        if self.events_dispatcher is not None and not self.events_dispatcher.flush():
            log.warning("events still queued at shutdown: the relay will publish them")
        # The ids first: releasing the worker id needs the store's session.
        for adapter in (self.ids, self.bus, self.ledger, self.store):
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
    catalog = AssetCatalog.from_toml(Path(settings.assets_file).read_text())
    store = store or make_store(settings.store_url, settings.cassandra_credentials())
    ids = make_id_generator(settings, store)
    ledger = ledger or make_ledger(settings.ledger_url)
    bus = bus or make_bus(settings.bus_url)
    defaults = DefaultLimits.from_toml(Path(settings.assets_file).read_text(), catalog)
    # The services see the backends through a proxy that times each call
    # (dependency metrics); the container keeps the adapters themselves.
    timed_store, timed_ledger = instrumented(store, "store"), instrumented(ledger, "ledger")
    timed_bus = instrumented(bus, "bus")
    deps = Dependencies.over(catalog, ids, timed_store, timed_ledger, timed_bus)
    limits = LimitService(deps.overrides, deps.quotas, catalog, defaults, utc_now)
    # Every durable status write hands its events to the dispatcher (docs/events.md).
    relay: EventRelay | None = None
    dispatcher: EventDispatcher | None = None
    if settings.embedded_bus and not settings.store_url.startswith("sqlite:"):
        # An in-process bus over a shared store (a tool, a test's view of a
        # deployment) reaches no consumer: publishing there would flag events
        # nobody got. They stay in the outbox for the relay of a process on the real bus.
        log.info("in-process bus over a shared store: events are left to the relay of the real bus")
    else:
        dispatcher = EventDispatcher(deps.outbox, deps.bus)
        store.outbox_listener = dispatcher
        relay = EventRelay(deps.outbox, deps.bus, utc_now, timedelta(seconds=settings.events_relay_grace_seconds))
    settle = Settle(deps)
    policy = RecoveryPolicy(
        requesting_grace=timedelta(seconds=settings.requesting_grace_seconds),
        resend_after=timedelta(seconds=settings.resend_after_seconds),
    )
    reconciliation = ReconciliationPolicy(
        window=timedelta(seconds=settings.reconcile_window_seconds),
        grace=timedelta(seconds=settings.reconcile_grace_seconds),
        limit=settings.reconcile_limit,
    )
    return Container(
        settings=settings,
        catalog=catalog,
        store=store,
        ledger=ledger,
        bus=bus,
        submit=Submit(deps, limits, settle),
        settle=settle,
        queries=TransferQueries(deps),
        deps=deps,
        accounts=AccountService(ledger, catalog, ids, store),
        recovery=RecoveryService(deps, settle, policy),
        reconciliation=ReconciliationService(deps, reconciliation),
        operations=OperatorService(deps, settle),
        ids=ids,
        limits=limits,
        events_relay=relay,
        events_dispatcher=dispatcher,
    )
