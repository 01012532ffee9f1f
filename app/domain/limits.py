"""Daily transfer limits: what a limit is, which quota a transfer draws on, and how an override changes it.

No I/O here. The ledger enforces the limit (see docs/ledger.md); this module
only names the pieces and does the arithmetic the services need.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from app.domain.account_model import Direction
from app.domain.money import Asset, parse_config_amount
from app.domain.transfer import Transfer

_EPOCH = date(1970, 1, 1)


def utc_day(moment: datetime) -> int:
    """Days since 1970-01-01 of the UTC date of `moment`."""
    return (moment.astimezone(UTC).date() - _EPOCH).days


def day_start(day: int) -> datetime:
    return datetime.fromordinal(_EPOCH.toordinal() + day).replace(tzinfo=UTC)


@dataclass(frozen=True)
class QuotaKey:
    """One quota account: a user's allowance for one asset, direction and UTC day."""

    user_id: int
    asset: Asset
    direction: Direction
    day: int

    @classmethod
    def of_transfer(cls, transfer: Transfer, asset: Asset) -> QuotaKey:
        # The day comes from the transfer itself (its recorded creation time),
        # never from "now": a lock made on day D is settled against day D's quota.
        return cls(
            transfer.user_id, asset, Direction.of(transfer.from_type, transfer.to_type), utc_day(transfer.created_at)
        )


@dataclass(frozen=True)
class LimitOverride:
    """One version of an operator's override of a user's daily limit; versions start at 1."""

    user_id: int
    asset: str
    direction: Direction
    version: int
    limit: int
    actor: str
    reason: str
    set_at: datetime


@dataclass(frozen=True)
class EffectiveLimit:
    limit: int
    version: int  # 0: the asset's default


@dataclass(frozen=True)
class LimitUsage:
    asset: str
    direction: Direction
    limit: int
    used: int
    remaining: int


class DefaultLimits:
    """The default daily limit per asset and direction, from app/assets.toml."""

    def __init__(self, limits: Mapping[tuple[str, Direction], int]) -> None:
        self._limits = dict(limits)

    @classmethod
    def from_toml(cls, text: str, assets: Iterable[Asset]) -> DefaultLimits:
        specs = tomllib.loads(text)["assets"]
        limits: dict[tuple[str, Direction], int] = {}
        for asset in assets:
            table = specs.get(asset.symbol, {}).get("daily_limit")
            if not isinstance(table, dict):
                raise ValueError(f"asset {asset.symbol} has no [assets.{asset.symbol}.daily_limit] table")
            for direction in Direction:
                if direction.value not in table:
                    raise ValueError(f"asset {asset.symbol} has no daily_limit.{direction.value}")
                limits[(asset.symbol, direction)] = parse_config_amount(table[direction.value], asset.decimals)
        return cls(limits)

    def get(self, asset: str, direction: Direction) -> int:
        return self._limits[(asset, direction)]


def effective_limit(default: int, history: Sequence[LimitOverride]) -> EffectiveLimit:
    """The latest override, or the default when there is none. `history` is one (asset, direction)'s."""
    if not history:
        return EffectiveLimit(default, 0)
    latest = max(history, key=lambda o: o.version)
    return EffectiveLimit(latest.limit, latest.version)


@dataclass(frozen=True)
class QuotaOpening:
    """How a day's quota was opened: the override version it reflected (0: the default) and its limit."""

    version: int
    limit: int


@dataclass(frozen=True)
class QuotaBalance:
    """A day's quota as the ledger holds it, and THE daily-limit rule (docs/ledger.md, "The rule").

    `granted`: the opening limit plus raises; `consumed`: posted locks plus
    what lowerings took; `held`: pending locks; `cut_asked`: every lowering in
    full; `cut_taken`: what lowerings took so far (the rest is still owed, and
    is taken from what a void or a raise frees before anything else).
    """

    granted: int
    consumed: int
    held: int
    cut_asked: int = 0
    cut_taken: int = 0

    @property
    def limit(self) -> int:
        """The limit in force today."""
        return self.granted - self.cut_asked

    @property
    def used(self) -> int:
        """Posted and pending locks."""
        return self.consumed - self.cut_taken + self.held

    @property
    def remaining(self) -> int:
        """remaining = max(0, limit in force - posted - pending); a lock is accepted only if it fits."""
        return max(0, self.limit - self.used)

    @property
    def available_in_ledger(self) -> int:
        """What the quota account's no-overdraft flag lets a lock take; equals `remaining` by construction."""
        return self.granted - self.consumed - self.held


def adjustments_after(opening: QuotaOpening, history: Sequence[LimitOverride]) -> list[tuple[int, int]]:
    """The (version, delta) of every override newer than the one today's quota was opened with.

    Each version moves the limit by its limit minus the previous one's,
    starting from the limit the quota was opened with (never from the
    process's current default, which a deploy may have changed since). The
    deltas are a function of the opening and the history, so whoever applies
    them (the operator who set it, a retry, a later operator catching up)
    sends the same ids and amounts.
    """
    previous = opening.limit
    deltas = []
    for override in sorted(history, key=lambda o: o.version):
        if override.version > opening.version:
            if override.limit != previous:
                deltas.append((override.version, override.limit - previous))
            previous = override.limit
    return deltas


def usage(asset: str, direction: Direction, limit: int, quota: QuotaBalance | None) -> LimitUsage:
    """What the user sees: the open quota's figures; before the day's first transfer, the limit it opens with."""
    if quota is None:
        return LimitUsage(asset, direction, limit, 0, limit)
    return LimitUsage(asset, direction, quota.limit, quota.used, quota.remaining)
