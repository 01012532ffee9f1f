"""Settings, all from the environment. Defaults give the embedded backends."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEV_JWT_SECRET = "dev-only-secret-do-not-use-in-production"  # noqa: S105 - public by design, warned about
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _optional_int(name: str) -> int | None:
    value = _env(name, "")
    return int(value) if value else None


@dataclass(frozen=True)
class Settings:
    store_url: str = field(default_factory=lambda: _env("STORE_URL", "sqlite:///var/store.db"))
    ledger_url: str = field(default_factory=lambda: _env("LEDGER_URL", "embedded:///var/ledger.db"))
    bus_url: str = field(default_factory=lambda: _env("BUS_URL", "inprocess://"))
    jwt_secret: str = field(default_factory=lambda: _env("JWT_SECRET", ""))
    assets_file: str = field(default_factory=lambda: _env("ASSETS_FILE", str(PROJECT_ROOT / "app" / "assets.toml")))
    scanner_interval_seconds: float = field(default_factory=lambda: float(_env("SCANNER_INTERVAL_SECONDS", "5")))
    requesting_grace_seconds: float = field(default_factory=lambda: float(_env("REQUESTING_GRACE_SECONDS", "30")))
    resend_after_seconds: float = field(default_factory=lambda: float(_env("RESEND_AFTER_SECONDS", "30")))
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

    def effective_jwt_secret(self) -> str:
        if self.jwt_secret:
            if len(self.jwt_secret) < 32:
                raise RuntimeError("JWT_SECRET must be at least 32 characters")
            return self.jwt_secret
        if not self.fully_embedded:
            # Real backends mean real money: a public secret would let anyone
            # mint an operator token and credit deposits.
            raise RuntimeError("JWT_SECRET must be set when any backend is not embedded")
        log.warning(
            "!!! JWT_SECRET is not set: using the well-known development secret. "
            "Anyone can mint tokens. Never run like this in production. !!!"
        )
        return DEV_JWT_SECRET
