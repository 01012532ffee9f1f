"""Settings, all from the environment. Defaults give the embedded backends.

The one place that reads the process environment: everything else is handed
the typed settings below by the composition root (app/bootstrap.py), the app
factory (app/factory.py) or a process's `main`. tests/unit/test_one_configuration.py
fails on a read anywhere else.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

DEV_JWT_SECRET = "dev-only-secret-do-not-use-in-production"  # noqa: S105 - public by design, warned about
DEV_OPERATOR_JWT_SECRET = "dev-only-operator-secret-do-not-use-in-production"  # noqa: S105 - as above
PUBLIC_DEV_SECRETS = frozenset({DEV_JWT_SECRET, DEV_OPERATOR_JWT_SECRET})
MIN_SECRET_LENGTH = 32
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# prometheus-client reads this one itself, once, when first imported.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _secret(name: str) -> str:
    # Not stripped: a password's spaces are part of it.
    return os.environ.get(name, "")


def _optional(name: str) -> str | None:
    return _env(name, "") or None


def _optional_int(name: str) -> int | None:
    value = _env(name, "")
    return int(value) if value else None


def _flag(name: str, default: bool) -> bool:
    value = _env(name, "")
    if not value:
        return default
    return value.lower() not in ("0", "false", "no", "off")


def _default_assets_file() -> str:
    return _env("ASSETS_FILE", str(PROJECT_ROOT / "app" / "assets.toml"))


def url_passwords(url: str) -> list[str]:
    """The password in a URL's user info, as written and percent-decoded; none when it has none."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def redact_url(url: str) -> str:
    """The URL with its password, if any, replaced: fit for a log line or a repr."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        hosts = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{hosts}"))
    except ValueError:
        return "<unparsable URL>"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach.

    A unix socket does not count: a proxy in front of one serves anyone.
    """
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_host(address: str) -> str:
    """The host part of a gunicorn-style bind: `host:port`, `[v6]:port`, `unix:path`, or a bare host."""
    if address.startswith("unix:") or "://" in address:
        return address  # a unix socket, or gunicorn's fd://: never loopback
    if address.startswith("["):
        return address[1 : address.index("]")]
    if address.count(":") == 1:
        return address.rsplit(":", 1)[0]
    return address


# Fields whose values are never shown (repr) and are scrubbed from every log line.
_SECRET_FIELDS = frozenset({"jwt_secret", "operator_jwt_secret", "cassandra_password"})
_URL_FIELDS = ("store_url", "ledger_url", "bus_url", "ratelimit_storage_uri")


@dataclass(frozen=True)
class Settings:
    store_url: str = field(default_factory=lambda: _env("STORE_URL", "sqlite:///var/store.db"))
    ledger_url: str = field(default_factory=lambda: _env("LEDGER_URL", "embedded:///var/ledger.db"))
    bus_url: str = field(default_factory=lambda: _env("BUS_URL", "inprocess://"))
    # Users' tokens and operators' tokens are signed with different keys, so
    # whoever can mint user tokens (a login service) cannot mint operator ones.
    jwt_secret: str = field(default_factory=lambda: _env("JWT_SECRET", ""))
    operator_jwt_secret: str = field(default_factory=lambda: _env("OPERATOR_JWT_SECRET", ""))
    # Cassandra's credentials, for a STORE_URL that carries none of its own.
    cassandra_username: str = field(default_factory=lambda: _env("CASSANDRA_USERNAME", ""))
    cassandra_password: str = field(default_factory=lambda: _secret("CASSANDRA_PASSWORD"))
    # The keyspace's replication for `db init` (schema/001_keyspace.cql); None: SimpleStrategy, 1.
    cassandra_replication: str | None = field(default_factory=lambda: _optional("CASSANDRA_REPLICATION"))
    jwt_issuer: str = field(default_factory=lambda: _env("JWT_ISSUER", "internal-transfer"))
    jwt_audience: str = field(default_factory=lambda: _env("JWT_AUDIENCE", "internal-transfer"))
    # A token whose lifetime (exp - iat) is longer is refused, and the CLI mints none.
    jwt_max_ttl_seconds: int = field(default_factory=lambda: int(_env("JWT_MAX_TTL_SECONDS", "86400")))
    assets_file: str = field(default_factory=_default_assets_file)
    scanner_interval_seconds: float = field(default_factory=lambda: float(_env("SCANNER_INTERVAL_SECONDS", "5")))
    requesting_grace_seconds: float = field(default_factory=lambda: float(_env("REQUESTING_GRACE_SECONDS", "30")))
    resend_after_seconds: float = field(default_factory=lambda: float(_env("RESEND_AFTER_SECONDS", "30")))
    # The event relay (docs/events.md): how often it runs, and how old an
    # unpublished event must be before it, not the inline publish, sends it.
    events_relay_interval_seconds: float = field(
        default_factory=lambda: float(_env("EVENTS_RELAY_INTERVAL_SECONDS", "5"))
    )
    events_relay_grace_seconds: float = field(default_factory=lambda: float(_env("EVENTS_RELAY_GRACE_SECONDS", "10")))
    # "auto": run the settlement consumer, scanner (and, on the in-process
    # bus, the reference engine) inside the web process in embedded mode only.
    background_workers: str = field(default_factory=lambda: _env("BACKGROUND_WORKERS", "auto"))
    # The continuous reconciliation, on the worker's scheduler (docs/runbook.md).
    reconcile_interval_seconds: float = field(default_factory=lambda: float(_env("RECONCILE_INTERVAL_SECONDS", "300")))
    reconcile_window_seconds: float = field(default_factory=lambda: float(_env("RECONCILE_WINDOW_SECONDS", "900")))
    reconcile_grace_seconds: float = field(default_factory=lambda: float(_env("RECONCILE_GRACE_SECONDS", "30")))
    reconcile_limit: int = field(default_factory=lambda: int(_env("RECONCILE_LIMIT", "10000")))
    # The worker's backend pings and Kafka lag/DLQ reads.
    health_interval_seconds: float = field(default_factory=lambda: float(_env("HEALTH_INTERVAL_SECONDS", "10")))
    # The worker id this process would rather lease (still leased, so never
    # shared); any free one when unset or held by another live process.
    snowflake_worker_id: int | None = field(default_factory=lambda: _optional_int("SNOWFLAKE_WORKER_ID"))
    worker_id_lease_seconds: float = field(default_factory=lambda: float(_env("WORKER_ID_LEASE_SECONDS", "30")))
    worker_id_renew_seconds: float = field(default_factory=lambda: float(_env("WORKER_ID_RENEW_SECONDS", "10")))
    worker_id_safety_margin_seconds: float = field(
        default_factory=lambda: float(_env("WORKER_ID_SAFETY_MARGIN_SECONDS", "5"))
    )
    # How far apart the wall clocks of any two processes may be (NTP keeps
    # them within milliseconds); a lease is taken over only this long after
    # its recorded expiry.
    worker_id_max_clock_skew_seconds: float = field(
        default_factory=lambda: float(_env("WORKER_ID_MAX_CLOCK_SKEW_SECONDS", "5"))
    )
    # Per-user rate of transfer POSTs (Flask-Limiter syntax): a burst per second
    # and a sustained rate per minute. The counters' storage: memory:// is per
    # process; several processes need a shared one (redis://, memcached://).
    transfer_rate_limit: str = field(
        default_factory=lambda: _env("TRANSFER_RATE_LIMIT", "10 per second;120 per minute")
    )
    # Per-caller rate of every authenticated GET (each route its own budget):
    # a history page reads index rows and records, so reads are not free.
    read_rate_limit: str = field(default_factory=lambda: _env("READ_RATE_LIMIT", "20 per second;600 per minute"))
    ratelimit_storage_uri: str = field(default_factory=lambda: _env("RATELIMIT_STORAGE_URI", "memory://"))
    # "text" for readable lines locally; anything else is one JSON object per line.
    log_format: str = field(default_factory=lambda: _env("LOG_FORMAT", "json").lower())
    log_level: str = field(default_factory=lambda: _env("LOG_LEVEL", "INFO").upper())
    # /metrics on a port of its own (the worker's; the engine's and the gunicorn
    # master's are in their own settings below), bound to this address.
    metrics_port: int | None = field(default_factory=lambda: _optional_int("METRICS_PORT"))
    metrics_addr: str = field(default_factory=lambda: _env("METRICS_ADDR", "127.0.0.1"))
    # /metrics on the web's own (public) listener too; by default only
    # WEB_METRICS_PORT serves it: it tells anyone volumes and failure reasons.
    metrics_on_web: bool = field(default_factory=lambda: _flag("METRICS_ON_WEB", False))
    # Set (by gunicorn.conf.py) when several processes share one set of metrics files.
    prometheus_multiproc_dir: str | None = field(default_factory=lambda: _optional(METRICS_DIR_VARIABLE))

    def __repr__(self) -> str:
        # Settings may end up in a log line or a traceback: never with a secret in it.
        shown = []
        for each in fields(self):
            value = getattr(self, each.name)
            if each.name in _SECRET_FIELDS:
                value = "***" if value else ""
            elif each.name in _URL_FIELDS:
                value = redact_url(value)
            shown.append(f"{each.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def log_as_text(self) -> bool:
        return self.log_format == "text"

    def secret_values(self) -> list[str]:
        """Every configured secret, passwords in URLs included, for the log scrubber."""
        values = [getattr(self, name) for name in sorted(_SECRET_FIELDS)]
        for name in _URL_FIELDS:
            values += url_passwords(getattr(self, name))
        return [value for value in values if value]

    def cassandra_credentials(self) -> tuple[str, str] | None:
        """(username, password) from CASSANDRA_USERNAME/CASSANDRA_PASSWORD, or None when unset."""
        return (self.cassandra_username, self.cassandra_password) if self.cassandra_username else None

    @property
    def embedded_bus(self) -> bool:
        return self.bus_url.startswith("inprocess:")

    @property
    def runs_background_workers(self) -> bool:
        if self.background_workers == "auto":
            return self.embedded_bus
        return self.background_workers.lower() in ("1", "true", "yes")

    @property
    def fully_embedded(self) -> bool:
        return (
            self.store_url.startswith("sqlite:")
            and self.ledger_url.startswith("embedded:")
            and self.bus_url.startswith("inprocess:")
        )

    @property
    def uses_dev_secrets(self) -> bool:
        """Embedded mode with no secrets set: the public development secrets sign tokens."""
        return not self.jwt_secret and not self.operator_jwt_secret

    def effective_jwt_secret(self) -> str:
        return self.effective_secrets()[0]

    def effective_secrets(self) -> tuple[str, str]:
        """(the user-token key, the operator-token key); raises unless both are safe to use."""
        if self.jwt_secret or self.operator_jwt_secret:
            for name, value in (("JWT_SECRET", self.jwt_secret), ("OPERATOR_JWT_SECRET", self.operator_jwt_secret)):
                if not value:
                    raise RuntimeError(f"{name} must be set: users and operators need a key each")
                if len(value) < MIN_SECRET_LENGTH:
                    raise RuntimeError(f"{name} must be at least {MIN_SECRET_LENGTH} characters")
                if value in PUBLIC_DEV_SECRETS:
                    raise RuntimeError(f"{name} is one of the public development secrets: anyone could mint tokens")
            if self.jwt_secret == self.operator_jwt_secret:
                raise RuntimeError("OPERATOR_JWT_SECRET must differ from JWT_SECRET")
            if self.jwt_max_ttl_seconds <= 0:
                raise RuntimeError("JWT_MAX_TTL_SECONDS must be positive")
            return self.jwt_secret, self.operator_jwt_secret
        if not self.fully_embedded:
            # Real backends mean real money: a public secret would let anyone
            # mint an operator token and credit deposits.
            raise RuntimeError("JWT_SECRET and OPERATOR_JWT_SECRET must be set when any backend is not embedded")
        log.warning(
            "!!! JWT_SECRET is not set: using the well-known development secrets. "
            "Anyone can mint tokens, so the service listens on loopback only. Never run like this in production. !!!"
        )
        return DEV_JWT_SECRET, DEV_OPERATOR_JWT_SECRET

    def check_listen_addresses(self, addresses: Iterable[str]) -> None:
        """Refuse to serve beyond this machine while the public development secrets sign tokens."""
        if not self.uses_dev_secrets:
            return
        public = [a for a in addresses if not is_loopback(listen_host(a))]
        if public:
            raise RuntimeError(
                f"refusing to listen on {', '.join(public)} with the public development secrets:"
                " anyone could mint an operator token. Set JWT_SECRET and OPERATOR_JWT_SECRET, or bind to 127.0.0.1."
            )


@dataclass(frozen=True)
class ReferenceEngineSettings:
    """The reference engine's own settings: a stand-in for the exchange's engine, in dev and tests only.

    Not part of Settings: the production composition root knows nothing of it.
    """

    # Reject every request whose amount, in minor units, ends with these digits.
    reject_suffix: str = field(default_factory=lambda: _env("REFERENCE_ENGINE_REJECT_SUFFIX", ""))
    # Where it remembers what it applied; in memory unless given.
    db_path: str = field(default_factory=lambda: _env("REFERENCE_ENGINE_DB", ":memory:"))
    metrics_port: int | None = field(default_factory=lambda: _optional_int("ENGINE_METRICS_PORT"))


@dataclass(frozen=True)
class GunicornSettings:
    """What gunicorn.conf.py needs before any app exists."""

    bind: str = field(default_factory=lambda: _env("BIND", f"127.0.0.1:{_env('PORT', '8000')}"))
    threads: int = field(default_factory=lambda: int(_env("GUNICORN_THREADS", "8")))
    # Worker processes on the real backends; embedded mode always runs one.
    web_concurrency: int = field(default_factory=lambda: int(_env("WEB_CONCURRENCY", "2")))
    # /metrics from the master, on a port of its own (METRICS_ADDR).
    web_metrics_port: int | None = field(default_factory=lambda: _optional_int("WEB_METRICS_PORT"))


def claim_metrics_dir() -> tuple[Path, bool]:
    """The multiprocess metrics directory: PROMETHEUS_MULTIPROC_DIR, or a fresh one it is set to.

    True when the directory is fresh (ours to remove at exit). Must run before
    anything imports prometheus_client, which reads the variable once; so this
    module imports nothing of the service.
    """
    given = _optional(METRICS_DIR_VARIABLE)
    if given:
        return Path(given), False
    fresh = tempfile.mkdtemp(prefix="internal-transfer-metrics-")
    os.environ[METRICS_DIR_VARIABLE] = fresh
    return Path(fresh), True


@dataclass(frozen=True)
class EventsTailSettings:
    """`python -m consumers.events_tail` reads Kafka whatever the service's bus: a bare broker list will do."""

    kafka_bootstrap_servers: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS", ""))

    def kafka_url(self, bus_url: str) -> str:
        if bus_url.startswith("kafka://"):
            return bus_url
        if self.kafka_bootstrap_servers:
            return f"kafka://{self.kafka_bootstrap_servers}"
        raise ValueError("events_tail reads Kafka: set BUS_URL=kafka://... (or KAFKA_BOOTSTRAP_SERVERS)")
