"""Daily limits in the service, on the embedded ledger with a fake clock; and the pure arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.domain.account_model import Direction
from app.domain.errors import DailyLimitExceeded
from app.domain.limits import (
    LimitOverride,
    LimitUsage,
    QuotaBalance,
    QuotaKey,
    QuotaOpening,
    adjustments_after,
    effective_limit,
    usage,
    utc_day,
)
from app.domain.transfer import Status
from app.services.operations import OperatorService
from tests.unit.harness import Harness

UNIT = 10**8


def _override(version: int, limit: int) -> LimitOverride:
    return LimitOverride(1, "USDT", Direction.FUNDING_TO_SPOT, version, limit, "operator:a", "r", datetime.now(UTC))


def test_adjustments_are_each_versions_step_after_the_one_the_day_was_opened_with() -> None:
    history = [_override(1, 150), _override(2, 300), _override(3, 300), _override(4, 50)]
    assert adjustments_after(QuotaOpening(0, 100), history) == [(1, 50), (2, 150), (4, -250)]
    assert adjustments_after(QuotaOpening(2, 300), history) == [(4, -250)]
    assert adjustments_after(QuotaOpening(4, 50), history) == []
    assert effective_limit(100, history).limit == 50 and effective_limit(100, history).version == 4
    assert effective_limit(100, []).limit == 100 and effective_limit(100, []).version == 0


def test_adjustments_start_from_the_limit_the_quota_opened_with_not_from_todays_default() -> None:
    # Opened at a default of 10,000; the default is 1,000 since a deploy; an override sets 2,000.
    assert adjustments_after(QuotaOpening(0, 10_000), [_override(1, 2_000)]) == [(1, -8_000)]


def test_usage_is_the_rule_remaining_is_the_limit_in_force_less_posted_and_pending_never_negative() -> None:
    f2s = Direction.FUNDING_TO_SPOT
    assert usage("USDT", f2s, 100, None) == LimitUsage("USDT", f2s, 100, 0, 100)
    # Opened at 100, 40 posted and 30 pending.
    quota = QuotaBalance(granted=100, consumed=40, held=30)
    assert usage("USDT", f2s, 999, quota) == LimitUsage("USDT", f2s, 100, 70, 30)
    # Then lowered by 90: 30 taken at once, 60 owed; nothing remains, the limit in force is 10.
    lowered = QuotaBalance(granted=100, consumed=70, held=30, cut_asked=90, cut_taken=30)
    assert usage("USDT", f2s, 999, lowered) == LimitUsage("USDT", f2s, 10, 70, 0)
    assert lowered.available_in_ledger == lowered.remaining == 0


def test_utc_day_is_the_utc_date() -> None:
    assert utc_day(datetime(1970, 1, 2, tzinfo=UTC)) == 1
    late = datetime.fromisoformat("2026-11-24T23:30:00-02:00")  # 01:30 UTC on the 25th
    assert utc_day(late) == utc_day(datetime(2026, 11, 25, tzinfo=UTC))


def test_a_transfer_locked_before_midnight_and_settled_after_uses_the_first_days_quota(harness: Harness) -> None:
    harness.clock.now = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    harness.fund(1)
    harness.limits.set_override(1, "USDT", "funding_to_spot", "100", "operator:a", "test")
    transfer = harness.submit.transfer(harness.command(1, 60 * UNIT)).transfer
    harness.clock.advance(seconds=2)  # the next UTC day
    harness.pump()
    assert harness.reload(transfer).status == Status.SUCCESS
    usdt = harness.deps.catalog.get("USDT")
    yesterday = QuotaKey.of_transfer(transfer, usdt)
    today = QuotaKey(1, usdt, Direction.FUNDING_TO_SPOT, yesterday.day + 1)
    balances = harness.ledger.quota_balances([yesterday, today])
    assert (balances[yesterday].consumed, balances[yesterday].held) == (60 * UNIT, 0)
    assert today not in balances  # nothing drawn on today's quota
    shown = {(u.asset, u.direction): u for u in harness.limits.today(1)}
    assert shown[("USDT", Direction.FUNDING_TO_SPOT)].remaining == 100 * UNIT
    # Today's allowance is whole again.
    assert harness.submit.transfer(harness.command(1, 100 * UNIT)).transfer.status == Status.PENDING


def test_an_operator_void_releases_the_quota_and_a_refusal_is_recorded(harness: Harness) -> None:
    harness.fund(1)
    harness.limits.set_override(1, "USDT", "funding_to_spot", "100", "operator:a", "test")
    stuck = harness.submit.transfer(harness.command(1, 80 * UNIT)).transfer
    with pytest.raises(DailyLimitExceeded) as refused:
        harness.submit.transfer(harness.command(1, 30 * UNIT))
    assert refused.value.details["remaining"] == "20.00000000"
    failed = harness.store.get(int(refused.value.details["request_id"]))
    assert failed is not None and (failed.status, failed.failure_reason) == (Status.FAILED, "DAILY_LIMIT_EXCEEDED")
    OperatorService(harness.deps, harness.settle).void(stuck.request_id, "alice", "customer asked")
    shown = {(u.asset, u.direction): u for u in harness.limits.today(1)}
    assert (shown[("USDT", Direction.FUNDING_TO_SPOT)].used, shown[("USDT", Direction.FUNDING_TO_SPOT)].remaining) == (
        0,
        100 * UNIT,
    )
    assert harness.submit.transfer(harness.command(1, 30 * UNIT)).transfer.status == Status.PENDING


def test_an_interrupted_override_is_completed_by_the_next_one(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.fund(1)
    assert harness.submit.transfer(harness.command(1, 10 * UNIT)).transfer.status == Status.PENDING  # opens at default
    # The operator's process dies after recording version 1, before the ledger heard of it.
    monkeypatch.setattr(harness.limits, "apply_today", lambda *_: None)
    harness.limits.set_override(1, "USDT", "funding_to_spot", "50", "operator:a", "first")
    monkeypatch.undo()
    shown = {(u.asset, u.direction): u for u in harness.limits.today(1)}
    assert shown[("USDT", Direction.FUNDING_TO_SPOT)].remaining == (1_000_000 - 10) * UNIT  # still the default
    harness.limits.set_override(1, "USDT", "funding_to_spot", "50", "operator:a", "again")
    shown = {(u.asset, u.direction): u for u in harness.limits.today(1)}
    assert shown[("USDT", Direction.FUNDING_TO_SPOT)].remaining == 40 * UNIT
    # Repeating changes nothing more.
    harness.limits.apply_today(1, "USDT", Direction.FUNDING_TO_SPOT)
    harness.limits.apply_today(1, "USDT", Direction.FUNDING_TO_SPOT)
    shown = {(u.asset, u.direction): u for u in harness.limits.today(1)}
    assert shown[("USDT", Direction.FUNDING_TO_SPOT)].remaining == 40 * UNIT


def test_a_refusal_stands_when_the_remaining_allowance_cannot_be_read(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.ports.errors import DependencyUnavailable

    harness.fund(1)
    harness.limits.set_override(1, "USDT", "funding_to_spot", "1", "operator:a", "test")

    def down(*_: object) -> None:
        raise DependencyUnavailable("ledger", "timed out")

    monkeypatch.setattr(harness.limits, "remaining_of", down)
    with pytest.raises(DailyLimitExceeded) as refused:
        harness.submit.transfer(harness.command(1, 2 * UNIT))
    assert set(refused.value.details) == {"request_id", "asset", "direction"}
    failed = harness.store.get(int(refused.value.details["request_id"]))
    assert failed is not None and failed.failure_reason == "DAILY_LIMIT_EXCEEDED"
