"""A client that drives transfers over HTTP the way a careful user would.

It retries with the same Idempotency-Key on 503 and on connection errors,
and records what the service acknowledged, for the invariant checker.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from app.api.auth import TokenPolicy, issue_token
from tests.support.invariants import Acknowledged

TRANSFERS = "/api/v1/user/internal_transfer"
BATCHES = "/api/v1/user/internal_transfer/batch"


@dataclass
class LoadResult:
    attempted: int = 0
    acknowledged: list[Acknowledged] = field(default_factory=list)
    refused_insufficient: int = 0
    gave_up: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class TransferClient:
    def __init__(self, base_url: str, policy: TokenPolicy, retry_for_seconds: float = 120) -> None:
        self.base_url = base_url
        self.policy = policy
        self.retry_for_seconds = retry_for_seconds
        self._tokens: dict[tuple[int, bool], str] = {}

    def headers(self, user_id: int, operator: bool = False) -> dict[str, str]:
        token = self._tokens.get((user_id, operator))
        if token is None:
            token = issue_token(self.policy, user_id, operator=operator, ttl_seconds=6 * 3600)
            self._tokens[(user_id, operator)] = token
        return {"Authorization": f"Bearer {token}"}

    def _post_until_answered(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> requests.Response:
        deadline = time.monotonic() + self.retry_for_seconds
        delay = 0.2
        while True:
            try:
                response = requests.post(f"{self.base_url}{path}", json=body, headers=headers, timeout=30)
                if response.status_code != 503 and response.status_code < 500:
                    return response
            except requests.RequestException:
                response = None
            if time.monotonic() > deadline:
                if response is None:
                    raise TimeoutError(f"no answer from {path}")
                return response
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def deposit(self, user_id: int, asset: str, amount: str, key: str) -> None:
        headers = {**self.headers(1, operator=True), "Idempotency-Key": key}
        body = {"user_id": user_id, "asset": asset, "amount": amount, "reason": "test funds"}
        response = self._post_until_answered("/api/v1/admin/deposits", body, headers)
        assert response.status_code == 201, response.text

    def set_daily_limit(self, user_id: int, asset: str, direction: str, limit: str) -> None:
        """An operator's override of the user's daily limit (audited, effective today)."""
        body = {"asset": asset, "direction": direction, "limit": limit, "reason": "test limit"}
        response = self._post_until_answered(f"/api/v1/admin/users/{user_id}/limits", body, self.headers(1, True))
        assert response.status_code == 201, response.text

    def transfer(self, result: LoadResult, user_id: int, amount: str, key: str, to_spot: bool = True) -> None:
        sides = ("funding", "spot") if to_spot else ("spot", "funding")
        body = {
            "from_account": {"account_type": sides[0], "asset": "USDT"},
            "to_account": {"account_type": sides[1], "asset": "USDT"},
            "amount": amount,
        }
        with result.lock:
            result.attempted += 1
        try:
            response = self._post_until_answered(TRANSFERS, body, {**self.headers(user_id), "Idempotency-Key": key})
        except TimeoutError:
            with result.lock:
                result.gave_up += 1
            return
        with result.lock:
            result.statuses[response.status_code] += 1
            if response.status_code in (200, 202):
                result.acknowledged.append(Acknowledged(user_id, int(response.json()["request_id"]), key))
            elif response.status_code == 422:
                result.refused_insufficient += 1
                request_id = int(response.json()["error"]["details"]["request_id"])
                result.acknowledged.append(Acknowledged(user_id, request_id, key))
            else:
                result.gave_up += 1

    def batch(self, result: LoadResult, user_id: int, legs: list[tuple[str, str, bool]], key: str) -> None:
        """A batch of (asset, amount, to_spot) legs; every leg acknowledged is recorded, as a transfer would be."""
        body = {
            "legs": [
                {
                    "from_account": {"account_type": "funding" if to_spot else "spot", "asset": asset},
                    "to_account": {"account_type": "spot" if to_spot else "funding", "asset": asset},
                    "amount": amount,
                }
                for asset, amount, to_spot in legs
            ]
        }
        with result.lock:
            result.attempted += 1
        try:
            response = self._post_until_answered(BATCHES, body, {**self.headers(user_id), "Idempotency-Key": key})
        except TimeoutError:
            with result.lock:
                result.gave_up += 1
            return
        with result.lock:
            result.statuses[response.status_code] += 1
            if response.status_code in (200, 202):
                for leg in response.json()["legs"]:
                    result.acknowledged.append(Acknowledged(user_id, int(leg["request_id"]), key))
            elif response.status_code == 422:
                # The refused leg is named; the others are recorded failed with it (the checker sees them all).
                result.refused_insufficient += 1
                request_id = int(response.json()["error"]["details"]["request_id"])
                result.acknowledged.append(Acknowledged(user_id, request_id, key))
            else:
                result.gave_up += 1

    def status_of(self, user_id: int, request_id: int) -> str | None:
        try:
            response = requests.get(
                f"{self.base_url}{TRANSFERS}/{request_id}", headers=self.headers(user_id), timeout=10
            )
        except requests.RequestException:
            return None
        return response.json()["status"] if response.status_code == 200 else None


def random_amount(rng: random.Random, reject_suffix: str, reject_share: float) -> str:
    """A USDT amount; a share of them ends in the reference engine's reject digits."""
    units = rng.randint(1, 50) * 10**6
    if rng.random() < reject_share:
        units = units // 1000 * 1000 + int(reject_suffix)
    whole, frac = divmod(units, 10**8)
    return f"{whole}.{frac:08d}"
