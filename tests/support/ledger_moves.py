"""Post or void one lock: what tests do by hand, and the service only ever does in bulk."""

from __future__ import annotations

from app.domain.money import Asset
from app.domain.transfer import Transfer
from app.ports.ledger import LedgerMoves, Resolution, ResolveOutcome


def post_lock(ledger: LedgerMoves, transfer: Transfer, asset: Asset) -> ResolveOutcome:
    return ledger.resolve_many([Resolution(transfer, asset, post=True)])[0]


def void_lock(ledger: LedgerMoves, transfer: Transfer, asset: Asset) -> ResolveOutcome:
    return ledger.resolve_many([Resolution(transfer, asset, post=False)])[0]
