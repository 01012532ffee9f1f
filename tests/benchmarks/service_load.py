"""Driving the real service: funding users, the transfer load, and waiting until every transfer settled.

Settling is found without hammering the service: after the load, a few
sentinels (the last transfers sent) are polled until they are terminal; then
every transfer not yet seen terminal is read once (and again, later, if it
still is not), and the last `updated_at` is when the load settled.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import jwt

from tests.benchmarks.loadgen import LoadResult, Request, run_load

TRANSFERS = "/api/v1/user/internal_transfer"
TERMINAL = frozenset({"success", "failed"})
AMOUNT = "1.00000000"
_SENTINELS = 4
_SENTINEL_PAUSE_SECONDS = 0.5
_SWEEP_PAUSE_SECONDS = 1.0
_SWEEP_CONCURRENCY = 4


def tokens_like(template: str, secret: str, users: list[int]) -> dict[int, str]:
    """Tokens for `users` with exactly the claims of a token the service's CLI issued, but their own subject."""
    claims = jwt.decode(template, secret, algorithms=["HS256"], options={"verify_aud": False})
    return {user: jwt.encode({**claims, "sub": str(user)}, secret, algorithm="HS256") for user in users}


def _json_headers(token: str, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": key}


def deposit_requests(admin_token: str, users: list[int], amount: str, tag: str) -> list[Request]:
    return [
        Request(
            "POST",
            "/api/v1/admin/deposits",
            json.dumps({"user_id": user, "asset": "USDT", "amount": amount, "reason": "benchmark funds"}).encode(),
            _json_headers(admin_token, f"{tag}-deposit-{user}"),
        )
        for user in users
    ]


@dataclass
class Tracked:
    user: int
    sent_index: int
    request_id: str
    status: str
    updated_at: float | None = None  # epoch seconds, once terminal


@dataclass
class Batch:
    """One load of transfers: what was sent, and what became of it."""

    users: list[int]
    requests: list[Request] = field(default_factory=list)
    user_of: list[int] = field(default_factory=list)
    tracked: dict[str, Tracked] = field(default_factory=dict)
    post_failures: dict[str, int] = field(default_factory=dict)  # HTTP status (or "no answer") -> count

    @classmethod
    def build(cls, users: list[int], tokens: dict[int, str], count: int, tag: str) -> Batch:
        batch = cls(users)
        body = json.dumps(
            {
                "from_account": {"account_type": "funding", "asset": "USDT"},
                "to_account": {"account_type": "spot", "asset": "USDT"},
                "amount": AMOUNT,
            }
        ).encode()
        for n in range(count):
            user = users[n % len(users)]
            batch.user_of.append(user)
            batch.requests.append(Request("POST", TRANSFERS, body, _json_headers(tokens[user], f"{tag}-{n}")))
        return batch

    def record_posts(self, load: LoadResult) -> None:
        for index, raw in enumerate(load.bodies):
            answer = _parse(raw)
            if answer is None or "request_id" not in answer:
                reason = _failure_reason(raw, answer)
                self.post_failures[reason] = self.post_failures.get(reason, 0) + 1
                continue
            tracked = Tracked(self.user_of[index], index, str(answer["request_id"]), str(answer["status"]))
            self._update(tracked, answer)
            self.tracked[tracked.request_id] = tracked

    @staticmethod
    def _update(tracked: Tracked, answer: dict[str, object]) -> None:
        tracked.status = str(answer.get("status", tracked.status))
        if tracked.status in TERMINAL:
            tracked.updated_at = datetime.fromisoformat(str(answer["updated_at"])).timestamp()

    def open(self) -> list[Tracked]:
        return [t for t in self.tracked.values() if t.status not in TERMINAL]

    def apply(self, tracked: Tracked, raw: bytes | None) -> None:
        answer = _parse(raw)
        if answer is not None and "status" in answer:
            self._update(tracked, answer)

    def last_update(self) -> float | None:
        times = [t.updated_at for t in self.tracked.values() if t.updated_at is not None]
        return max(times) if times else None


def _parse(raw: bytes | None) -> dict[str, object] | None:
    if raw is None:
        return None
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _failure_reason(raw: bytes | None, answer: dict[str, object] | None) -> str:
    if raw is None:
        return "no answer"
    error = answer.get("error") if answer is not None else None
    return str(error.get("code", "error")) if isinstance(error, dict) else "unreadable answer"


def _get(tracked: Tracked, tokens: dict[int, str]) -> Request:
    return Request(
        "GET", f"{TRANSFERS}/{tracked.request_id}", None, {"Authorization": f"Bearer {tokens[tracked.user]}"}
    )


def wait_for_sentinels(batch: Batch, host: str, port: int, tokens: dict[int, str], deadline: float) -> int:
    """Poll the last transfers sent until they are terminal; the number of GETs it took."""
    sentinels = sorted(batch.open(), key=lambda t: t.sent_index)[-_SENTINELS:]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    gets = 0
    try:
        while sentinels and time.monotonic() < deadline:
            for tracked in sentinels:
                request = _get(tracked, tokens)
                try:
                    connection.request(request.method, request.path, headers=request.headers)
                    response = connection.getresponse()
                    raw = response.read()
                except (OSError, http.client.HTTPException):
                    connection.close()
                    connection = http.client.HTTPConnection(host, port, timeout=30)
                    continue
                gets += 1
                batch.apply(tracked, raw)
            sentinels = [t for t in sentinels if t.status not in TERMINAL]
            if sentinels:
                time.sleep(_SENTINEL_PAUSE_SECONDS)
    finally:
        connection.close()
    return gets


def sweep_until_settled(batch: Batch, host: str, port: int, tokens: dict[int, str], deadline: float) -> int:
    """Read each transfer not yet seen terminal; again after a pause while any is open. GETs it took."""
    gets = 0
    while True:
        still_open = batch.open()
        if not still_open:
            return gets
        load = run_load(host, port, [_get(t, tokens) for t in still_open], min(_SWEEP_CONCURRENCY, len(still_open)))
        gets += len(still_open)
        for tracked, raw in zip(still_open, load.bodies, strict=True):
            batch.apply(tracked, raw)
        if not batch.open() or time.monotonic() > deadline:
            return gets
        time.sleep(_SWEEP_PAUSE_SECONDS)


def run_tag() -> str:
    return uuid.uuid4().hex[:10]
