"""An operator's credit of funds, as the audit keeps it: who, why, what, under which key."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from app.domain.errors import ValidationFailed
from app.domain.ids import IDEMPOTENCY_KEY_RULE, is_idempotency_key

MAX_REASON_LENGTH = 500


def check_idempotency_key(key: object) -> str:
    if not key:
        raise ValidationFailed("an Idempotency-Key is required for every deposit", field="Idempotency-Key")
    if not is_idempotency_key(key):
        raise ValidationFailed(IDEMPOTENCY_KEY_RULE, field="Idempotency-Key")
    assert isinstance(key, str)
    return key


def deposit_id_for_key(user_id: int, key: str) -> int:
    """The deposit's id, the same for every retry under one key: the audit row's key and the ledger transfer's seed."""
    digest = hashlib.sha256(f"deposit:{user_id}:{key}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 1) or 1


def check_reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("a reason is required for every deposit", field="reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationFailed(f"a reason is at most {MAX_REASON_LENGTH} characters", field="reason")
    return reason.strip()


@dataclass(frozen=True)
class DepositAudit:
    """Written, durably, before the ledger credits: the ledger transfer's id derives from `deposit_id`."""

    deposit_id: int
    user_id: int
    asset: str
    amount: int
    operator: str
    reason: str
    idempotency_key: str
    at: datetime

    def same_request(self, other: DepositAudit) -> bool:
        """A retry asks for the same credit; who retried, why and when may differ."""
        return (self.deposit_id, self.user_id, self.asset, self.amount, self.idempotency_key) == (
            other.deposit_id,
            other.user_id,
            other.asset,
            other.amount,
            other.idempotency_key,
        )
