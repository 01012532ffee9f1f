"""The TransferStore contract for per-user limit overrides, on every store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from app.domain.account_model import Direction
from app.domain.limits import LimitOverride
from app.ports.store import TransferStore
from tests.conftest import random_user_id


def override(user_id: int, version: int, limit: int, direction: Direction = Direction.FUNDING_TO_SPOT) -> LimitOverride:
    return LimitOverride(
        user_id=user_id,
        asset="USDT",
        direction=direction,
        version=version,
        limit=limit,
        actor="operator:alice",
        reason=f"ticket {version}",
        set_at=datetime(2026, 3, 1, 12, 0, version, 123456, tzinfo=UTC),
    )


def test_overrides_round_trip_every_field_in_version_order(store: TransferStore) -> None:
    user_id = random_user_id()
    written = [override(user_id, 2, 2**70), override(user_id, 1, 5), override(user_id, 1, 7, Direction.SPOT_TO_FUNDING)]
    for item in written:
        assert store.add_limit_override(item)
    found = store.limit_overrides(user_id)
    assert sorted(found, key=lambda o: (o.direction, o.version)) == sorted(
        written, key=lambda o: (o.direction, o.version)
    )
    mine = [o for o in found if o.direction == Direction.FUNDING_TO_SPOT]
    assert [o.version for o in mine] == [1, 2]
    assert store.limit_overrides(random_user_id()) == []


def test_a_version_is_written_once_and_never_rewritten(store: TransferStore) -> None:
    user_id = random_user_id()
    assert store.add_limit_override(override(user_id, 1, 100))
    assert not store.add_limit_override(override(user_id, 1, 999))
    assert [o.limit for o in store.limit_overrides(user_id)] == [100]


def test_two_operators_racing_for_one_version_one_wins(store: TransferStore) -> None:
    user_id = random_user_id()
    candidates = [override(user_id, 1, limit) for limit in range(1, 9)]
    with ThreadPoolExecutor(len(candidates)) as pool:
        won = list(pool.map(store.add_limit_override, candidates))
    assert won.count(True) == 1
    (stored,) = store.limit_overrides(user_id)
    assert stored == candidates[won.index(True)]
