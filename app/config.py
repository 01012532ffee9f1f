"""Settings, all from the environment. Defaults give the embedded backends."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEV_JWT_SECRET = "dev-only-secret-do-not-use-in-production"  # noqa: S105 - public by design, warned about
DEV_OPERATOR_JWT_SECRET = "dev-only-operator-secret-do-not-use-in-production"  # noqa: S105 - as above
MIN_SECRET_LENGTH = 32
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _optional_int(name: str) -> int | None:
    value = _env(name, "")
    return int(value) if value else None


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (a unix socket counts)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_host(address: str) -> str:
    """The host part of a gunicorn-style bind: `host:port`, `[v6]:port`, `unix:path`, or a bare host."""
    if address.startswith("unix:"):
        return "localhost"
    if address.startswith("["):
        return address[1 : address.index("]")]
    if address.count(":") == 1:
        return address.rsplit(":", 1)[0]
    return address


@dataclass(frozen=True)
class Settings:
    store_url: str = field(default_factory=lambda: _env("STORE_URL", "sqlite:///var/store.db"))
    ledger_url: str = field(default_factory=lambda: _env("LEDGER_URL", "embedded:///var/ledger.db"))
    bus_url: str = field(default_factory=lambda: _env("BUS_URL", "inprocess://"))
    # Users' tokens and operators' tokens are signed with different keys, so
    # whoever can mint user tokens (a login service) cannot mint operator ones.
    jwt_secret: str = field(default_factory=lambda: _env("JWT_SECRET", ""))
    operator_jwt_secret: str = field(default_factory=lambda: _env("OPERATOR_JWT_SECRET", ""))
    jwt_issuer: str = field(default_factory=lambda: _env("JWT_ISSUER", "internal-transfer"))
    jwt_audience: str = field(default_factory=lambda: _env("JWT_AUDIENCE", "internal-transfer"))
    # A token whose lifetime (exp - iat) is longer is refused, and the CLI mints none.
    jwt_max_ttl_seconds: int = field(default_factory=lambda: int(_env("JWT_MAX_TTL_SECONDS", "86400")))
    assets_file: str = field(default_factory=lambda: _env("ASSETS_FILE", str(PROJECT_ROOT / "app" / "assets.toml")))
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
    engine_reject_suffix: str = field(default_factory=lambda: _env("REFERENCE_ENGINE_REJECT_SUFFIX", ""))
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
    ratelimit_storage_uri: str = field(default_factory=lambda: _env("RATELIMIT_STORAGE_URI", "memory://"))

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
