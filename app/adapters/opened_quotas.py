"""What both ledger adapters remember between calls about the day's quotas."""

from __future__ import annotations

import threading
from collections import OrderedDict

from app.domain.limits import EffectiveLimit, QuotaKey
from app.ports.ledger import LimitSource


def resolve_limit(limit: LimitSource) -> EffectiveLimit:
    return limit if isinstance(limit, EffectiveLimit) else limit()


class OpenedQuotas(OrderedDict[QuotaKey, None]):
    """The quotas this process has seen open, so a lock needs one request, not three.

    Bounded: forgetting one only costs an idempotent re-open. Membership is
    the dict's own (atomic under the GIL); only `add`, which evicts, locks.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        super().__init__()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, key: QuotaKey) -> None:
        with self._lock:
            self[key] = None
            while len(self) > self._capacity:
                self.popitem(last=False)
