"""The money invariants, checked against the store, the ledger and the engine.

Used by the crash and chaos tests after the system has quiesced, and
usable by operators on a quiet system. Every violation is a sentence.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.domain.transfer import AccountType, Status, Transfer
from app.ports.ledger import LedgerState
from app.services.operations import AGREEING_STATES
from app.services.transfers import TransferService


@dataclass(frozen=True)
class Acknowledged:
    """A transfer the API acknowledged to a client (2xx or 422)."""

    user_id: int
    request_id: int
    idempotency_key: str | None


@dataclass
class InvariantReport:
    checked_transfers: int = 0
    open_transfers: list[int] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def check_invariants(
    transfers: TransferService,
    user_ids: Iterable[int],
    deposits: Mapping[tuple[int, str], int],
    acknowledged: Iterable[Acknowledged] = (),
    engine_applied: Mapping[int, str] | None = None,
    allow_open: bool = False,
) -> InvariantReport:
    """Check every invariant for these users.

    `deposits` is what was credited per (user, asset); `engine_applied` maps a
    request id to the engine's one recorded outcome ("confirmed"/"rejected").
    """
    report = InvariantReport()
    by_id: dict[int, Transfer] = {}
    for user_id in user_ids:
        for transfer in _all_transfers(transfers, user_id):
            by_id[transfer.request_id] = transfer
    report.checked_transfers = len(by_id)

    for ack in acknowledged:
        found = by_id.get(ack.request_id)
        if found is None or found.user_id != ack.user_id:
            report.violations.append(f"acknowledged transfer {ack.request_id} of user {ack.user_id} is missing")

    keys = Counter((t.user_id, t.idempotency_key) for t in by_id.values() if t.idempotency_key)
    for (user_id, key), count in keys.items():
        if count > 1:
            report.violations.append(f"idempotency key {key!r} of user {user_id} made {count} transfers")

    locked: dict[tuple[int, str, AccountType], int] = defaultdict(int)
    for transfer in by_id.values():
        asset = transfers.catalog.get(transfer.asset)
        state = transfers.ledger.state_of(transfer, asset)
        if not transfer.status.is_terminal:
            report.open_transfers.append(transfer.request_id)
            if not allow_open:
                report.violations.append(f"transfer {transfer.request_id} is still {transfer.status.value}")
        if state not in AGREEING_STATES[transfer.status]:
            report.violations.append(
                f"transfer {transfer.request_id}: store says {transfer.status.value}, ledger says {state.value}"
            )
        if state == LedgerState.PENDING and not transfer.status.is_terminal:
            # Only a transfer still open may hold funds; any other lock is orphaned.
            locked[(transfer.user_id, transfer.asset, transfer.from_type)] += transfer.amount
        if engine_applied is not None:
            _check_engine(report, transfer, engine_applied.get(transfer.request_id))

    users = {user for user, _ in deposits} | {t.user_id for t in by_id.values()}
    for user_id in users:
        totals: dict[str, int] = defaultdict(int)
        for balance in transfers.ledger.balances(user_id, list(transfers.catalog)):
            totals[balance.asset] += balance.available + balance.locked
            held = locked.get((user_id, balance.asset, balance.account_type), 0)
            if balance.locked != held:
                report.violations.append(
                    f"user {user_id} {balance.asset} {balance.account_type.value}: {balance.locked} locked in the"
                    f" ledger, {held} held by open transfers (an orphaned lock)"
                )
        for asset in transfers.catalog:
            expected = deposits.get((user_id, asset.symbol), 0)
            if totals.get(asset.symbol, 0) != expected:
                report.violations.append(
                    f"user {user_id} {asset.symbol}: funding + spot = {totals.get(asset.symbol, 0)}, "
                    f"deposits = {expected}"
                )
    return report


def _check_engine(report: InvariantReport, transfer: Transfer, applied: str | None) -> None:
    if transfer.status == Status.SUCCESS and applied != "confirmed":
        report.violations.append(f"transfer {transfer.request_id} succeeded but the engine recorded {applied}")
    if transfer.failure_reason == "REJECTED_BY_ENGINE" and applied != "rejected":
        report.violations.append(f"transfer {transfer.request_id} was rejected but the engine recorded {applied}")
    if transfer.status == Status.FAILED and applied == "confirmed" and transfer.failure_reason != "VOIDED_BY_OPERATOR":
        report.violations.append(f"transfer {transfer.request_id} failed but the engine applied it")


def _all_transfers(transfers: TransferService, user_id: int) -> list[Transfer]:
    found: list[Transfer] = []
    cursor = None
    while True:
        page = transfers.store.history(user_id, 100, cursor)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
