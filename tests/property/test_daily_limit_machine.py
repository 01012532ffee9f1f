"""The daily-limit rule as a state machine, on both ledgers.

remaining = max(0, limit in force - posted - pending), and a lock is
accepted only if it fits (docs/ledger.md, "The rule"). Hypothesis drives
random sequences of locks, posts, voids (an engine's rejection and an
operator's void are both voids to the ledger), overrides that raise, lower or
zero the limit, a default changed by a deploy, process restarts and the UTC
day's rollover. After every step it checks, for every day touched, that the
ledger and the service agree with a model that knows only the rule.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from app.adapters.embedded_ledger import EmbeddedLedger
from app.adapters.sqlite_store import SqliteTransferStore
from app.adapters.tigerbeetle_ledger import TigerBeetleLedger
from app.domain.account_model import Direction
from app.domain.limits import DefaultLimits, QuotaKey, utc_day
from app.domain.money import AssetCatalog
from app.domain.transfer import Transfer
from app.ports.ledger import DepositOutcome, Ledger, LockOutcome, ResolveOutcome
from app.services.limits import LimitService
from tests.conftest import make_transfer, random_request_id, random_user_id
from tests.support.ledger_moves import post_lock, void_lock

F2S = Direction.FUNDING_TO_SPOT
AMOUNTS = st.integers(min_value=1, max_value=60)
LIMITS = st.integers(min_value=0, max_value=150)
EXAMPLES = 200
STEPS = 15


@dataclass
class _Day:
    limit: int  # in force, once the quota is open
    used: int = 0  # posted + pending


@dataclass
class _Lock:
    transfer: Transfer
    day: int


@dataclass
class _Model:
    default: int
    latest_override: int | None = None
    days: dict[int, _Day] = field(default_factory=dict)
    pending: list[_Lock] = field(default_factory=list)

    def opening_limit(self) -> int:
        return self.default if self.latest_override is None else self.latest_override

    def open(self, day: int) -> _Day:
        return self.days.setdefault(day, _Day(self.opening_limit()))


def machine_for(make_ledger: Callable[[], Ledger], store: SqliteTransferStore, catalog: AssetCatalog) -> type:
    usdt = catalog.get("USDT")

    class DailyLimitMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.user_id = random_user_id()
            self.now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
            self.ledger = make_ledger()
            self.model = _Model(default=0)
            self.limits = self._process(0)

        def _process(self, usdt_default: int) -> LimitService:
            """A process's limit service, with its own default (from its assets.toml)."""
            defaults = {(asset.symbol, d): 10**30 for asset in catalog for d in Direction}
            defaults |= {("USDT", d): usdt_default for d in Direction}
            return LimitService(store, self.ledger, catalog, DefaultLimits(defaults), lambda: self.now)

        def teardown(self) -> None:
            self.ledger.close()

        @initialize(default=LIMITS)
        def start(self, default: int) -> None:
            self.model.default = default
            self.limits = self._process(default)
            assert self.ledger.deposit(random_request_id(), self.user_id, usdt, 10**9) == DepositOutcome.CREDITED

        @property
        def today(self) -> int:
            return utc_day(self.now)

        @rule(amount=AMOUNTS)
        def lock(self, amount: int) -> None:
            transfer = make_transfer(self.user_id, amount, created_at=self.now)
            day = self.model.open(self.today)
            fits = day.used + amount <= day.limit
            outcome = self.ledger.lock(transfer, usdt, lambda: self.limits.limit_of_transfer(transfer))
            assert outcome == (LockOutcome.LOCKED if fits else LockOutcome.LIMIT_EXCEEDED)
            if fits:
                day.used += amount
                self.model.pending.append(_Lock(transfer, self.today))

        @precondition(lambda self: self.model.pending)
        @rule(pick=st.integers(min_value=0), post=st.booleans())
        def settle(self, pick: int, post: bool) -> None:
            """The engine's confirmation posts; its rejection, or an operator's void, voids."""
            lock = self.model.pending.pop(pick % len(self.model.pending))
            if post:
                assert post_lock(self.ledger, lock.transfer, usdt) == ResolveOutcome.POSTED
            else:
                assert void_lock(self.ledger, lock.transfer, usdt) == ResolveOutcome.VOIDED
                self.model.days[lock.day].used -= lock.transfer.amount

        @rule(limit=LIMITS)
        def override(self, limit: int) -> None:
            """An operator sets a limit (0 blocks): today's quota opens if need be, and takes it at once."""
            text = "0" if limit == 0 else usdt.format(limit)
            self.limits.set_override(self.user_id, "USDT", F2S.value, text, "operator:test", "property")
            self.model.latest_override = limit
            self.model.open(self.today).limit = limit

        @rule(default=LIMITS)
        def deploy_with_another_default(self, default: int) -> None:
            self.restart()
            self.model.default = default
            self.limits = self._process(default)

        @rule()
        def restart(self) -> None:
            """A new process: a new ledger client, and no memory of which quotas are open."""
            self.ledger.close()
            self.ledger = make_ledger()
            self.limits = self._process(self.model.default)

        @rule()
        def next_day(self) -> None:
            self.now += timedelta(days=1)

        @invariant()
        def the_rule_holds(self) -> None:
            for day_number, day in self.model.days.items():
                key = QuotaKey(self.user_id, usdt, F2S, day_number)
                quota = self.ledger.quota_balances([key])[key]
                assert (quota.limit, quota.used) == (day.limit, day.used)
                assert quota.remaining == quota.available_in_ledger == max(0, day.limit - day.used)
            shown = next(u for u in self.limits.today(self.user_id) if u.asset == "USDT" and u.direction == F2S)
            today = self.model.days.get(self.today)
            expected = (self.model.opening_limit(), 0) if today is None else (today.limit, today.used)
            assert (shown.limit, shown.used) == expected
            assert shown.remaining == max(0, expected[0] - expected[1])

    return DailyLimitMachine


@pytest.mark.parametrize("ledger_kind", ["embedded", "tigerbeetle"])
def test_the_daily_limit_rule_holds_after_every_step(
    ledger_kind: str, request: pytest.FixtureRequest, tmp_path: Path, catalog: AssetCatalog
) -> None:
    make_ledger: Callable[[], Ledger]
    if ledger_kind == "embedded":
        path = str(tmp_path / f"ledger-{secrets.token_hex(4)}.db")
        make_ledger = lambda: EmbeddedLedger(path)  # noqa: E731 - the same file after every restart
    else:
        url = f"{request.getfixturevalue('tigerbeetle_server').url}&timeout_seconds=10"
        make_ledger = lambda: TigerBeetleLedger.from_url(url)  # noqa: E731
    store = SqliteTransferStore(str(tmp_path / "store.db"))
    try:
        run_state_machine_as_test(
            machine_for(make_ledger, store, catalog),
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                database=None,
            ),
        )
    finally:
        store.close()
