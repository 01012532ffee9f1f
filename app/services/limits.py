"""Per-user daily transfer limits: what applies, what is left today, and operators' overrides.

The ledger enforces the limit (the quota account's no-overdraft flag); this
service only chooses the limit a day's quota is opened with, changes it when
an operator overrides it, and reads it back. See docs/ledger.md, "Daily limits".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime

from app.domain.account_model import MAX_QUOTA_VERSION, Direction
from app.domain.errors import OverrideConflict, ValidationFailed
from app.domain.limits import (
    DefaultLimits,
    EffectiveLimit,
    LimitOverride,
    LimitUsage,
    QuotaKey,
    adjustments_after,
    effective_limit,
    usage,
    utc_day,
)
from app.domain.money import Asset, AssetCatalog
from app.domain.transfer import Transfer
from app.ports.ledger import LedgerQuotas
from app.ports.store import LimitOverrides

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# TigerBeetle amounts are below 2^128; a quota is credited with the limit.
MAX_LIMIT = 2**127
_VERSION_ATTEMPTS = 5


_ZERO = re.compile(r"0(\.0+)?")


def _parse_limit(text: object, asset: Asset) -> int:
    """A limit is an amount of the asset, or zero (which blocks the direction)."""
    if isinstance(text, str) and _ZERO.fullmatch(text):
        return 0
    return asset.parse(text, bounded=False)


class LimitService:
    def __init__(
        self,
        overrides: LimitOverrides,
        quotas: LedgerQuotas,
        catalog: AssetCatalog,
        defaults: DefaultLimits,
        clock: Clock,
    ) -> None:
        self.override_records = overrides
        self.quotas = quotas
        self.catalog = catalog
        self.defaults = defaults
        self.clock = clock

    def _history(self, overrides: Sequence[LimitOverride], asset: str, direction: Direction) -> list[LimitOverride]:
        return [o for o in overrides if o.asset == asset and o.direction == direction]

    def limit_for(self, user_id: int, asset: str, direction: Direction) -> EffectiveLimit:
        """What a quota opened now gets: the latest override, else the default. One store read."""
        history = self._history(self.override_records.limit_overrides(user_id), asset, direction)
        return effective_limit(self.defaults.get(asset, direction), history)

    def limit_of_transfer(self, transfer: Transfer) -> EffectiveLimit:
        return self.limit_for(transfer.user_id, transfer.asset, Direction.of(transfer.from_type, transfer.to_type))

    def today(self, user_id: int) -> list[LimitUsage]:
        """Limit, used and remaining for today (UTC), per asset and direction: one store read, one ledger read."""
        day = utc_day(self.clock())
        overrides = self.override_records.limit_overrides(user_id)
        keys = [QuotaKey(user_id, asset, direction, day) for asset in self.catalog for direction in Direction]
        balances = self.quotas.quota_balances(keys)
        result = []
        for key in keys:
            default = self.defaults.get(key.asset.symbol, key.direction)
            limit = effective_limit(default, self._history(overrides, key.asset.symbol, key.direction)).limit
            result.append(usage(key.asset.symbol, key.direction, limit, balances.get(key)))
        return result

    def remaining_of(self, transfer: Transfer) -> LimitUsage:
        """Today's usage of the quota this transfer drew on (for a refusal's details)."""
        asset = self.catalog.get(transfer.asset)
        key = QuotaKey.of_transfer(transfer, asset)
        limit = self.limit_of_transfer(transfer).limit
        return usage(asset.symbol, key.direction, limit, self.quotas.quota_balances([key]).get(key))

    # -- operators ---------------------------------------------------------------

    def overrides(self, user_id: int) -> list[LimitOverride]:
        return self.override_records.limit_overrides(user_id)

    def set_override(
        self, user_id: int, asset_symbol: object, direction_text: object, limit_text: object, actor: str, reason: str
    ) -> LimitOverride:
        """Record a new override version, then bring today's quota to it. Safe to repeat."""
        asset = self.catalog.get(asset_symbol)
        try:
            direction = Direction(str(direction_text))
        except ValueError:
            raise ValidationFailed("direction must be 'funding_to_spot' or 'spot_to_funding'") from None
        limit = _parse_limit(limit_text, asset)
        if not 0 <= limit < MAX_LIMIT:
            raise ValidationFailed("the limit is out of range", code="INVALID_AMOUNT")
        if not reason or not reason.strip():
            raise ValidationFailed("a reason is required for the audit trail")
        if user_id <= 0:
            raise ValidationFailed("user ids are positive")
        for _ in range(_VERSION_ATTEMPTS):
            history = self._history(self.override_records.limit_overrides(user_id), asset.symbol, direction)
            version = max((o.version for o in history), default=0) + 1
            if version > MAX_QUOTA_VERSION:
                raise ValidationFailed("too many overrides for this user, asset and direction")
            override = LimitOverride(
                user_id, asset.symbol, direction, version, limit, actor, reason.strip(), self.clock()
            )
            if self.override_records.add_limit_override(override):
                break
        else:
            raise OverrideConflict("other operators are changing this limit right now; try again")
        log.info(
            "limit override v%d for user %d %s %s: %d by %s",
            version,
            user_id,
            asset.symbol,
            direction.value,
            limit,
            actor,
        )
        self.apply_today(user_id, asset.symbol, direction)
        return override

    def apply_today(self, user_id: int, asset_symbol: str, direction: Direction) -> None:
        """Bring today's quota to the latest override: open it, then apply every version it has not seen.

        The changes are a function of the stored versions and of how the
        quota was opened (see `adjustments_after`), so repeating this, or two
        operators running it at once, applies each version at most once.
        """
        asset = self.catalog.get(asset_symbol)
        key = QuotaKey(user_id, asset, direction, utc_day(self.clock()))
        default = self.defaults.get(asset.symbol, direction)
        history = self._history(self.override_records.limit_overrides(user_id), asset.symbol, direction)
        latest = effective_limit(default, history)
        self.quotas.open_quota(key, latest.limit, latest.version)
        opening = self.quotas.quota_opening(key)
        if opening is None:
            raise RuntimeError(f"quota {key} is not open right after opening it")
        self.quotas.adjust_quota(key, adjustments_after(opening, history))
